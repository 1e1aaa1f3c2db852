"""Narrow box windows (3, 7, 11) for benchmarks/ab/run.py: float32, value and value +
gradient, 1024² grayscale and 1024²x3 channels-last RGB, sample covariance; median
seconds per call over about 0.15 s after a warm-up, printed as JSON.  AB_WORKERS=n (default:
all threads); AB_CLOCK=cpu times the process's CPU time instead of the wall clock (with
AB_WORKERS=1: the work itself, less sensitive to the other processes of a loaded machine)."""
import os, time, json, numpy as np, fastssim as fs
workers = int(os.environ.get("AB_WORKERS", "0")) or None
clock = time.process_time if os.environ.get("AB_CLOCK") == "cpu" else time.perf_counter
rng = np.random.default_rng(0)
def pair(shape):
    x = rng.random(shape).astype(np.float32)
    return x, np.clip(x + 0.1 * rng.standard_normal(shape), 0, 1).astype(np.float32)
g, rgb = pair((1024, 1024)), pair((1024, 1024, 3))
out = {}
for name, (x, y), ca in (("", g, None), ("rgb_", rgb, -1)):
    for w in (3, 7, 11):
        for grad in (None, "x"):
            f = lambda: fs.ssim(x, y, data_range=1.0, window="uniform", win_size=w,
                                covariance="sample", gradient=grad, channel_axis=ca,
                                workers=workers)
            f(); ts = []; t_end = time.perf_counter() + 0.15
            while time.perf_counter() < t_end or len(ts) < 3:
                t = clock(); f(); ts.append(clock() - t)
            out[f"{name}box{w}{'_g' if grad else ''}"] = float(np.median(ts))
print(json.dumps(out))
