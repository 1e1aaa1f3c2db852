"""Cases of benchmarks/ab/run.py: 1024² float32 unless named (f64: float64, rgb: 1024²x3
channels-last, b256x64 / b4096x32: batches of small images), median seconds per call
over about 0.15 s after a warm-up, printed as JSON."""
import sys, time, json, numpy as np
import fastssim as fs
rng = np.random.default_rng(0)
def pair(shape, dt=np.float32):
    x = rng.random(shape).astype(dt); y = np.clip(x + 0.1*rng.standard_normal(shape), 0, 1).astype(dt); return x, y
g = pair((1024,1024)); g64 = pair((1024,1024), np.float64); rgb = pair((1024,1024,3))
s64 = pair((256,64,64)); s32 = pair((4096,32,32))
cases = {
 "gauss": lambda: fs.ssim(*g, data_range=1.0),
 "gauss_grad": lambda: fs.ssim(*g, data_range=1.0, gradient="x"),
 "gauss_f64": lambda: fs.ssim(*g64, data_range=1.0),
 "box7": lambda: fs.ssim(*g, data_range=1.0, window="uniform", win_size=7, covariance="sample"),
 "box7_grad": lambda: fs.ssim(*g, data_range=1.0, window="uniform", win_size=7, covariance="sample", gradient="x"),
 "box51": lambda: fs.ssim(*g, data_range=1.0, window="uniform", win_size=51, covariance="sample"),
 "rgb_box7": lambda: fs.ssim(*rgb, data_range=1.0, window="uniform", win_size=7, covariance="sample", channel_axis=-1),
 "rgb_ssim": lambda: fs.ssim(*rgb, data_range=1.0, channel_axis=-1),
 "rgb_ms": lambda: fs.ms_ssim(*rgb, data_range=1.0, channel_axis=-1),
 "ms": lambda: fs.ms_ssim(*g, data_range=1.0),
 "ms_grad": lambda: fs.ms_ssim(*g, data_range=1.0, gradient="x"),
 "b256x64": lambda: fs.ssim(*s64, data_range=1.0),
 "b4096x32": lambda: fs.ssim(*s32, data_range=1.0),
 "pw_grad": lambda: fs.pixelwise_ms_ssim(*g, data_range=1.0, gradient="x"),
}
out = {}
for k, f in cases.items():
    f()
    ts = []
    t_end = time.perf_counter() + 0.15
    while time.perf_counter() < t_end or len(ts) < 3:
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    out[k] = float(np.median(ts))
print(json.dumps(out))
