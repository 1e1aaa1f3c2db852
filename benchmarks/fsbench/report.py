"""The Markdown report: machine description, one table per case, and the issues'
targets (reported as met / missed, never asserted).
"""

from __future__ import annotations

import io
import os
import platform
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from .harness import Timing
from .peers import Impl

# --------------------------------------------------------------------------------------
# Targets from the issues: reported as met / missed, never asserted.
# --------------------------------------------------------------------------------------

@dataclass
class Target:
    case: str           # Case.name
    dtype: str
    text: str
    kind: str           # 'speedup': t(peer)/t(key) >= bound; 'cost': t(key)/t(peer) <= bound;
                        # 'memory': mem(key)/input <= bound
    key: str
    other: str | None
    bound: float


TARGETS: list[Target] = [
    Target("1024²", "float32", "Gaussian value ≥ 5× faster than the OpenCV recipe", "speedup", "fs-gauss", "opencv", 5),
    Target("1024²", "float32", "Gaussian value ≥ 50× faster than scikit-image", "speedup", "fs-gauss", "skimage", 50),
    Target("1024²", "float32", "box-7 value at least as fast as Fast-SSIM", "speedup", "fs-box7", "fast-ssim", 1),
    Target("1024²", "float32", "value + gradient ≥ 40× faster than scikit-image gradient=True", "speedup",
           "fs-grad", "skimage-grad", 40),
    Target("1024²", "float32", "value + gradient ≤ 2.5× fastssim's value time", "cost", "fs-grad", "fs-gauss", 2.5),
    Target("1024²", "float32", "peak extra memory of a value call ≤ 2× one input", "memory", "fs-gauss", None, 2),
    # issue 3: MS-SSIM
    Target("1024²", "float32", "MS-SSIM value ≤ 1.5× fastssim's Gaussian SSIM value time", "cost",
           "fs-ms", "fs-gauss", 1.5),
    Target("1024²", "float32", "MS-SSIM value ≥ 20× faster than pytorch_msssim", "speedup",
           "fs-ms", "torch-ms", 20),
    Target("1024²", "float32", "MS-SSIM value + gradient ≤ 3× fastssim's SSIM value time", "cost",
           "fs-ms-grad", "fs-gauss", 3),
    # issue 4: per-pixel MS-SSIM
    Target("1024²", "float32", "per-pixel MS-SSIM value + gradient ≤ 12× fastssim's SSIM value + gradient",
           "cost", "fs-pw-grad", "fs-grad", 12),
    Target("1024²", "float32", "per-pixel MS-SSIM value + gradient ≥ 100× faster than kornia MS_SSIMLoss "
           "forward + backward", "speedup", "fs-pw-grad", "kornia-mix-grad", 100),
    Target("1024²", "float32", "(like for like, not in the issue) Mix loss + gradient ≥ 100× faster than kornia "
           "MS_SSIMLoss forward + backward", "speedup", "fs-mix-grad", "kornia-mix-grad", 100),
    # --- layout and overhead (issue 16; issue 13's memory bound for the MS-SSIM gradient)
    Target("1024²×3", "float32", "channels-last MS-SSIM value ≤ 1.5× the same image's SSIM value", "cost",
           "fs-ms", "fs-gauss", 1.5),
    Target("1024²×3", "float32", "channels-last MS-SSIM value: peak extra memory ≤ 1× one input", "memory",
           "fs-ms", None, 1),
    Target("1024²", "float32", "MS-SSIM value + gradient ≤ 2.5× fastssim's SSIM value time", "cost",
           "fs-ms-grad", "fs-gauss", 2.5),
    Target("1024²", "float32", "MS-SSIM value + gradient: peak extra memory (the gradient counted) ≤ 2× one "
           "input", "memory", "fs-ms-grad", None, 2),
    # --- end layout and overhead
]

# --- many small images (issue 16): the cases, and their throughput against 1024²
SMALL_BATCHES = ((256, 64), (4096, 32))  # (images, side)
SMALL_REF, SMALL_BOUND = "1024²", 1.5


