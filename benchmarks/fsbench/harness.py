"""Timing (interleaved rounds, medians) and peak extra memory of one call, measured
in a fresh subprocess (the "memory child").  Nothing here asserts on time.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from .cases import MAX_CALLS, SINGLE_CALL, SLOW_CALL, SLOW_ROUNDS, Case, make_inputs, small_inputs
from .peers import IMPLEMENTATIONS

# the command line the memory child is started with (it re-enters cli.main)
BENCH_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench_ssim.py")

# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------

@dataclass
class Timing:
    median: float
    q1: float
    q3: float
    n: int
    value: float


def _timing(times, value):
    if len(times) >= 4:
        q1, _, q3 = statistics.quantiles(times, n=4)
    else:
        q1, q3 = min(times), max(times)
    return Timing(statistics.median(times), q1, q3, len(times), value)


def time_rows(fns, rounds, round_time, progress=None, warmups=None):
    """Time several callables against each other.

    Each is called once to warm up (its return value is the row's value).  Then
    ``rounds`` rounds run every callable in turn, each for at least one call
    and about ``round_time`` seconds, recording every call's wall time.  Interleaving the rows spreads a burst of outside load (another
    process, a preempted vCPU) over all rows instead of one, so the ratios
    stay meaningful on a busy 2-core machine.  Rows whose warm-up took longer
    than ``SLOW_CALL`` seconds stop after ``SLOW_ROUNDS`` rounds; rows whose
    warm-up took longer than ``SINGLE_CALL`` seconds are timed in one call.

    ``warmups[i]``, where given (the slow peers), is a callable on a small copy
    of the inputs: it is called instead of the full-size warm-up, and the row
    is then timed in exactly one full-size call, which also gives its value.

    ``progress(i, seconds, error, what)`` is told about each warm-up
    (``what='warm-up'``) and each single timed call (``what='single'``, also
    once before it starts, with ``seconds=None``).  Returns one :class:`Timing`
    per callable (the median and quartiles over all its calls), or an error
    string for a callable that raised.
    """
    warmups = warmups or [None] * len(fns)
    values, first, errors = [], [], []
    times = [[] for _ in fns]
    done = [False] * len(fns)
    for i, fn in enumerate(fns):
        err = None
        t0 = time.perf_counter()
        try:
            if warmups[i] is None:
                values.append(fn())
            else:
                warmups[i]()
                if progress:
                    progress(i, None, None, "single")
                gc.collect()
                t0 = time.perf_counter()
                values.append(fn())
                times[i].append(time.perf_counter() - t0)
                done[i] = True
        except Exception as e:  # a broken row must not take the whole table down
            values.append(None)
            err = f"error: {type(e).__name__}: {e}"
        errors.append(err)
        first.append(time.perf_counter() - t0)
        if progress:
            progress(i, first[-1], err, "single" if warmups[i] is not None else "warm-up")
    for k in range(rounds):
        for i, fn in enumerate(fns):
            if errors[i] is not None or done[i]:
                continue
            if k >= SLOW_ROUNDS and first[i] >= SLOW_CALL:
                continue  # a slow row's median is stable after a few calls; keep the run short
            gc.collect()
            start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                fn()
                t1 = time.perf_counter()
                times[i].append(t1 - t0)
                if t1 - start >= round_time or len(times[i]) >= MAX_CALLS * (k + 1):
                    break
            if first[i] >= SINGLE_CALL:
                done[i] = True  # seconds per call: one timed call is enough and keeps the run short
    return [err if err is not None else _timing(t, v) for t, v, err in zip(times, values, errors)]


class CpuMeter:
    """How busy other processes kept the CPUs while we timed: the machine's
    busy time (/proc/stat) minus this process's own CPU time, as a fraction
    of all CPUs over the wall time.  On a shared 2-core machine this is the
    number to read before trusting a table.  None where /proc is missing."""

    @staticmethod
    def _machine_busy():
        try:
            with open("/proc/stat") as f:
                v = [int(t) for t in f.readline().split()[1:]]
        except OSError:
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        self.m0, self.t0, self.w0 = self._machine_busy(), os.times(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        m1, t1 = self._machine_busy(), os.times()
        wall = time.perf_counter() - self.w0
        if self.m0 is None or m1 is None or wall <= 0:
            self.other = None
            return
        own = (t1.user - self.t0.user) + (t1.system - self.t0.system)
        ncpu = os.cpu_count() or 1
        self.other = min(1.0, max(0.0, (m1 - self.m0 - own) / (wall * ncpu)))


# --------------------------------------------------------------------------------------
# Peak extra memory, in a fresh subprocess
# --------------------------------------------------------------------------------------

def _maxrss_bytes():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _proc_status_bytes(field):
    """VmRSS / VmHWM of this process from /proc/self/status, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss():
    """Lower this process's peak-RSS mark (VmHWM) to its current RSS
    (Linux >= 4.0).  False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(spec):
    """Runs in the subprocess: build the inputs, then for each row warm up on a
    small copy of the case (library and thread-pool start-up is not counted),
    reset the peak-RSS mark, make one full-size call, and read the peak.

    Why VmHWM and not ru_maxrss: the kernel carries the pre-exec address
    space's high-water mark into ru_maxrss, so in a child of this (large)
    process ru_maxrss starts at the parent's RSS and hides everything below
    it; VmHWM belongs to the child's own address space and can be reset.
    Where /proc is missing, fall back to the ru_maxrss delta (a lower bound)."""
    case = Case(**spec["case"])
    dtype = np.dtype(spec["dtype"])
    inp = make_inputs(case, dtype)
    impls = {i.key: i for i in IMPLEMENTATIONS}
    out = {}
    for key in spec["keys"]:
        impl = impls[key]
        try:
            impl.make(small_inputs(case, dtype, impl.warm_side))()
            fn = impl.make(inp)
            gc.collect()
            if _reset_peak_rss() and _proc_status_bytes("VmHWM") is not None:
                base = _proc_status_bytes("VmRSS")
                fn()
                peak = _proc_status_bytes("VmHWM")
                method = "hwm"
            else:
                base = _maxrss_bytes()
                fn()
                peak = _maxrss_bytes()
                method = "maxrss"
        except Exception as e:  # Skip, or a broken row: report it, measure the others
            print(f"{key}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        out[key] = {"extra": max(0, peak - base), "method": method}
        del fn
        gc.collect()
    return out


def measure_memory(case, dtype, keys, timeout=600):
    """Peak extra memory (bytes) of one call of each row, in a fresh process.
    glibc's dynamic mmap threshold is pinned so that freed big buffers go back
    to the OS instead of being silently reused by the next call."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    spec = json.dumps({"case": case.spec(), "dtype": np.dtype(dtype).name, "keys": keys})
    try:
        r = subprocess.run([sys.executable, BENCH_SCRIPT, "--_memory-child", spec],
                           capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  memory subprocess timed out for {case.name} {dtype}", file=sys.stderr)
        return {}
    if r.returncode != 0:
        print(f"  memory subprocess failed for {case.name} {dtype}:\n{r.stderr[-2000:]}", file=sys.stderr)
        return {}
    if r.stderr.strip():
        print(f"  memory subprocess, {case.name} {dtype}: {r.stderr.strip()[-1000:]}", file=sys.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


