"""Frozen MS-SSIM reference values: a plain float64 NumPy reimplementation.

Run from the repository root to regenerate ``tests/data/msssim_reference.npz``::

    python tests/data/make_msssim_reference.py

This file is written from the published algorithms, *not* from fastssim (it
must never import it): Wang's ``msssim.m`` / ``ssim_index_new.m`` and the
downsampling rules of pytorch_msssim, torchmetrics and piq as their sources
read.  ``tests/test_msssim.py`` imports it to rebuild the images from their
seeds and to evaluate cases that are not frozen (e.g. volumes).

The reference convention (Wang, Simoncelli, Bovik 2003; ``msssim.m``):

* window: ``fspecial('gaussian', 11, 1.5)`` = the normalised Gaussian of radius
  ``int(truncate * sigma + 0.5)`` (truncate 3.5), separable;
* at each scale, ``filter2(w, ., 'valid')``: the statistics only where the
  whole window fits, population (co)variances
  ``sigma_xy = E_w[xy] - E_w[x] E_w[y]``;
* ``cs = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2)``,
  ``l = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)``, ``C_i = (K_i L)^2``;
* m_j = mean(cs_j) for the scales j < M, m_M = mean(l_M cs_M);
* MS-SSIM = prod_j f(m_j)^w_j with the negative-value policy f;
* next scale: ``imfilter(img, ones(2)/4, 'symmetric')`` then ``(1:2:end,
  1:2:end)``: the 2x2 mean in which an odd extent repeats its last sample.

The other downsampling rules, each written as the library does it (pad, then a
2x2 average pool with stride 2, floor of the output size):

* ``'zero'``      pytorch_msssim: ``avg_pool2d(kernel_size=2, padding=[s % 2
  for s in shape])``: one zero on *both* sides of an odd axis, counted in the
  mean (``count_include_pad=True``);
* ``'drop'``      torchmetrics: ``avg_pool2d((2, 2))``: the last sample of an
  odd axis is dropped;
* ``'replicate'`` piq: ``P = max(H % 2, W % 2)``; ``F.pad(pad=[P, 0, P, 0],
  mode='replicate')``: P copies of the first row *and* the first column
  (even axes too), then ``avg_pool2d(2)``.

Channels: each channel is an independent image; the value of a multichannel
image is the mean over channels of the per-channel MS-SSIM (pytorch_msssim
and piq do the same).
"""

from __future__ import annotations

import json
import os

import numpy as np

WANG_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
CONVENTIONS = ("symmetric", "zero", "drop", "replicate")
NEGATIVE = ("clamp", "simple", "none")

# Each case: the pair is rebuilt from (seed, shape, dtype, corr); spatial axes
# are the last `spatial_dims` axes after moving `channel_axis` to the front.
CASES = [
    dict(name="gray_192x200", shape=[192, 200], seed=11, corr=0.6, dtype="float64",
         data_range=1.0, channel_axis=None, spatial_dims=2, sigma=1.5, weights=list(WANG_WEIGHTS)),
    dict(name="gray_177x183", shape=[177, 183], seed=12, corr=0.5, dtype="float64",
         data_range=1.0, channel_axis=None, spatial_dims=2, sigma=1.5, weights=list(WANG_WEIGHTS)),
    dict(name="rgb_181x190", shape=[181, 190, 3], seed=13, corr=0.55, dtype="float64",
         data_range=1.0, channel_axis=-1, spatial_dims=2, sigma=1.5, weights=list(WANG_WEIGHTS)),
    dict(name="uint8_176x185", shape=[176, 185], seed=14, corr=0.5, dtype="uint8",
         data_range=255.0, channel_axis=None, spatial_dims=2, sigma=1.5, weights=list(WANG_WEIGHTS)),
    dict(name="vol_22x20x21", shape=[22, 20, 21], seed=15, corr=0.5, dtype="float64",
         data_range=1.0, channel_axis=None, spatial_dims=3, sigma=0.7, weights=[0.3, 0.3, 0.4]),
]


def make_pair(case):
    """The image pair of a case, in its dtype (deterministic from the seed)."""
    rng = np.random.default_rng(case["seed"])
    shape = tuple(case["shape"])
    x = rng.random(shape)
    y = case["corr"] * x + (1.0 - case["corr"]) * rng.random(shape)
    if case["dtype"] == "uint8":
        return np.round(x * 255.0).astype(np.uint8), np.round(y * 255.0).astype(np.uint8)
    return x.astype(case["dtype"]), y.astype(case["dtype"])


def gaussian_window(sigma=1.5, truncate=3.5):
    """1-D taps of fspecial('gaussian', n, sigma), n = 2 * int(truncate*sigma + .5) + 1."""
    r = int(truncate * sigma + 0.5)
    t = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


def filter_valid(a, taps, nd):
    """'valid' correlation with the separable window over the last nd axes."""
    n = len(taps)
    for ax in range(a.ndim - nd, a.ndim):
        m = a.shape[ax] - n + 1
        out = np.zeros(a.shape[:ax] + (m,) + a.shape[ax + 1:])
        for k in range(n):
            out += taps[k] * np.take(a, np.arange(k, k + m), axis=ax)
        a = out
    return a