def per_megapixel_targets(results):
    """Table rows: each small-image batch's fastssim SSIM value time per
    megapixel within SMALL_BOUND× of the SMALL_REF case's (same dtype)."""
    out = []
    for n, side in SMALL_BATCHES:
        name = f"{n}×{side}²"
        for (case, dtype), (rows, nbytes) in results.items():
            ref = results.get((SMALL_REF, dtype))
            if case != name or ref is None:
                continue
            a, b = rows.get("fs-gauss"), ref[0].get("fs-gauss")
            if a is None or b is None or a.timing is None or b.timing is None:
                continue
            per_a = a.timing.median / (nbytes / np.dtype(dtype).itemsize)
            per_b = b.timing.median / (ref[1] / np.dtype(dtype).itemsize)
            val = per_a / per_b
            out.append(f"| {name} {dtype} | SSIM value time per megapixel ≤ {SMALL_BOUND:g}× the {SMALL_REF} "
                       f"case's | {val:.3g}× | {'met' if val <= SMALL_BOUND else 'MISSED'} |")
    return out


def with_per_megapixel_targets(tail, results):
    """targets_section's lines with the per-megapixel rows added to its table."""
    extra = per_megapixel_targets(results)
    if not extra:
        return tail
    if not tail:
        return ["### Targets from the issues (reported, not asserted)", "",
                "| case | target | measured | |", "|---|---|---:|---|", *extra, ""]
    return tail[:-1] + extra + tail[-1:]
# --- end many small images


# --------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(mod):
    try:
        m = __import__(mod)
    except Exception as e:  # ImportError, or a broken install
        return f"not available ({type(e).__name__})"
    v = getattr(m, "__version__", None)
    if v is None:  # e.g. fast_ssim and pytorch_msssim keep it elsewhere: ask the distribution
        from importlib import metadata
        try:
            dists = metadata.packages_distributions().get(mod, [])
            v = metadata.version(dists[0]) if dists else None
        except Exception:
            v = None
    return str(v or "installed")


def _source_of(module):
    """Where the timed package was imported from, with its git commit when it is a checkout."""
    where = os.path.dirname(os.path.abspath(module.__file__))
    try:
        rev = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return where
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{where} (git {rev.stdout.strip()}{', with uncommitted changes' if dirty else ''})"
    except (OSError, subprocess.SubprocessError):
        return where


