"""fastssim against its peers on the CPU, side by side, in one process.

    python benchmarks/bench_ssim.py                 # full run (ten minutes or more)
    python benchmarks/bench_ssim.py --quick         # under two minutes
    python benchmarks/bench_ssim.py --sizes 1024 --dtypes float32 --out results.md

The command line of ``bench_ssim.py``: chooses the cases and rows, times them,
measures memory and prints (and optionally writes) the report.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
import time

import numpy as np

from .cases import SINGLE_CALL, Case, Skip, make_inputs, small_inputs
from .harness import CpuMeter, measure_memory, memory_child, time_rows
from .peers import IMPLEMENTATIONS
from .report import (SMALL_BATCHES, Row, _fmt_time, case_table, machine_description,
                     targets_section, with_per_megapixel_targets)

# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="3 short rounds, no 2048² case, float32 only, the torch-based MS-SSIM peers and "
                        "kornia at 1024² only (under two minutes)")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="grayscale sizes (default 512 1024 2048; --quick: 512 1024)")
    p.add_argument("--cases", nargs="+", choices=("gray", "rgb", "batch", "small"),
                   default=["gray", "rgb", "batch", "small"],
                   help="which kinds of case: gray (the --sizes), rgb (1024²×3), batch (16×256²), "
                        "small (many small images: 256×64², 4096×32²)")
    p.add_argument("--dtypes", nargs="+", choices=("float32", "float64"), default=None,
                   help="default float32 float64; --quick: float32")
    p.add_argument("--only", default=None, metavar="REGEX",
                   help="run only rows whose key matches (keys: "
                        + ", ".join(i.key for i in IMPLEMENTATIONS) + "); reference rows are kept")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--out", default=None, help="also write the Markdown report to this file")
    p.add_argument("--_memory-child", dest="memory_child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def select_impls(only):
    if not only:
        return list(IMPLEMENTATIONS)
    rx = re.compile(only)
    wanted = {i.key for i in IMPLEMENTATIONS if rx.search(i.key)}
    impls = {i.key: i for i in IMPLEMENTATIONS}
    for k in list(wanted):  # keep each row's reference
        ref = impls[k].ref
        while ref and ref not in wanted:
            wanted.add(ref)
            ref = impls[ref].ref
    return [i for i in IMPLEMENTATIONS if i.key in wanted]


def main(argv=None):
    args = parse_args(argv)
    if args.memory_child is not None:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return 0

    sizes = args.sizes or ([512, 1024] if args.quick else [512, 1024, 2048])
    dtypes = args.dtypes or (["float32"] if args.quick else ["float32", "float64"])
    rounds, round_time = (3, 0.03) if args.quick else (5, 0.05)
    cases = []
    if "gray" in args.cases:
        cases += [Case("gray", s) for s in sizes]
    if "rgb" in args.cases:
        cases.append(Case("rgb", 1024))
    if "batch" in args.cases:
        cases.append(Case("batch", 256, 16))
    # --- many small images (issue 16): per-call and per-plane overhead
    if "small" in args.cases:
        cases += [Case("batch", size, n) for n, size in SMALL_BATCHES]
    # --- end many small images
    impls = select_impls(args.only)

    report = []

    def emit(lines):
        for line in lines:
            print(line)
        sys.stdout.flush()
        report.extend(lines)

    t_start = time.perf_counter()
    emit(["# fastssim benchmark", "", "```", *machine_description(), "```", "",
          f"Median wall time of n calls after one warm-up; the rows are interleaved in {rounds} rounds of "
          f"about {round_time} s each (at least one call per round); a row whose warm-up took more than "
          f"{SINGLE_CALL:g} s is timed in one call (n = 1), and a slow peer marked so in its footnote is warmed "
          "up on a small copy and then timed in one call; "
          "MP = samples in one input (channels and batch items counted); ÷ ref = this row's time / the "
          "named fastssim row's time (> 1: fastssim is faster); peak extra = peak RSS of one call above "
          "the RSS before it, measured in a fresh subprocess"
          + (" (skipped: --no-memory)" if args.no_memory else "") + "; value = the SSIM, MS-SSIM or loss the row "
          "returned (mean over a batch).", ""])

    results = {}
    for case in cases:
        for dname in dtypes:
            dtype = np.dtype(dname)
            inp = make_inputs(case, dtype)
            rows, fns, warms, excluded = [], [], [], []
            for impl in impls:
                why = impl.excluded(case, dname, args.quick)
                if why is not None:
                    excluded.append((impl.key, why))
                    continue
                row = Row(impl)
                try:
                    fn = impl.make(inp)
                    warm = impl.make(small_inputs(case, dtype, impl.warm_side)) if impl.slow else None
                    fns.append(fn)
                    warms.append(warm)
                except Skip as e:
                    row.skipped = str(e)
                except Exception as e:
                    row.skipped = f"error: {type(e).__name__}: {e}"
                rows.append(row)
            live = [r for r in rows if r.skipped is None]

            def progress(i, t, err, what, live=live, case=case, dname=dname):
                if err:
                    msg = err
                elif what == "single" and t is None:
                    msg = (f"warmed up on a {min(case.size, live[i].impl.warm_side)}² copy; timing ONE "
                           "full-size call (may take a minute or more)")
                elif what == "single":
                    msg = f"one timed call {_fmt_time(t)} ms"
                else:
                    msg = f"warm-up {_fmt_time(t)} ms" + (" (one timed call follows)" if t >= SINGLE_CALL else "")
                print(f"  [{time.perf_counter() - t_start:6.1f} s] {case.name} {dname} "
                      f"{live[i].impl.key}: {msg}", file=sys.stderr, flush=True)
            with CpuMeter() as meter:
                timings = time_rows(fns, rounds, round_time, progress, warms)
            for r, tm in zip(live, timings):
                if isinstance(tm, str):
                    r.skipped = tm
                else:
                    r.timing = tm
            del fns, warms
            if not args.no_memory:
                mem = measure_memory(case, dtype, [r.impl.key for r in rows if r.timing is not None
                                                   and not (r.impl.slow and args.quick)])
                for r in rows:
                    if r.impl.key in mem:
                        r.mem = mem[r.impl.key]["extra"]
                        r.mem_method = mem[r.impl.key]["method"]
            input_bytes = inp.x.nbytes
            emit(case_table(case, dtype, rows, input_bytes, meter.other, excluded))
            results[(case.name, dname)] = ({r.impl.key: r for r in rows}, input_bytes)
            del inp
            gc.collect()

    tail = with_per_megapixel_targets(targets_section(results), results)  # issue 16
    try:
        load = "load avg at end: %.2f %.2f %.2f; " % os.getloadavg()
    except OSError:
        load = ""
    tail.append(f"_{load}total benchmark time {time.perf_counter() - t_start:.0f} s._")
    emit(tail)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("\n".join(report) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0