def scale_means(x, y, taps, C1, C2, nd):
    """(mean cs, mean l*cs) over the valid region, per leading index."""
    mx = filter_valid(x, taps, nd)
    my = filter_valid(y, taps, nd)
    sxx = filter_valid(x * x, taps, nd) - mx * mx
    syy = filter_valid(y * y, taps, nd) - my * my
    sxy = filter_valid(x * y, taps, nd) - mx * my
    cs = (2.0 * sxy + C2) / (sxx + syy + C2)
    lum = (2.0 * mx * my + C1) / (mx * mx + my * my + C1)
    axes = tuple(range(x.ndim - nd, x.ndim))
    return cs.mean(axis=axes), (lum * cs).mean(axis=axes)


def _pool2(a, nd):
    """2x..x2 average pool, stride 2, no padding: floor(n/2) outputs per axis."""
    lead = a.shape[: a.ndim - nd]
    sp = a.shape[a.ndim - nd:]
    a = a[(Ellipsis,) + tuple(slice(0, 2 * (n // 2)) for n in sp)]
    blocks = []
    for n in sp:
        blocks += [n // 2, 2]
    b = a.reshape(lead + tuple(blocks))
    return b.mean(axis=tuple(len(lead) + 2 * k + 1 for k in range(nd)))


def downsample(a, convention, nd):
    """One pyramid step over the last nd axes, as the library named does it."""
    sp = a.shape[a.ndim - nd:]
    lead = [(0, 0)] * (a.ndim - nd)
    if convention == "symmetric":
        # msssim.m: imfilter(a, ones(2)/4, 'symmetric', 'same') -- MATLAB puts
        # a 2-tap kernel's centre on its first tap, so out(i) = mean(a(i), a(i+1))
        # with a(n+1) = a(n) -- then every second sample from the first.
        f = np.pad(a, lead + [(0, 1)] * nd, mode="symmetric")
        for k in range(nd):
            ax = a.ndim - nd + k
            n = sp[k]
            f = 0.5 * (np.take(f, np.arange(0, n), axis=ax) + np.take(f, np.arange(1, n + 1), axis=ax))
        return f[(Ellipsis,) + tuple(slice(0, n, 2) for n in sp)]
    if convention == "zero":
        pad = lead + [(n % 2, n % 2) for n in sp]
        return _pool2(np.pad(a, pad, mode="constant", constant_values=0.0), nd)
    if convention == "drop":
        return _pool2(a, nd)
    if convention == "replicate":
        P = max(n % 2 for n in sp)
        return _pool2(np.pad(a, lead + [(P, 0)] * nd, mode="edge"), nd)
    raise ValueError(convention)


def reference_scales(x, y, *, data_range, weights, sigma=1.5, convention="symmetric",
                     nd=2, K1=0.01, K2=0.03, taps=None):
    """Per-scale means m (..., M): mean cs for j < M, mean l*cs for j = M.

    ``taps`` overrides the Gaussian window (e.g. a peer's own rounded taps).
    """
    taps = gaussian_window(sigma) if taps is None else np.asarray(taps, dtype=np.float64)
    C1 = (K1 * data_range) ** 2
    C2 = (K2 * data_range) ** 2
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    M = len(weights)
    out = []
    for j in range(M):
        if j > 0:
            x = downsample(x, convention, nd)
            y = downsample(y, convention, nd)
        if min(x.shape[x.ndim - nd:]) < len(taps):
            raise ValueError(f"scale {j + 1} has shape {x.shape}: the window does not fit")
        mcs, mssim = scale_means(x, y, taps, C1, C2, nd)
        out.append(mcs if j < M - 1 else mssim)
    return np.stack(out, axis=-1)


def combine(m, weights, negative):
    """prod_j f(m_j)^w_j over the last axis, with the negative-value policy f."""
    w = np.asarray(weights, dtype=np.float64)
    if negative == "clamp":
        f = np.maximum(m, 0.0)
    elif negative == "simple":
        f = (m + 1.0) / 2.0
    elif negative == "none":
        f = m
    else:
        raise ValueError(negative)
    with np.errstate(invalid="ignore"):
        return np.prod(f ** w, axis=-1)


def case_planes(case, x, y):
    """Channels moved to the front: (C, *spatial) or (*spatial) as float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if case["channel_axis"] is not None:
        x = np.moveaxis(x, case["channel_axis"], 0)
        y = np.moveaxis(y, case["channel_axis"], 0)
    return x, y


def compute_case(case):
    """{convention: (scales (..., M), {negative: value})} for a case."""
    x, y = case_planes(case, *make_pair(case))
    res = {}
    for conv in CONVENTIONS:
        m = reference_scales(x, y, data_range=case["data_range"], weights=case["weights"],
                             sigma=case["sigma"], convention=conv, nd=case["spatial_dims"])
        vals = {neg: float(np.mean(combine(m, case["weights"], neg))) for neg in NEGATIVE}
        res[conv] = (m, vals)
    return res


def main(path=None):
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "msssim_reference.npz")
    arrays = {"cases": np.array(json.dumps(CASES))}
    for case in CASES:
        for conv, (m, vals) in compute_case(case).items():
            arrays[f"{case['name']}/{conv}/scales"] = m
            for neg, v in vals.items():
                arrays[f"{case['name']}/{conv}/{neg}"] = np.float64(v)
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
