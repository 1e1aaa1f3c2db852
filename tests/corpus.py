"""A frozen corpus of results: every public function's values, maps and gradients
over a few dozen option combinations, hashed bit for bit.

Refactors (the architecture work) must not change a single result bit; work
that changes the arithmetic on purpose (a new kernel, a new formula) regenerates
the hashes and says so in its commit:

    cd tests && python corpus.py --write      # all SIMD paths of this machine

The results depend on the SIMD path (FMA contraction and vector widths differ),
so there is one table per path (``fastssim.show_config()``'s "SIMD path", the
part before the comma); they do not depend on the thread count or on OpenMP
(the suite checks that separately), so the serial build shares the tables.

Inputs are made by integer arithmetic (no random generator whose stream could
change between NumPy versions).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HASHES = Path(__file__).parent / "data" / "corpus_hashes.json"


def _ints(n, seed):
    """n pseudo-random integers in [0, 2**31) (a 64-bit LCG, top bits)."""
    state = np.uint64(seed * 2654435761 + 12345)
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        v = (i * np.uint64(6364136223846793005) + state) * np.uint64(1442695040888963407)
    return (v >> np.uint64(33)).astype(np.int64)


def pair(shape, dtype=np.float64, seed=0):
    """A correlated pair: y = 0.6 x + 0.4 noise, values in [0, 1) (floats) or
    the dtype's span (integers)."""
    n = int(np.prod(shape))
    x = (_ints(n, seed) % 100003) / 100003.0
    z = (_ints(n, seed + 7) % 100019) / 100019.0
    y = 0.6 * x + 0.4 * z
    x, y = x.reshape(shape), y.reshape(shape)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return x.astype(dt), y.astype(dt)
    return (np.floor(x * 255).astype(dt), np.floor(y * 255).astype(dt))


def _cot(shape, dtype, seed=3):
    n = int(np.prod(shape))
    return ((_ints(n, seed) % 1009) / 1009.0 - 0.5).reshape(shape).astype(dtype)


