"""Generate tests/data/conventions_frozen.json: every peer's own SSIM / MS-SSIM
on the fixed pairs of tests/conventions_pairs.py (issue 17).

    cd tests && python data/make_conventions.py [--tf-python PATH]

What is frozen, and how each peer is called (the tests call fastssim with the
matching ``convention=`` and units):

* ``matlab`` / ``matlab-ssim_index``: a line-by-line NumPy transcription of
  Zhou Wang's MATLAB code, which cannot run here: ``ssim.m`` ("SSIM Index with
  automatic downsampling, Version 1.0", 2009; ``ssim_index.m`` is the same
  without the downsampling block) and ``msssim.m`` + ``ssim_index_new.m``
  (2003), as distributed on Wang's page and mirrored e.g. in the repositories
  obartra/ssim (assets/ms-ssim/) and alecjacobson/gptoolbox
  (external/ssim.m).  Inputs double in [0, 255]; gray pairs only (the MATLAB
  code is for 2-D images).
* ``tensorflow``: tf.image.ssim / tf.image.ssim_multiscale (max_val=255,
  float32 images in [0, 255]: TensorFlow converts its input to float32), run
  in a separate Python that has TensorFlow (``--tf-python``), fed the pairs
  through a temporary .npz.
* ``skimage``, ``skimage-gaussian`` (float64, data_range=255),
  ``pytorch_msssim`` (float64 tensors in [0, 255], its default data_range 255),
  ``torchmetrics`` (float64 tensors in [0, 255], data_range=255), ``piq``
  (float64 / 255, its default data_range 1), ``kornia`` (float64 / 255,
  window_size 11, max_val 1, the map's mean): whichever import here.  piq's
  package __init__ imports torchvision; its ssim modules do not, and are
  loaded without it.

The values of a peer that is missing are kept from the existing file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
OUT = os.path.join(HERE, "conventions_frozen.json")
PAIRS = ("gray", "color", "wide")
WANG = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# --------------------------------------------------------------------------- MATLAB, transcribed


def fspecial_gaussian(size, sigma):
    """fspecial('gaussian', size, sigma)."""
    h = (size - 1) / 2.0
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    g = np.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))
    g[g < np.finfo(float).eps * g.max()] = 0
    return g / g.sum()


def filter2_valid(win, img):
    """filter2(win, img, 'valid'): correlation over the positions where win fits."""
    H, W = win.shape
    M, N = img.shape
    out = np.zeros((M - H + 1, N - W + 1))
    for i in range(H):
        for j in range(W):
            out += win[i, j] * img[i:i + M - H + 1, j:j + N - W + 1]
    return out


def imfilter_symmetric_same(img, h):
    """imfilter(img, h, 'symmetric', 'same') (correlation, centre floor((size+1)/2))."""
    H, W = h.shape
    ci, cj = (H + 1) // 2 - 1, (W + 1) // 2 - 1
    p = np.pad(img, ((ci, H - 1 - ci), (cj, W - 1 - cj)), mode="symmetric")
    M, N = img.shape
    out = np.zeros((M, N))
    for i in range(H):
        for j in range(W):
            out += h[i, j] * p[i:i + M, j:j + N]
    return out


def ssim_index_new(img1, img2, K=(0.01, 0.03), win=None, L=255.0):
    """ssim_index_new.m / the core of ssim.m: (mssim, mcs)."""
    win = fspecial_gaussian(11, 1.5) if win is None else win
    C1 = (K[0] * L) ** 2
    C2 = (K[1] * L) ** 2
    win = win / win.sum()
    mu1 = filter2_valid(win, img1)
    mu2 = filter2_valid(win, img2)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = filter2_valid(win, img1 * img1) - mu1_sq
    sigma2_sq = filter2_valid(win, img2 * img2) - mu2_sq
    sigma12 = filter2_valid(win, img1 * img2) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + C1) * (2 * sigma12 + C2)) / ((mu1_sq + mu2_sq + C1) * (sigma1_sq + sigma2_sq + C2))
    cs_map = (2 * sigma12 + C2) / (sigma1_sq + sigma2_sq + C2)
    return ssim_map.mean(), cs_map.mean()


def matlab_ssim(img1, img2, downsample=True):
    """ssim.m (downsample=True) / ssim_index.m (False), default K, window, L."""
    img1 = np.asarray(img1, dtype=np.float64)
    img2 = np.asarray(img2, dtype=np.float64)
    M, N = img1.shape
    f = max(1, int(np.floor(min(M, N) / 256 + 0.5)))  # MATLAB round
    if downsample and f > 1:
        lpf = np.ones((f, f)) / (f * f)
        img1 = imfilter_symmetric_same(img1, lpf)[0::f, 0::f]
        img2 = imfilter_symmetric_same(img2, lpf)[0::f, 0::f]
    return ssim_index_new(img1, img2)[0]


def matlab_msssim(img1, img2, level=5, weight=WANG):
    """msssim.m, method 'product'."""
    im1 = np.asarray(img1, dtype=np.float64)
    im2 = np.asarray(img2, dtype=np.float64)
    down = np.ones((2, 2)) / 4
    mssim, mcs = [], []
    for _ in range(level):
        s, c = ssim_index_new(im1, im2)
        mssim.append(s)
        mcs.append(c)
        im1 = imfilter_symmetric_same(im1, down)[0::2, 0::2]
        im2 = imfilter_symmetric_same(im2, down)[0::2, 0::2]
    w = np.asarray(weight)
    return float(np.prod(np.asarray(mcs[:-1]) ** w[:-1]) * mssim[-1] ** w[-1])


# --------------------------------------------------------------------------- installed peers


def _piq():
    """piq's ssim functions, imported under a bare stand-in package (piq/__init__
    imports torchvision, which they do not need), which is removed again."""
    spec = importlib.util.find_spec("piq")
    if spec is None:
        return None
    saved = {k: v for k, v in sys.modules.items() if k == "piq" or k.startswith("piq.")}
    stub = types.ModuleType("piq")
    stub.__path__ = list(spec.submodule_search_locations)
    sys.modules["piq"] = stub
    try:
        return (importlib.import_module("piq.ssim").ssim,
                importlib.import_module("piq.ms_ssim").multi_scale_ssim)
    finally:
        for k in [k for k in sys.modules if k == "piq" or k.startswith("piq.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def _t(a):
    """HxW or HxWxC numpy -> 1xCxHxW float64 tensor."""
    import torch

    a = np.asarray(a, dtype=np.float64)
    a = a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)
    return torch.from_numpy(np.ascontiguousarray(a))[None]


def peer_values(x, y):
    """{(kind, peer): value} for the peers importable here."""
    out = {}
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    cax = -1 if x.ndim == 3 else None
    if x.ndim == 2:
        out["ssim", "matlab"] = matlab_ssim(xf, yf)
        out["ssim", "matlab-ssim_index"] = matlab_ssim(xf, yf, downsample=False)
        out["ms_ssim", "matlab"] = out["ms_ssim", "matlab-ssim_index"] = matlab_msssim(xf, yf)
    try:
        from skimage.metrics import structural_similarity as sk
        out["ssim", "skimage"] = float(sk(xf, yf, data_range=255.0, channel_axis=cax))
        out["ssim", "skimage-gaussian"] = float(sk(xf, yf, data_range=255.0, channel_axis=cax,
                                                   gaussian_weights=True))
    except ImportError:
        pass
    try:
        import torch  # noqa: F401
    except ImportError:
        return out
    try:
        import pytorch_msssim
        out["ssim", "pytorch_msssim"] = pytorch_msssim.ssim(_t(x), _t(y)).item()
        out["ms_ssim", "pytorch_msssim"] = pytorch_msssim.ms_ssim(_t(x), _t(y)).item()
    except ImportError:
        pass
    try:
        from torchmetrics.functional.image import (
            multiscale_structural_similarity_index_measure as tm_ms,
            structural_similarity_index_measure as tm_ssim)
        out["ssim", "torchmetrics"] = tm_ssim(_t(x), _t(y), data_range=255.0).item()
        out["ms_ssim", "torchmetrics"] = tm_ms(_t(x), _t(y), data_range=255.0).item()
    except ImportError:
        pass
    fns = _piq()
    if fns is not None:
        out["ssim", "piq"] = fns[0](_t(x) / 255.0, _t(y) / 255.0).item()
        out["ms_ssim", "piq"] = fns[1](_t(x) / 255.0, _t(y) / 255.0).item()
    try:
        import kornia
        out["ssim", "kornia"] = kornia.metrics.ssim(_t(x) / 255.0, _t(y) / 255.0, 11).mean().item()
    except ImportError:
        pass
    return out


def versions():
    """The installed versions of the libraries that made the values."""
    from importlib.metadata import PackageNotFoundError, version

    v = {}
    for dist in ("numpy", "scikit-image", "torch", "pytorch-msssim", "torchmetrics", "kornia",
                 "piq"):
        try:
            v[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return v


# --------------------------------------------------------------------------- TensorFlow (child)


def tf_child(npz, out):
    import tensorflow as tf

    data = np.load(npz)
    res = {"version": tf.__version__}
    for name in PAIRS:
        x, y = data[name + "_x"], data[name + "_y"]
        if x.ndim == 2:
            x, y = x[..., None], y[..., None]
        a = tf.constant(x.astype(np.float32)[None])
        b = tf.constant(y.astype(np.float32)[None])
        res[name] = {
            "ssim": float(tf.image.ssim(a, b, max_val=255.0).numpy()[0]),
            "ms_ssim": float(tf.image.ssim_multiscale(a, b, max_val=255.0).numpy()[0]),
        }
    with open(out, "w") as f:
        json.dump(res, f)


def tf_values(python, pairs):
    with tempfile.TemporaryDirectory() as d:
        npz = os.path.join(d, "pairs.npz")
        np.savez(npz, **{f"{n}_{s}": a for n, (x, y) in pairs.items() for s, a in (("x", x), ("y", y))})
        out = os.path.join(d, "tf.json")
        subprocess.run([python, os.path.abspath(__file__), "--tf-child", npz, out], check=True)
        with open(out) as f:
            return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tf-python", default=None, help="a Python that can import tensorflow")
    ap.add_argument("--tf-child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tf_child:
        return tf_child(*args.tf_child)
    from conventions_pairs import pair

    old = {}
    if os.path.exists(OUT):
        with open(OUT) as f:
            old = json.load(f)
    pairs = {n: pair(n) for n in PAIRS}
    values = old.get("values", {})
    for name, (x, y) in pairs.items():
        got = peer_values(x, y)
        entry = values.setdefault(name, {"ssim": {}, "ms_ssim": {}})
        for (kind, peer), v in got.items():
            entry[kind][peer] = float(v)
    # the installed versions now; TensorFlow's from the file unless it runs again
    meta = {k: v for k, v in old.get("versions", {}).items() if k == "tensorflow"}
    meta.update(versions())
    if args.tf_python:
        tf = tf_values(args.tf_python, pairs)
        meta["tensorflow"] = tf["version"]
        for name in PAIRS:
            for kind in ("ssim", "ms_ssim"):
                values[name][kind]["tensorflow"] = tf[name][kind]
    with open(OUT, "w") as f:
        json.dump({"generator": "tests/data/make_conventions.py", "versions": meta,
                   "values": values}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(values, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
