"""Cases of benchmarks/ab/run.py for MS-SSIM and per-pixel MS-SSIM (issue 16), with the
SSIM rows their targets are ratios of: 1024² float32 grayscale (SSIM value, value +
gradient; MS-SSIM value, value + gradient; per-pixel MS-SSIM value, value + gradient)
and 1024²x3 channels-last RGB (SSIM value, MS-SSIM value); median seconds per call over
about 0.15 s after a warm-up, printed as JSON.  AB_WORKERS=n (default: all threads);
AB_CLOCK=cpu times the process's CPU time instead of the wall clock."""
import json, os, time
import numpy as np
import fastssim as fs
rng = np.random.default_rng(0)
def pair(shape, dt=np.float32):
    x = rng.random(shape).astype(dt); y = np.clip(x + 0.1*rng.standard_normal(shape), 0, 1).astype(dt); return x, y
g, rgb = pair((1024, 1024)), pair((1024, 1024, 3))
workers = int(os.environ.get("AB_WORKERS", "0")) or None
clock = time.process_time if os.environ.get("AB_CLOCK") == "cpu" else time.perf_counter
kw = dict(data_range=1.0, workers=workers)
cases = {
    "ssim": lambda: fs.ssim(*g, **kw),
    "ssim_grad": lambda: fs.ssim(*g, gradient="x", **kw),
    "ms": lambda: fs.ms_ssim(*g, **kw),
    "ms_grad": lambda: fs.ms_ssim(*g, gradient="x", **kw),
    "pw": lambda: fs.pixelwise_ms_ssim(*g, **kw),
    "pw_grad": lambda: fs.pixelwise_ms_ssim(*g, gradient="x", **kw),
    "rgb_ssim": lambda: fs.ssim(*rgb, channel_axis=-1, **kw),
    "rgb_ms": lambda: fs.ms_ssim(*rgb, channel_axis=-1, **kw),
}
out = {}
for k, f in cases.items():
    f()
    ts = []
    t_end = clock() + 0.15
    while clock() < t_end or len(ts) < 3:
        t = clock(); f(); ts.append(clock() - t)
    out[k] = float(np.median(ts))
for a, b in (("ms_grad", "ssim"), ("pw_grad", "ssim_grad"), ("rgb_ms", "rgb_ssim")):
    out[f"{a}/{b}"] = out[a] / out[b]
print(json.dumps(out))