def cases():
    """name -> zero-argument callable returning a tuple of arrays/values."""
    import fastssim as fs
    from fastssim import losses

    out = {}
    for dt in (np.float32, np.float64):
        t = np.dtype(dt).name
        x, y = pair((37, 45), dt)
        xb, yb = pair((2, 33, 29), dt, seed=1)
        xc, yc = pair((40, 36, 3), dt, seed=2)
        xv, yv = pair((12, 14, 16), dt, seed=4)
        xm, ym = pair((2, 177, 179), dt, seed=5)
        xmc, ymc = pair((70, 64, 3), dt, seed=6)
        xu, yu = pair((37, 45), np.uint8, seed=8)

        def r(res):
            return tuple(res)

        out[f"ssim_gauss_full_grad_{t}"] = lambda x=x, y=y: r(fs.ssim(
            x, y, data_range=1, full=True, gradient="both"))
        out[f"ssim_gauss_valid_grad_{t}"] = lambda x=x, y=y: r(fs.ssim(
            x, y, data_range=1, full=True, border="valid", gradient="x"))
        out[f"ssim_box7_sample_{t}"] = lambda x=x, y=y: r(fs.ssim(
            x, y, data_range=1, window="uniform", win_size=7, covariance="sample",
            full=True, gradient="y"))
        out[f"ssim_box3_{t}"] = lambda x=x, y=y: r(fs.ssim(
            x, y, data_range=1, window="uniform", win_size=3, full=True, gradient="x"))
        out[f"ssim_box21_{t}"] = lambda x=x, y=y: r(fs.ssim(
            x, y, data_range=1, window="uniform", win_size=21, full=True))
        out[f"ssim_sigma4_K_{t}"] = lambda x=x, y=y: r(fs.ssim(
            x, y, data_range=2.0, sigma=4.0, K1=0.02, K2=0.05, full=True, gradient="x"))
        out[f"ssim_batch_{t}"] = lambda x=xb, y=yb: r(fs.ssim(
            x, y, data_range=1, full=True, gradient="both"))
        out[f"ssim_broadcast_{t}"] = lambda x=xb, y=yb: r(fs.ssim(
            x[:1], y, data_range=1, full=True, gradient="both"))
        out[f"ssim_rgb_last_{t}"] = lambda x=xc, y=yc: r(fs.ssim(
            x, y, data_range=1, channel_axis=-1, full=True, gradient="both"))
        out[f"ssim_rgb_first_{t}"] = lambda x=xc, y=yc: r(fs.ssim(
            np.moveaxis(x, -1, 0), np.moveaxis(y, -1, 0), data_range=1, channel_axis=0,
            full=True, gradient="x"))
        out[f"ssim_volume_{t}"] = lambda x=xv, y=yv: r(fs.ssim(
            x, y, data_range=1, spatial_dims=3, window="uniform", win_size=5, full=True,
            gradient="x"))
        out[f"ssim_vjp_{t}"] = lambda x=x, y=y: (fs.ssim_vjp(
            x, y, _cot((37, 45), dt), wrt="both", data_range=1),)
        out[f"ssim_vjp_valid_{t}"] = lambda x=x, y=y: (fs.ssim_vjp(
            x, y, _cot((27, 35), dt), wrt="y", data_range=1, border="valid"),)
        out[f"ssim_u8_in_{t}"] = lambda x=xu, y=yu: r(fs.ssim(
            x, y, full=True, gradient="x"))
        for ds in ("symmetric", "zero", "drop", "replicate"):
            out[f"ms_ssim_{ds}_{t}"] = lambda x=xm, y=ym, ds=ds: r(fs.ms_ssim(
                x, y, data_range=1, downsample=ds, gradient="both"))
        for neg in ("simple", "none"):
            out[f"ms_ssim_neg_{neg}_{t}"] = lambda x=xm, y=ym, neg=neg: r(fs.ms_ssim(
                x, 1 - y, data_range=1, negative=neg, gradient="x"))
        out[f"ms_ssim_box_sample_{t}"] = lambda x=xm, y=ym: r(fs.ms_ssim(
            x, y, data_range=1, window="uniform", win_size=7, covariance="sample",
            gradient="y"))
        out[f"ms_ssim_rgb_3scales_{t}"] = lambda x=xmc, y=ymc: r(fs.ms_ssim(
            x, y, data_range=1, channel_axis=-1, weights=(0.2, 0.3, 0.5), sigma=1.0,
            gradient="both"))
        out[f"ms_ssim_scales_{t}"] = lambda x=xm, y=ym: (fs.ms_ssim(
            x, y, data_range=1, return_scales=True).scales,)
        out[f"msssim_skimage_{t}"] = lambda x=xm, y=ym: fs.multiscale_structural_similarity(
            x[0], y[0], data_range=1, gradient=True)
        out[f"pixelwise_{t}"] = lambda x=x, y=y: r(fs.pixelwise_ms_ssim(
            x, y, data_range=1, sigmas=(0.5, 1.0, 2.0), full=True, gradient="both"))
        out[f"pixelwise_valid_sample_{t}"] = lambda x=x, y=y: r(fs.pixelwise_ms_ssim(
            x, y, data_range=1, sigmas=(0.5, 1.0), covariance="sample", border="valid",
            full=True, gradient="x"))
        out[f"pixelwise_vjp_{t}"] = lambda x=x, y=y: (fs.pixelwise_ms_ssim_vjp(
            x, y, _cot((37, 45), dt), wrt="both", data_range=1, sigmas=(0.5, 1.0, 2.0)),)
        out[f"skimage_default_{t}"] = lambda x=x, y=y: fs.structural_similarity(
            x, y, data_range=1, full=True, gradient=True)
        out[f"skimage_gauss_rgb_{t}"] = lambda x=xc, y=yc: fs.structural_similarity(
            x, y, data_range=1, channel_axis=-1, gaussian_weights=True, full=True,
            gradient=True)
        out[f"loss_ssim_{t}"] = lambda x=x, y=y: losses.ssim(
            x, y, data_range=1, gradient=True, full=True)
        out[f"loss_ms_ssim_{t}"] = lambda x=xm, y=ym: losses.ms_ssim(
            x, y, data_range=1, gradient=True)
        out[f"loss_pixelwise_{t}"] = lambda x=x, y=y: losses.pixelwise_ms_ssim(
            x, y, data_range=1, sigmas=(0.5, 1.0, 2.0), gradient=True, full=True)
        out[f"loss_mix_{t}"] = lambda x=x, y=y: losses.mix(
            x, y, data_range=1, sigmas=(0.5, 1.0, 2.0), gradient=True, full=True)
        out[f"loss_l1_l2_{t}"] = lambda x=x, y=y: (
            *losses.l1(x, y, gradient=True, full=True), *losses.l2(x, y, gradient=True))
    return out


def _flatten(obj):
    if obj is None:
        return [b"None"]
    if isinstance(obj, (tuple, list)):
        return [b for o in obj for b in _flatten(o)]
    if hasattr(obj, "_asdict"):
        return _flatten(tuple(obj))
    a = np.asarray(obj)
    head = f"{a.dtype.str}{a.shape}".encode()
    return [head, np.ascontiguousarray(a).tobytes()]


def digest(obj):
    h = hashlib.sha256()
    for b in _flatten(obj):
        h.update(b)
    return h.hexdigest()[:24]


def simd_key():
    from fastssim import _engine
    return _engine.simd_path().split(",")[0]


def compute():
    return {name: digest(fn()) for name, fn in cases().items()}


def main(argv):
    if "--one" in argv:  # child: this process's SIMD path
        print(json.dumps({simd_key(): compute()}))
        return
    if "--write" not in argv:
        print(__doc__)
        return
    tables = {}
    for cap in ("", "avx2", "baseline"):
        env = dict(os.environ, FASTSSIM_SIMD=cap)
        out = subprocess.run([sys.executable, __file__, "--one"], env=env, check=True,
                             capture_output=True, text=True).stdout
        tables.update(json.loads(out))
    HASHES.write_text(json.dumps(tables, indent=1, sort_keys=True) + "\n")
    print(f"wrote {HASHES}: {', '.join(tables)} ({len(next(iter(tables.values())))} cases)")


if __name__ == "__main__":
    main(sys.argv[1:])
