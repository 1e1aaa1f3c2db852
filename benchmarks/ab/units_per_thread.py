"""Units of work per thread of a launch (issue 16), interleaved in one process:
1024² float32 Gaussian value, value + gradient and box-7 value + gradient with
_engine.set_units_per_thread(p) for p = 0 (automatic: 2 for values, 1 for
gradients), 2, 3, 4; per round the fastest of 5 calls, then the median over rounds.

    python benchmarks/ab/units_per_thread.py [WORKERS=2] [ROUNDS=15]

Prints the medians and value + gradient / value (value at the automatic setting).
Needs a quiet machine: on a loaded one the calls are quantised by the scheduler's
time slices.  No asserts.
"""
import sys
import time

import numpy as np

import fastssim as fs
from fastssim import _engine

rng = np.random.default_rng(0)
x = rng.random((1024, 1024)).astype(np.float32)
y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
w = int(sys.argv[1]) if len(sys.argv) > 1 else 2
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
box = dict(window="uniform", win_size=7, covariance="sample")
cases = {"value": lambda: fs.ssim(x, y, data_range=1.0, workers=w),
         "grad": lambda: fs.ssim(x, y, data_range=1.0, gradient="x", workers=w),
         "box7_grad": lambda: fs.ssim(x, y, data_range=1.0, gradient="x", workers=w, **box)}
pers = [0, 2, 3, 4]
res = {(k, p): [] for k in cases for p in pers}
try:
    for _ in range(rounds):
        for p in pers:
            _engine.set_units_per_thread(p)
            for k, f in cases.items():
                f()
                ts = []
                for _ in range(5):
                    t = time.perf_counter()
                    f()
                    ts.append(time.perf_counter() - t)
                res[(k, p)].append(min(ts))
finally:
    _engine.set_units_per_thread(0)
for k in cases:
    print(f"{k:10s}", "  ".join(f"p={p}: {np.median(res[(k, p)]) * 1e3:7.3f} ms" for p in pers))
v = np.median(res[("value", 0)])
print("grad / value:", "  ".join(f"p={p}: {np.median(res[('grad', p)]) / v:.3f}" for p in pers))