def machine_description():
    import fastssim

    lines = []
    ncpu = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = ncpu
    lines.append(f"CPU:        {_cpu_model()}  ({ncpu} logical CPUs, {usable} usable)")
    lines.append(f"memory:     {_mem_total()}")
    lines.append(f"system:     {platform.platform()}")
    lines.append(f"python:     {sys.version.split()[0]}")
    try:
        lines.append("load avg:   %.2f %.2f %.2f (1/5/15 min, at start)" % os.getloadavg())
    except OSError:
        pass
    buf = io.StringIO()
    fastssim.show_config(file=buf)
    lines += buf.getvalue().rstrip().splitlines()
    lines.append(f"  from:      {_source_of(fastssim)}")
    vers = {m: _version(m) for m in ("numpy", "scipy", "skimage", "cv2", "fast_ssim", "torch", "pytorch_msssim",
                                      "piq", "torchmetrics", "kornia")}
    lines.append("versions:   " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    env = {k: os.environ.get(k, "(unset)") for k in
           ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    lines.append("env:        " + ", ".join(f"{k}={v}" for k, v in env.items()))
    threads = ["scikit-image: 1 (scipy.ndimage)"]
    try:
        import cv2
        threads.append(f"cv2: {cv2.getNumThreads()}")
    except ImportError:
        pass
    try:
        import torch
        threads.append(f"torch: {torch.get_num_threads()}")
    except ImportError:
        pass
    try:
        import fast_ssim
        st = fast_ssim.get_cpu_status()
        threads.append(f"Fast-SSIM: std::thread pool ({'AVX2+FMA' if st == 0 else f'SSE fallback, status {st}'})")
    except Exception:
        pass
    lines.append("threads:    " + ", ".join(threads))
    try:
        from threadpoolctl import threadpool_info
        pools = [" ".join(str(v) for v in (p.get("internal_api"), p.get("version"),
                                             f"{p.get('num_threads')} threads", p.get("architecture")) if v)
                 for p in threadpool_info()]
        if pools:
            lines.append("threadpools: " + "; ".join(pools))
    except ImportError:
        pass
    return lines


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

@dataclass
class Row:
    impl: Impl
    timing: Timing | None = None
    skipped: str | None = None
    mem: int | None = None
    mem_method: str | None = None


def _fmt_time(s):
    ms = s * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _fmt_ratio(r):
    return f"{r:.3g}" if r < 1000 else f"{r:.0f}"


def case_table(case, dtype, rows, input_bytes, other_load=None, excluded=()):
    by_key = {r.impl.key: r for r in rows}
    head = (f"### {case.name} {np.dtype(dtype).name}  ({case.describe}, shape {case.shape}, "
            f"{case.megapixels:.3g} MP, one input = {input_bytes / 2**20:.3g} MiB)")
    out = [head, ""]
    if other_load is not None:
        warn = " — **busy machine: times are inflated and noisy**" if other_load > 0.1 else ""
        out += [f"Other processes used {100 * other_load:.0f}% of the CPUs while this case was timed{warn}.", ""]
    out += [
           "| implementation | computes | median ms | IQR % | n | MP/s | ÷ ref | ref | peak extra MiB | × input | value |",
           "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    footnotes = []
    for r in rows:
        label = r.impl.label
        if r.impl.note:
            if r.impl.note not in footnotes:
                footnotes.append(r.impl.note)
            label += f" [{footnotes.index(r.impl.note) + 1}]"
        if r.timing is None:
            out.append(f"| {label} | {r.impl.computes} | skipped: {r.skipped} | | | | | | | | |")
            continue
        t = r.timing
        iqr = 100 * (t.q3 - t.q1) / t.median if t.median > 0 else 0
        ratio, ref = "", ""
        refrow = by_key.get(r.impl.ref) if r.impl.ref else None
        if refrow is not None and refrow.timing is not None:
            ratio = _fmt_ratio(t.median / refrow.timing.median)
            ref = r.impl.ref
        mem = xin = ""
        if r.mem is not None:
            # 'maxrss' (no /proc): only what rose above the subprocess's
            # earlier peak was seen, so it is a lower bound.
            lb = "≥ " if r.mem_method == "maxrss" else ""
            mem = f"{lb}{r.mem / 2**20:.1f}"
            xin = f"{lb}{r.mem / input_bytes:.2f}"
        out.append(f"| {label} | {r.impl.computes} | {_fmt_time(t.median)} | {iqr:.0f} | {t.n} | "
                   f"{case.megapixels / t.median:.3g} | {ratio} | {ref} | {mem} | {xin} | {t.value:.6f} |")
    out.append("")
    for i, n in enumerate(footnotes, 1):
        out.append(f"[{i}] {n}  ")
    reasons = {}
    for key, why in excluded:
        reasons.setdefault(why, []).append(key)
    for why, keys in reasons.items():
        out.append(f"Not run for this case: {', '.join(keys)} — {why}.  ")
    out.append("")
    return out


def targets_section(results):
    """results: {(case name, dtype name): ({key: Row}, bytes of one input)}"""
    out = []
    for tg in TARGETS:
        if (tg.case, tg.dtype) not in results:
            continue
        rows, nbytes = results[(tg.case, tg.dtype)]
        a = rows.get(tg.key)
        b = rows.get(tg.other) if tg.other else None
        if a is None or a.timing is None:
            continue
        if tg.kind == "memory":
            if a.mem is None:
                continue
            val, ok = a.mem / nbytes, a.mem / nbytes <= tg.bound
            shown = f"{val:.2f}× input"
        else:
            if b is None or b.timing is None:
                continue
            if tg.kind == "speedup":
                val = b.timing.median / a.timing.median
                ok = val >= tg.bound
            else:
                val = a.timing.median / b.timing.median
                ok = val <= tg.bound
            shown = f"{val:.3g}×"
        out.append(f"| {tg.case} {tg.dtype} | {tg.text} | {shown} | {'met' if ok else 'MISSED'} |")
    if not out:
        return []
    return ["### Targets from the issues (reported, not asserted)", "",
            "| case | target | measured | |", "|---|---|---:|---|", *out, ""]

