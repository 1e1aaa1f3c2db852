#!/usr/bin/env python
"""fastssim.dask at scale: one huge pair on a LocalCluster, and a dataset of PNG pairs.

    python benchmarks/bench_dask.py                       # the issue's sizes (32768², N PNG pairs)
    python benchmarks/bench_dask.py --side 8192 --chunk 2048 --pairs 200   # a quick look
    python benchmarks/bench_dask.py --skip files --workers 2 --threads 1 --chunk 4096  # session 4's layout
    python benchmarks/bench_dask.py --out benchmarks/results/dask.md
    python benchmarks/bench_dask.py --skip files --source stacked   # x, y: views of one array

Part 1: a ``side`` x ``side`` float32 pair generated chunk by chunk inside the
workers (never whole in memory: a noise tile repeated, plus an offset per
tile copy; one pass over each chunk, about a memory copy, so that the source
costs as little as a chunk can) on a ``distributed.LocalCluster`` (by
default one worker process with one thread per CPU, each task calling the
engine with ``workers=1``: the layout measured fastest on this project's
2-core machine, see benchmarks/results/2026-12-03-dask-s5.md; ``--workers``,
``--threads``, ``--task-workers`` and ``--chunk`` set others).  It reports the SSIM and MS-SSIM
values (the default ``shift='block'`` and ``shift='image'``), the wall time,
the CPU seconds of the workers and of this process, the megapixels per
second (wall and CPU), a pass that only generates the chunks (the part that
is not fastssim's, reported, and subtracted only where said), the same calls
on a source that costs nothing (one cached chunk pair for every chunk), and
each worker's peak resident memory during each run (sampled every 5 ms by a
thread in the worker, from its resident size just before the run) beside the
size of one chunk pair, and Dask's side of each run: the tasks run, the
wall seconds inside them and the CPU seconds of the threads running them
(Dask's task stream and fine performance metrics), and the transfers of task
results between the workers (count and bytes, from the workers' logs).  A
first run (a warm-up: imports, the workers' first allocations) is not
reported.  The in-memory engine's megapixels per second
are measured on a ``--ref-side`` pair in this process with as many threads
as the cluster has workers.

Part 2: ``--pairs`` pairs of 256x256 uint8 PNG files (crops of scikit-image's
sample images and a noisy copy) scored by ``fastssim.dask.score_files`` on the
cluster, by a plain loop over ``skimage.metrics.structural_similarity`` (with
the same Gaussian window and population covariance, so the values agree),
and by reading every file in this process and making one in-memory batch call.

Nothing is asserted (house rule 10); numbers are printed as measured.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

TILE = 1024


@functools.lru_cache(maxsize=2)
def _tile(which):
    """The tile of x (which=0) or y (which=1), made once per process: a smooth
    bump 0.1 sin(pi i / T) sin(pi j / T) plus noise, 0.2 u0 for x and
    0.2 u0 + 0.1 u1 for y (u uniform in [-0.5, 0.5))."""
    rng = np.random.default_rng(1)
    u0 = rng.random((TILE, TILE), dtype=np.float32) - np.float32(0.5)
    s = np.sin(np.pi * (np.arange(TILE, dtype=np.float32) + 0.5) / TILE).astype(np.float32)
    t = np.float32(0.1) * s[:, None] * s[None, :] + np.float32(0.2) * u0
    if which:
        u1 = np.random.default_rng(2).random((TILE, TILE), dtype=np.float32) - np.float32(0.5)
        t += np.float32(0.1) * u1
    t.flags.writeable = False
    return t


def _gen(block_id=None, which=0, chunk=0, out=None):
    """One chunk of x (which=0) or y (which=1): the tile repeated every TILE px,
    each copy plus its own offset, 0.5 + 0.05 sin(0.7 ti) + 0.05 cos(0.5 tj) for
    the copy at tile row ti, column tj of the image (so chunks differ in mean).
    One pass over the chunk (each tile plus a scalar, written in place): a
    source as cheap as a chunk can be made, about a memory copy, so that the
    time measured is fastssim's, not the source's."""
    t = _tile(which)
    if out is None:
        out = np.empty((chunk, chunk), np.float32)
    i0, j0 = block_id[0] * chunk, block_id[1] * chunk
    for a in range(0, chunk, TILE):
        for b in range(0, chunk, TILE):
            ti, tj = (i0 + a) // TILE, (j0 + b) // TILE
            off = np.float32(0.5 + 0.05 * np.sin(0.7 * ti) + 0.05 * np.cos(0.5 * tj))
            blk = out[a:a + TILE, b:b + TILE]
            np.add(t[: blk.shape[0], : blk.shape[1]], off, out=blk)
    return out


def _image(side, chunk, which, gen):
    import dask.array as da

    n = side // chunk
    return da.map_blocks(gen, which=which, chunk=chunk, chunks=((chunk,) * n,) * 2,
                         dtype=np.float32, meta=np.empty((0, 0), np.float32))


def _separate(side, chunk):
    """x and y: two arrays, each chunk made by its own task (as two zarr arrays
    read side by side); the scheduler places the tasks, and a chunk of x and
    the chunk of y at the same place may be made on different workers (then
    one of them is moved: the transfers are part of what is measured)."""
    return _image(side, chunk, 0, _gen), _image(side, chunk, 1, _gen)


def _gen_pair(block_id=None, chunk=0):
    out = np.empty((2, chunk, chunk), np.float32)
    for w in (0, 1):
        _gen(block_id[1:], w, chunk, out[w])
    return out


def _half(p, which):
    return p[which]


def _stacked(side, chunk):
    """x and y as views of one (2, side, side) array whose tasks make a chunk of
    x and the chunk of y at the same place together (as one zarr array holding
    both): they stay on one worker, at the cost of two more (light) tasks per
    chunk, the views."""
    import dask.array as da

    n = side // chunk
    xy = da.map_blocks(_gen_pair, chunk=chunk, chunks=((2,),) + ((chunk,) * n,) * 2,
                       dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
    return tuple(da.map_blocks(_half, xy, which=w, drop_axis=0, chunks=xy.chunks[1:],
                               dtype=xy.dtype, meta=np.empty((0, 0), np.float32))
                 for w in (0, 1))


SOURCES = {"separate": _separate, "stacked": _stacked}
_pair = _separate


@functools.lru_cache(maxsize=2)
def _cached(chunk, which):
    out = _gen((0, 0), which, chunk)
    out.flags.writeable = False
    return out


def _gen_cached(block_id=None, which=0, chunk=0):
    """The same chunk for every block, made once per worker: a source that costs nothing."""
    return _cached(chunk, which)


def _cached_pair(side, chunk):
    return _image(side, chunk, 0, _gen_cached), _image(side, chunk, 1, _gen_cached)


def _touch(a, b):
    return np.array([[float(a[0, 0]) + float(b[0, 0])]])


def _sampler_start():
    """In a worker: a thread that keeps the peak resident memory (sampled every 5 ms)."""
    import threading

    import psutil

    if getattr(sys, "_fastssim_peak", None) is not None:
        return
    proc = psutil.Process()
    sys._fastssim_peak = [proc.memory_info().rss]

    def loop():
        while True:
            r = proc.memory_info().rss
            if r > sys._fastssim_peak[0]:
                sys._fastssim_peak[0] = r
            time.sleep(0.005)

    threading.Thread(target=loop, daemon=True).start()


def _sampler_reset():
    import gc

    import psutil

    gc.collect()
    sys._fastssim_peak[0] = psutil.Process().memory_info().rss
    return sys._fastssim_peak[0] / 2**20


def _sampler_peak():
    return sys._fastssim_peak[0] / 2**20


def _machine():
    import dask
    import distributed

    import fastssim

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}); Python {platform.python_version()}, "
            f"NumPy {np.__version__}, dask {dask.__version__}, distributed {distributed.__version__}, "
            f"fastssim {fastssim.__version__}")


def _cpu_seconds():
    """user + system CPU seconds of this process so far (all its threads)."""
    t = os.times()
    return t.user + t.system


def _transfers_reset(dask_worker):
    dask_worker.transfer_incoming_log.clear()


def _transfers(dask_worker):
    """(transfers, bytes) this worker received since the last reset."""
    log = dask_worker.transfer_incoming_log
    return len(log), sum(e["total"] for e in log)


def _thread_cpu(dask_scheduler):
    """CPU seconds of the threads that ran tasks, so far (Dask's fine performance metrics)."""
    return sum(v for k, v in dask_scheduler.cumulative_worker_metrics.items()
               if isinstance(k, tuple) and k[0] == "execute" and k[-2:] == ("thread-cpu", "seconds"))


def _run(client, fn, label, out):
    """Compute ``fn()`` on the cluster; keeps (label, result, wall s, RSS before,
    peak RSS, CPU s, graph): the CPU seconds of the workers and of this process
    (the client and the LocalCluster's scheduler), a measure the other jobs on a
    shared machine disturb far less than the wall time; ``graph``: the tasks
    run, the seconds spent inside them (their compute spans, summed over the
    workers, from Dask's task stream) and the transfers between workers (count,
    bytes)."""
    import distributed

    client.run(_sampler_start)
    base = client.run(_sampler_reset)
    client.run(_transfers_reset)
    time.sleep(1.5)  # the workers report their metrics with their heartbeats
    tcpu0 = client.run_on_scheduler(_thread_cpu)
    cpu0 = sum(client.run(_cpu_seconds).values()) + _cpu_seconds()
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    with distributed.get_task_stream(client) as ts:
        res = client.compute(fn(), sync=True)
    dt = time.perf_counter() - t
    load = (load0, os.getloadavg()[0])
    cpu = sum(client.run(_cpu_seconds).values()) + _cpu_seconds() - cpu0
    peak = client.run(_sampler_peak)
    tr = client.run(_transfers).values()
    inside = sum(s["stop"] - s["start"] for task in ts.data for s in task["startstops"]
                 if s["action"] == "compute")
    time.sleep(1.5)
    tcpu = client.run_on_scheduler(_thread_cpu) - tcpu0
    graph = (len(ts.data), inside, sum(n for n, _ in tr), sum(b for _, b in tr), tcpu)
    out.append((label, res, dt, base, peak, cpu, graph, load))
    print(f"  {label}: load {load[0]:.1f}->{load[1]:.1f}, {dt:.1f} s, {cpu:.1f} CPU s, {graph[0]} tasks, {inside:.1f} s in tasks "
          f"({tcpu:.1f} thread CPU s), {graph[2]} transfers, {graph[3] / 2**20:.0f} MiB",
          file=sys.stderr)
    return res, dt, base, peak


def part1(args, client, lines):
    import fastssim
    import fastssim.dask as fdask

    side, chunk = args.side, args.chunk
    mpx = side * side / 1e6
    pair_mib = 2 * chunk * chunk * 4 / 2**20
    winfo = client.scheduler_info()["workers"]
    nproc = len(winfo)
    nw = sum(w["nthreads"] for w in winfo.values())  # tasks at once; the in-memory call's threads
    tw = args.task_workers if args.task_workers is not None else "default"
    lines += [f"## One {side}² float32 pair, chunks {chunk}² ({(side // chunk) ** 2} per image), "
              f"LocalCluster of {nproc} worker process(es) × {nw // nproc} thread(s), engine "
              f"workers per task: {tw}, source {args.source!r}", "",
              f"One chunk pair: {pair_mib:.0f} MiB; 4× that: {4 * pair_mib:.0f} MiB.  Each input is "
              f"{side * side * 4 / 2**30:.1f} GiB.", ""]
    runs = []

    def gen_only():
        import dask.array as da

        x, y = _pair(side, chunk)
        n = side // chunk
        return da.map_blocks(_touch, x, y, chunks=((1,) * n,) * 2, dtype=np.float64).sum()

    def value(fn, source=_pair, **kw):
        if args.task_workers is not None:
            kw["workers"] = args.task_workers
        return lambda: fn(*source(side, chunk), data_range=1.0, **kw)

    # a warm-up (imports, the workers' first allocations), not reported
    _run(client, value(fdask.ssim, source=_cached_pair), "warm-up", [])
    _run(client, gen_only, "warm-up (the generator's tiles, first touches)", [])
    how = ("x, y and a read of them fused: one task per chunk" if args.source == "separate" else
           "the pair, its two views, a read of them: four tasks per chunk")
    _run(client, gen_only, f"generate the chunks only ({how})", runs)
    _run(client, value(fdask.ssim), "fastssim.dask.ssim value", runs)
    _run(client, value(fdask.ms_ssim), "fastssim.dask.ms_ssim value", runs)
    if not args.no_image_shift:
        _run(client, value(fdask.ssim, shift="image"), "fastssim.dask.ssim value, shift='image'",
             runs)
        _run(client, value(fdask.ms_ssim, shift="image"),
             "fastssim.dask.ms_ssim value, shift='image'", runs)
    cached = []
    _run(client, value(fdask.ssim, source=_cached_pair), "fastssim.dask.ssim value, cached source",
         cached)
    _run(client, value(fdask.ms_ssim, source=_cached_pair),
         "fastssim.dask.ms_ssim value, cached source", cached)
    lines += ["| run | load avg (1 min) before → after | value | wall s | Mpx/s | CPU s | "
              "Mpx per CPU s | worker peak RSS MiB (before the run) | peak − before, / chunk pair |",
              "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for label, res, dt, base, peak, cpu, _, load in runs:
        val = "-" if "only" in label else f"{float(res):.6f}"
        rss = ", ".join(f"{peak[w]:.0f} ({base[w]:.0f})" for w in sorted(peak))
        extra = max(peak[w] - base[w] for w in peak)
        lines.append(f"| {label} | {load[0]:.1f} → {load[1]:.1f} | {val} | {dt:.1f} | {mpx / dt:.0f} | {cpu:.1f} | "
                     f"{mpx / cpu:.0f} | {rss} | {extra:.0f} MiB, {extra / pair_mib:.1f}× |")
    gen_cpu = runs[0][5]
    gen_work = runs[0][6][4]  # the generate-only run's task threads: the source's own work
    lines += ["", "Mpx/s are of one image's pixels; CPU s are those of the two worker processes "
              "and of this process (client and scheduler), idle time included.  The default "
              "(shift='block') generates every chunk pair once; shift='image' generates it "
              "twice (once for the shifts' sample grid).", "",
              "The same calls on a source that costs nothing (every chunk is one cached, "
              "read-only chunk pair: a tiled image; its memory is shared, so no peak is shown):", "",
              "| run | load avg (1 min) before → after | value | wall s | Mpx/s | CPU s | "
              "Mpx per CPU s |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for label, res, dt, _, _, cpu, _, load in cached:
        lines.append(f"| {label} | {load[0]:.1f} → {load[1]:.1f} | {float(res):.6f} | {dt:.1f} | {mpx / dt:.0f} | {cpu:.1f} | "
                     f"{mpx / cpu:.0f} |")
    lines += ["", "Dask's side of each run (task stream, Dask's fine performance metrics and "
              "the workers' transfer logs): the tasks run, the wall seconds spent inside them "
              "and the CPU seconds of the threads running them (both summed over the workers), "
              "the CPU seconds of all processes (as above), and the transfers of task results "
              "between the workers:", "",
              "| run | tasks | wall s inside tasks | tasks' thread CPU s | all CPU s | transfers "
              "| MiB moved |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for label, _, _, _, _, cpu, (ntask, inside, ntr, nbytes, tcpu), _ in runs + cached:
        lines.append(f"| {label} | {ntask} | {inside:.1f} | {tcpu:.1f} | {cpu:.1f} | {ntr} | "
                     f"{nbytes / 2**20:.0f} |")
    lines.append("")

    # the in-memory engine on a smaller pair, in this process, as many threads as workers
    rs = args.ref_side
    x = _gen(block_id=(0, 0), which=0, chunk=rs)
    y = _gen(block_id=(0, 0), which=1, chunk=rs)
    lines += [f"In-memory engine on one {rs}² float32 pair (same generator), workers={nw}, "
              "median of 3 (after a warm-up):", "",
              "| call | load avg (1 min) before → after | value | median s | Mpx/s | median CPU s "
              "| Mpx per CPU s |",
              "|---|---|---:|---:|---:|---:|---:|"]
    mem = []
    for name, fn in (("fastssim.ssim", fastssim.ssim), ("fastssim.ms_ssim", fastssim.ms_ssim)):
        fn(x, y, data_range=1.0, workers=nw)
        load0 = os.getloadavg()[0]
        ts, cs = [], []
        for _ in range(3):
            c, t = _cpu_seconds(), time.perf_counter()
            v = fn(x, y, data_range=1.0, workers=nw)
            ts.append(time.perf_counter() - t)
            cs.append(_cpu_seconds() - c)
        med, cmed = sorted(ts)[1], sorted(cs)[1]
        mpx_r = rs * rs / 1e6
        lines.append(f"| {name} | {load0:.1f} → {os.getloadavg()[0]:.1f} | {float(v):.6f} | {med:.3f} | {mpx_r / med:.0f} | {cmed:.2f} | "
                     f"{mpx_r / cmed:.0f} |")
        mem.append((mpx_r / med, mpx_r / cmed))
    lines.append("")
    (ssim_mem, ssim_cpu), (ms_mem, ms_cpu) = mem

    def ratio(cpu, ref, passes=1):
        """end to end; less ``passes`` times the source's own work (the generate-only
        run's task thread CPU s); less ``passes`` whole generate-only runs (all their CPU s,
        Dask's per-task work for the source's own tasks included)"""
        pl = "es" if passes > 1 else ""
        out = f"{mpx / cpu / ref:.0%} end to end"
        for sub, what in ((gen_work, "the source's own work"),
                          (gen_cpu, f"{passes} whole generate-only run{'s' if passes > 1 else ''}")):
            net = cpu - passes * sub
            out += (f", {mpx / net / ref:.0%} less {what} ({passes * sub:.1f} CPU s)" if net > 0
                    else f", n/a less {what}")
        return out

    lines += ["Per CPU second, fastssim.dask Mpx per CPU s / in-memory Mpx per CPU s "
              "(the in-memory call does not make its inputs; the source's own work is the "
              "thread CPU s of the generate-only run's tasks, the generator's arithmetic and "
              "page faults; a whole generate-only run adds Dask's per-task work for its own "
              "tasks, which the fused runs do not have):", "",
              f"- SSIM: {ratio(runs[1][5], ssim_cpu)}; cached source "
              f"{mpx / cached[0][5] / ssim_cpu:.0%}"
              + (f"; shift='image' {ratio(runs[3][5], ssim_cpu, 2)}" if len(runs) > 3 else "") + ".",
              f"- MS-SSIM: {ratio(runs[2][5], ms_cpu)}; cached source "
              f"{mpx / cached[1][5] / ms_cpu:.0%}"
              + (f"; shift='image' {ratio(runs[4][5], ms_cpu, 2)}" if len(runs) > 3 else "") + ".",
              "",
              f"Wall time, fastssim.dask / in-memory Mpx/s (end to end): SSIM "
              f"{mpx / runs[1][2] / ssim_mem:.0%}, MS-SSIM {mpx / runs[2][2] / ms_mem:.0%}; "
              f"cached source {mpx / cached[0][2] / ssim_mem:.0%}, "
              f"{mpx / cached[1][2] / ms_mem:.0%}.", ""]
    del x, y


def _write_pngs(root, n):
    from PIL import Image
    from skimage import data

    srcs = [np.asarray(getattr(data, k)()) for k in ("camera", "coins", "moon", "brick", "grass", "gravel")]
    srcs += [np.asarray(data.astronaut()).mean(axis=2).astype(np.uint8),
             np.asarray(data.coffee()).mean(axis=2).astype(np.uint8)]
    rng = np.random.default_rng(0)
    a, b = os.path.join(root, "a"), os.path.join(root, "b")
    os.makedirs(a)
    os.makedirs(b)
    for i in range(n):
        s = srcs[i % len(srcs)]
        r0 = rng.integers(0, s.shape[0] - 256 + 1)
        c0 = rng.integers(0, s.shape[1] - 256 + 1)
        im = s[r0:r0 + 256, c0:c0 + 256]
        noisy = np.clip(im + rng.normal(0, 12, im.shape), 0, 255).astype(np.uint8)
        Image.fromarray(im).save(os.path.join(a, f"{i:06d}.png"))
        Image.fromarray(noisy).save(os.path.join(b, f"{i:06d}.png"))
    return a, b


def part2(args, client, lines):
    import imageio.v3 as iio
    from skimage.metrics import structural_similarity

    import fastssim
    import fastssim.dask as fdask

    n = args.pairs
    root = tempfile.mkdtemp(prefix="fastssim-bench-dask-")
    try:
        t = time.perf_counter()
        a, b = _write_pngs(root, n)
        print(f"  wrote {n} PNG pairs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        names = sorted(os.listdir(a))
        winfo = client.scheduler_info()["workers"]
        nproc, nw = len(winfo), sum(w["nthreads"] for w in winfo.values())
        rows = []

        t = time.perf_counter()
        res = fdask.score_files(a, b, client=client, as_frame=False)
        dt = time.perf_counter() - t
        vals = np.array([r["value"] for r in res])
        errors = sum(r["error"] is not None for r in res)
        rows.append((f"fastssim.dask.score_files, LocalCluster {nproc} × {nw // nproc} thread(s)", dt, vals))
        print(f"  score_files: {dt:.1f} s ({errors} errors)", file=sys.stderr)

        t = time.perf_counter()
        sk = []
        for f in names:
            x = iio.imread(os.path.join(a, f))
            y = iio.imread(os.path.join(b, f))
            sk.append(structural_similarity(x, y, data_range=255, gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False))
        dt = time.perf_counter() - t
        rows.append(("scikit-image loop (read + structural_similarity), 1 process", dt, np.array(sk)))
        print(f"  skimage loop: {dt:.1f} s", file=sys.stderr)

        t = time.perf_counter()
        xs = np.stack([iio.imread(os.path.join(a, f)) for f in names])
        ys = np.stack([iio.imread(os.path.join(b, f)) for f in names])
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        v = fastssim.ssim(xs, ys, workers=nw)
        t_call = time.perf_counter() - t
        rows.append((f"in-memory: read all in 1 process ({t_read:.2f} s) + one batch call "
                     f"({t_call:.3f} s, workers={nw})", t_read + t_call, v))
        print(f"  in-memory batch: {t_read:.1f} + {t_call:.2f} s", file=sys.stderr)

        lines += [f"## {n} pairs of 256² uint8 PNG files", "",
                  "| how | wall s | pairs/s | max |value − scikit-image| |", "|---|---:|---:|---:|"]
        for label, dt, vals in rows:
            lines.append(f"| {label} | {dt:.2f} | {n / dt:.0f} | "
                         f"{np.max(np.abs(vals - np.array(sk))):.1e} |")
        lines.append("")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", type=int, default=32768, help="side of the huge pair (default 32768)")
    ap.add_argument("--chunk", type=int, default=8192, help="chunk side (default 8192)")
    ap.add_argument("--ref-side", type=int, default=8192, help="side of the in-memory reference pair")
    ap.add_argument("--pairs", type=int, default=2000, help="PNG pairs for part 2 (default 2000)")
    ap.add_argument("--workers", type=int, default=1,
                    help="LocalCluster worker processes (default 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads per worker process (default: CPUs / worker processes)")
    ap.add_argument("--task-workers", type=int, default=None,
                    help="engine threads per task (the calls' workers=; default: fastssim.dask's)")
    ap.add_argument("--no-image-shift", action="store_true",
                    help="skip the shift='image' runs")
    ap.add_argument("--source", choices=tuple(SOURCES), default="separate",
                    help="x and y as two arrays (separate, default) or views of one (stacked)")
    ap.add_argument("--saturation", type=float, default=None,
                    help="distributed.scheduler.worker-saturation (Dask's default: 1.1); 1.0 "
                         "queues fewer chunks per worker, for less memory")
    ap.add_argument("--skip", choices=("huge", "files"), action="append", default=[])
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args(argv)
    if args.side % args.chunk or args.chunk % TILE:
        ap.error(f"--side must be a multiple of --chunk, and --chunk of {TILE}")
    if args.threads is None:
        args.threads = max(1, (os.cpu_count() or 1) // args.workers)
    global _pair
    _pair = SOURCES[args.source]

    import dask
    import distributed

    if args.saturation is not None:
        dask.config.set({"distributed.scheduler.worker-saturation": args.saturation})
    lines = ["# fastssim.dask benchmark", "", _machine(), "",
             f"Command: `python benchmarks/bench_dask.py {' '.join(sys.argv[1:] if argv is None else argv)}`", ""]
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=args.threads, processes=True,
                                  dashboard_address=None, silence_logs=40,
                                  memory_limit=0) as cluster, distributed.Client(cluster) as client:
        if "huge" not in args.skip:
            part1(args, client, lines)
        if "files" not in args.skip:
            part2(args, client, lines)
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
