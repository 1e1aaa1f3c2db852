"""Box windows for benchmarks/ab/run.py (issue 16's box targets): 1024² float32
grayscale, box 7 / 21 / 51, value and value + gradient, and 1024²×3 channels-last
RGB box 7 (sample covariance): median seconds per call, as JSON."""
import time, json, numpy as np, fastssim as fs
rng = np.random.default_rng(0)
x = rng.random((1024, 1024)).astype(np.float32)
y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
xc = rng.random((1024, 1024, 3)).astype(np.float32)
yc = np.clip(xc + 0.1 * rng.standard_normal(xc.shape), 0, 1).astype(np.float32)
out = {}


def med(f):
    f(); ts = []; t_end = time.perf_counter() + 0.2
    while time.perf_counter() < t_end or len(ts) < 3:
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return float(np.median(ts))


for w in (7, 21, 51):
    for grad in (None, "x"):
        out[f"box{w}{'_g' if grad else ''}"] = med(lambda: fs.ssim(
            x, y, data_range=1.0, window="uniform", win_size=w, covariance="sample", gradient=grad))
out["rgb_box7"] = med(lambda: fs.ssim(xc, yc, data_range=1.0, window="uniform", win_size=7,
                                      covariance="sample", channel_axis=-1))
out["rgb_box51"] = med(lambda: fs.ssim(xc, yc, data_range=1.0, window="uniform", win_size=51,
                                       covariance="sample", channel_axis=-1))
print(json.dumps(out))
