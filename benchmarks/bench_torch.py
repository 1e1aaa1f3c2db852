"""fastssim.torch against pytorch_msssim: forward + backward on the CPU, and the adapter's cost.

One 1024 x 1024 float32 pair as an (1, 1, H, W) tensor, x requiring a gradient.
Rows (medians of interleaved rounds, one process):

* ``numpy``: the bare NumPy call the adapter makes, value + gradient in one
  call (``fastssim.ssim(x, y, gradient='x')`` / ``fastssim.ms_ssim``);
* ``fastssim.torch``: ``ft.ssim(x, y, data_range=1).backward()`` (the same
  call, plus the tensor <-> array views, the autograd.Function, and the
  backward, which hands the saved gradient over as ``x.grad``; for the loss
  rows, ``ft.ssim_loss`` against ``fastssim.losses.ssim(..., gradient=True)``,
  whose backward negates the saved gradient in place);
* ``compat``: ``fastssim.torch.compat.ssim(...)`` (pytorch_msssim's API);
* ``pytorch_msssim``: ``pytorch_msssim.ssim(...).backward()`` (autograd
  through its convolutions).

The adapter's own CPU time: the engine call replaced by a stub that returns
the arrays of one real call (the same gradient array every time: the page
faults of a fresh buffer are the engine's cost, not the adapter's),
thread CPU time of ``ft.ssim(...).backward()`` per call, best of 7 x 300;
beside it the same for a bare ``torch.autograd.Function`` that saves and
returns such a buffer (PyTorch's own floor for any autograd adapter).  CPU
time of one thread is much less sensitive than wall time to other processes
on a shared machine.

Peak extra memory: for each row, in a fresh subprocess, warm up on a small
pair, reset the peak-RSS mark (/proc/self/clear_refs), make one full-size
call, and read VmHWM - VmRSS; given in units of one input (4 MiB).

    python benchmarks/bench_torch.py [--rounds 7] [--no-memory]

Never asserts; prints a Markdown report.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

import fastssim
import fastssim.torch as ft
from fastssim.torch import compat as fc

try:
    import pytorch_msssim as pm
except ImportError:  # pragma: no cover
    pm = None

SIDE = 1024


def _version(dist):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def inputs(side=SIDE):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, side, side, generator=g)
    y = (0.6 * x + 0.4 * torch.rand(1, 1, side, side, generator=g)).contiguous()
    return x, y


def rows(x, y):
    """name -> zero-argument callable doing one forward (+ backward)."""
    xn, yn = x.numpy()[0, 0], y.numpy()[0, 0]

    def step(fn):
        def run():
            xr = x.detach().requires_grad_()
            fn(xr, y).backward()
            return xr.grad
        return run

    r = {
        "SSIM numpy value+grad": lambda: fastssim.ssim(xn, yn, data_range=1.0, gradient="x"),
        "SSIM fastssim.torch fwd+bwd": step(lambda a, b: ft.ssim(a, b, data_range=1.0)),
        "SSIM compat fwd+bwd": step(lambda a, b: fc.ssim(a, b, data_range=1.0)),
        "MS-SSIM numpy value+grad": lambda: fastssim.ms_ssim(xn, yn, data_range=1.0, gradient="x",
                                                             downsample="zero"),
        "MS-SSIM fastssim.torch fwd+bwd": step(lambda a, b: ft.ms_ssim(a, b, data_range=1.0,
                                                                       downsample="zero")),
        "MS-SSIM compat fwd+bwd": step(lambda a, b: fc.ms_ssim(a, b, data_range=1.0)),
        "SSIM-loss numpy value+grad": lambda: fastssim.losses.ssim(xn, yn, data_range=1.0,
                                                                   gradient=True),
        "SSIM-loss fastssim.torch fwd+bwd": step(lambda a, b: ft.ssim_loss(a, b, data_range=1.0)),
        "SSIM numpy value only": lambda: fastssim.ssim(xn, yn, data_range=1.0),
        "SSIM fastssim.torch value only": lambda: ft.ssim(x, y, data_range=1.0),
    }
    if pm is not None:
        r["SSIM pytorch_msssim fwd+bwd"] = step(lambda a, b: pm.ssim(a, b, data_range=1.0))
        r["MS-SSIM pytorch_msssim fwd+bwd"] = step(lambda a, b: pm.ms_ssim(a, b, data_range=1.0))
    return r


def time_rows(r, rounds):
    times = {k: [] for k in r}
    for f in r.values():  # warm-up: thread pools, plans, caches
        f()
    for _ in range(rounds):
        for k, f in r.items():
            reps = 1 if "pytorch_msssim" in k else 5
            for _ in range(reps):
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    return ({k: float(np.median(v)) for k, v in times.items()},
            {k: float(np.min(v)) for k, v in times.items()})


class _Floor(torch.autograd.Function):
    """PyTorch's floor: save a gradient-sized buffer (the stub's), return a 0-d value,
    hand the buffer back in the backward."""

    grad = None

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(torch.from_numpy(_Floor.grad))  # a new tensor: x.grad takes it
        return torch.tensor(0.5)

    @staticmethod
    def backward(ctx, gv):
        g, = ctx.saved_tensors
        return g, None


def adapter_cpu(x, y):
    """(adapter us, floor us) of thread CPU time per forward + backward, engine stubbed."""
    real = fastssim.ssim
    xm, ym = x.numpy().reshape((1, -1) + x.shape[2:]), y.numpy().reshape((1, -1) + y.shape[2:])
    r = real(xm, ym, data_range=1.0, gradient="x", channel_axis=1)

    _Floor.grad = r.grad_x.reshape(x.shape)

    def stub(a, b, gradient=None, **kw):  # the same (touched) gradient array every call
        return type(r)(r.value.copy(), None, r.grad_x, None)

    def adapter():
        xr = x.detach().requires_grad_()
        ft.ssim(xr, y, data_range=1.0).backward()

    def floor():
        xr = x.detach().requires_grad_()
        _Floor.apply(xr, y).backward()

    out = []
    fastssim.ssim = stub
    try:
        for f in (adapter, floor):
            f()
            best = []
            for _ in range(7):
                t = time.thread_time_ns()
                for _ in range(300):
                    f()
                best.append((time.thread_time_ns() - t) / 300 / 1e3)
            out.append(min(best))
    finally:
        fastssim.ssim = real
    return out


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def memory_child(key):
    x, y = inputs()
    small = rows(*inputs(192))
    small[key]()
    fn = rows(x, y)[key]
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status("VmRSS")
    out = fn()
    peak = _status("VmHWM")
    del out
    print(json.dumps({"extra": max(0, peak - base)}))


def memory(key):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--_memory-child", key],
                       capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])["extra"]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--_memory-child", dest="child")
    args = ap.parse_args(argv)
    if args.child:
        return memory_child(args.child)

    x, y = inputs()
    r = rows(x, y)
    med, best = time_rows(r, args.rounds)
    one = x.numel() * x.element_size()
    mem = {} if args.no_memory else {k: memory(k) for k in r if "value only" not in k}
    print(f"# fastssim.torch benchmark: {SIDE}x{SIDE} float32, forward + backward, CPU\n")
    print(f"- {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), fastssim "
          f"{fastssim.__version__}, pytorch_msssim {_version('pytorch_msssim') if pm else 'not installed'}")
    print(f"- medians of {args.rounds} interleaved rounds (5 calls per round for fastssim rows, 1 for "
          "pytorch_msssim); OMP_WAIT_POLICY=" + os.environ.get("OMP_WAIT_POLICY", "(unset)") + "\n")
    try:
        la = os.getloadavg()
        print(f"- load average at the end: {la[0]:.1f} / {la[1]:.1f} / {la[2]:.1f} (1/5/15 min; "
              f"{os.cpu_count()} CPUs): other processes share the machine, wall times are noisy\n")
    except OSError:  # pragma: no cover
        pass
    print("| call | median ms | min ms | peak extra memory (inputs) | note (ratios of medians) |")
    print("|---|---:|---:|---:|---|")
    for k, t in med.items():
        fam = k.split()[0]
        note = ""
        if "fastssim.torch fwd+bwd" in k or "compat" in k:
            base = med[f"{fam} numpy value+grad"]
            note = f"adapter {100 * (t / base - 1):+.1f} % over numpy value+grad"
        if "value only" in k and "torch" in k:
            note = f"adapter {100 * (t / med['SSIM numpy value only'] - 1):+.1f} % over numpy value"
        if "pytorch_msssim" in k:
            note = f"{t / med[f'{fam} fastssim.torch fwd+bwd']:.0f}x slower than fastssim.torch"
        m = mem.get(k)
        ms = f"{m / one:.2f}" if m is not None else "-"
        print(f"| {k} | {1e3 * t:.2f} | {1e3 * best[k]:.2f} | {ms} | {note} |")
    own, floor = adapter_cpu(x, y)
    print(f"\nThe adapter's own CPU time per SSIM forward + backward (engine stubbed, one thread's "
          f"CPU time, best of 7 x 300): {own:.0f} us, of which {floor:.0f} us is a bare "
          f"torch.autograd.Function's; {100 * own * 1e-6 / med['SSIM numpy value+grad']:.1f} % "
          f"of this run's median bare NumPy SSIM value+grad call.")


if __name__ == "__main__":
    main()
