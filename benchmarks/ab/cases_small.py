"""Cases of benchmarks/ab/run.py for many small images (issue 16): 1024² float32 and
batches of 256 × 64² and 4096 × 32² (the same megapixels as 1024², four times for
32²), each as the Gaussian value, value + gradient and box-7 value; median seconds per
call over about 0.15 s after a warm-up, printed as JSON.  AB_WORKERS=n (default: all
threads); AB_CLOCK=cpu times the process's CPU time instead of the wall clock (with
AB_WORKERS=1, a measure of the work that the other processes of a loaded machine
disturb far less than the wall clock)."""
import json, os, time
import numpy as np
import fastssim as fs
rng = np.random.default_rng(0)
def pair(shape, dt=np.float32):
    x = rng.random(shape).astype(dt); y = np.clip(x + 0.1*rng.standard_normal(shape), 0, 1).astype(dt); return x, y
data = {"1024": pair((1024, 1024)), "b256x64": pair((256, 64, 64)), "b4096x32": pair((4096, 32, 32))}
kinds = {"": {}, "_grad": {"gradient": "x"},
         "_box7": {"window": "uniform", "win_size": 7, "covariance": "sample"}}
workers = int(os.environ.get("AB_WORKERS", "0")) or None
clock = time.process_time if os.environ.get("AB_CLOCK") == "cpu" else time.perf_counter
out = {}
for name, (x, y) in data.items():
    for suffix, kw in kinds.items():
        f = lambda: fs.ssim(x, y, data_range=1.0, workers=workers, **kw)
        f()
        ts = []
        t_end = clock() + 0.15
        while clock() < t_end or len(ts) < 3:
            t = clock(); f(); ts.append(clock() - t)
        out[name + suffix] = float(np.median(ts))
print(json.dumps(out))
