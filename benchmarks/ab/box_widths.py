"""Box windows of several widths for benchmarks/ab/run.py (1024² float32, sample
covariance, value and value + gradient): median seconds per call, as JSON."""
import time, json, numpy as np, fastssim as fs
rng = np.random.default_rng(0)
x = rng.random((1024,1024)).astype(np.float32); y = np.clip(x + 0.1*rng.standard_normal(x.shape), 0, 1).astype(np.float32)
out = {}
for w in (3, 7, 11, 15, 21, 31):
    for grad in (None, "x"):
        f = lambda: fs.ssim(x, y, data_range=1.0, window="uniform", win_size=w, covariance="sample", gradient=grad)
        f(); ts = []; t_end = time.perf_counter() + 0.15
        while time.perf_counter() < t_end or len(ts) < 3:
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        out[f"box{w}{'_g' if grad else ''}"] = float(np.median(ts))
print(json.dumps(out))
