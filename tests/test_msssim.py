"""MS-SSIM: ``fastssim.ms_ssim`` and ``fastssim.multiscale_structural_similarity``.

References and tolerances
-------------------------
* Frozen values: ``tests/data/msssim_reference.npz``, written by the committed
  generator ``tests/data/make_msssim_reference.py`` -- a plain float64 NumPy
  reimplementation of Wang's ``msssim.m`` and of the other libraries'
  downsampling rules, written from their published code and never importing
  fastssim.  The images are rebuilt from seeds.  float64: rtol 1e-12 (measured
  <= 1.1e-14 on the values, <= 1e-13 on the per-scale means); float32 inputs:
  rtol 1e-5 (measured <= 2e-7).  A wrong tap, a wrong odd-size rule or a
  sample-covariance factor moves the values by >= 1e-4.
* Gradients: central differences (h = 1e-6) of the very value returned, in
  float64, at *every* pixel.  ``ms_ssim`` is batch-native and each batch item
  is an independent computation, so the 2N perturbed images are evaluated as
  one batch (``batch_fd``); one case also uses the plain loop of helpers'
  ``central_fd``.  Tolerance ``FD_REL`` = 1e-6 of max|grad| (measured ~4e-9).
  Small images (24x26, 25x23) with 3 scales of a 5-tap Gaussian (sigma 0.7)
  or a 3-tap box keep this cheap.
* Peers (pytorch_msssim, piq, torchmetrics): ``pytest.importorskip`` inside
  each test, so a CI without PyTorch skips them.  float64 tensors; see each
  test for what the library does and how far it agrees.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from helpers import FD_REL, assert_grad_matches_fd, batch_fd, central_fd, pair

import fastssim
from fastssim import _pyramid

DATA = Path(__file__).parent / "data"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_msssim_reference", DATA / "make_msssim_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _load_generator()
REF = np.load(DATA / "msssim_reference.npz")
CASES = json.loads(str(REF["cases"]))
CONVENTIONS = ("symmetric", "zero", "drop", "replicate")
NEGATIVE = ("clamp", "simple", "none")
MIN_SIZE = {"symmetric": 161, "zero": 161, "drop": 176, "replicate": 161}

# 3 scales of a 5-tap Gaussian: min_size 17 px ('drop': 20)
SMALL = dict(data_range=1.0, weights=(0.3, 0.3, 0.4), sigma=0.7, workers=1)
SMALL_SHAPES = [(24, 26), (25, 23)]


def _pair(shape, seed=0, corr=0.5):
    return pair(shape, seed=seed, corr=corr)  # helpers' pair, more correlated


def _case_kwargs(case):
    return dict(
        data_range=None if case["dtype"] == "uint8" else case["data_range"],
        weights=tuple(case["weights"]), sigma=case["sigma"],
        channel_axis=case["channel_axis"], spatial_dims=case["spatial_dims"],
    )


def _stack_other(b, k):
    return np.broadcast_to(b, (k,) + b.shape)


# --------------------------------------------------------------------------
# Values against the frozen reference
# --------------------------------------------------------------------------

def test_frozen_file_matches_its_generator():
    """The committed .npz is what the committed generator computes."""
    for case in CASES:
        for conv, (m, vals) in gen.compute_case(case).items():
            np.testing.assert_allclose(m, REF[f"{case['name']}/{conv}/scales"], rtol=1e-13, atol=0)
            for neg, v in vals.items():
                np.testing.assert_allclose(v, REF[f"{case['name']}/{conv}/{neg}"], rtol=1e-13, atol=0)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
@pytest.mark.parametrize("conv", CONVENTIONS)
def test_values_vs_frozen_reference(case, conv):
    x, y = gen.make_pair(case)
    kw = _case_kwargs(case)
    ref_scales = REF[f"{case['name']}/{conv}/scales"]
    for neg in NEGATIVE:
        r = fastssim.ms_ssim(x, y, downsample=conv, negative=neg, return_scales=True, **kw)
        assert r.grad_x is None and r.grad_y is None
        np.testing.assert_allclose(r.value, REF[f"{case['name']}/{conv}/{neg}"], rtol=1e-12, atol=0)
        np.testing.assert_allclose(r.scales, ref_scales, rtol=1e-12, atol=0)
        # the plain call returns the same number
        assert fastssim.ms_ssim(x, y, downsample=conv, negative=neg, **kw) == r.value
    if case["dtype"] == "float64":
        r32 = fastssim.ms_ssim(x.astype(np.float32), y.astype(np.float32), downsample=conv,
                               return_scales=True, **kw)
        assert isinstance(r32.value, (float, np.floating))
        np.testing.assert_allclose(r32.value, REF[f"{case['name']}/{conv}/clamp"], rtol=1e-5, atol=0)
        np.testing.assert_allclose(r32.scales, ref_scales, rtol=1e-5, atol=0)


def test_default_is_wang_symmetric_clamp():
    case = CASES[1]  # odd sizes: the conventions differ
    x, y = gen.make_pair(case)
    v = fastssim.ms_ssim(x, y, data_range=1.0)
    assert v == fastssim.ms_ssim(x, y, data_range=1.0, downsample="symmetric", negative="clamp",
                                 weights=fastssim.WANG_WEIGHTS, sigma=1.5, K1=0.01, K2=0.03)
    np.testing.assert_allclose(v, REF[f"{case['name']}/symmetric/clamp"], rtol=1e-12)
    assert fastssim.WANG_WEIGHTS == (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    # the odd-size rules really differ on this pair (so the table above pins each)
    vals = [REF[f"{case['name']}/{c}/clamp"] for c in CONVENTIONS]
    assert min(abs(a - b) for i, a in enumerate(vals) for b in vals[i + 1:]) > 1e-4


def test_volume_vs_generator():
    """spatial_dims=3: the generator's N-D rules on a volume not in the .npz."""
    x, y = _pair((21, 20, 23), seed=31)
    for conv in CONVENTIONS:
        m = gen.reference_scales(x, y, data_range=1.0, weights=(0.3, 0.3, 0.4), sigma=0.7,
                                 convention=conv, nd=3)
        r = fastssim.ms_ssim(x, y, spatial_dims=3, downsample=conv, return_scales=True, **SMALL)
        np.testing.assert_allclose(r.scales, m, rtol=1e-12)
        np.testing.assert_allclose(r.value, gen.combine(m, (0.3, 0.3, 0.4), "clamp"), rtol=1e-12)


@pytest.mark.parametrize("conv", CONVENTIONS)
@pytest.mark.parametrize("shape", [(11, 12), (13, 13), (12, 15), (7, 9, 10)])
def test_downsampling_operators_vs_generator(conv, shape):
    """_pyramid's dense per-axis matrices are the generator's pad-and-pool rules."""
    a = np.random.default_rng(5).random(shape)
    P = max(n % 2 for n in shape)
    ref = gen.downsample(a, conv, len(shape))
    out = a
    for ax, n in enumerate(shape):
        A = _pyramid.axis_matrix(n, conv, P)
        out = np.moveaxis(np.tensordot(A, np.moveaxis(out, ax, 0), axes=1), 0, ax)
    np.testing.assert_allclose(out, ref, rtol=1e-15, atol=1e-16)
    assert _pyramid.pyramid_shapes(shape, conv, 2)[1] == ref.shape


def _down_from_matrix(A):
    """The engine representation of one axis, read off the dense matrix."""
    n_out, n = A.shape
    i0, i1, w0, w1 = [], [], [], []
    for o in range(n_out):
        nz = np.flatnonzero(A[o])
        i0.append(nz[0])
        w0.append(A[o, nz[0]])
        i1.append(nz[1] if nz.size > 1 else nz[0])
        w1.append(A[o, nz[1]] if nz.size > 1 else 0.0)
    m, u = np.zeros(n, int), np.zeros(n)
    for i in range(n):
        nz = np.flatnonzero(A[:, i])
        assert nz.size <= 1
        if nz.size:
            m[i], u[i] = nz[0], A[nz[0], i]
    return np.array(i0), np.array(i1), np.array(w0), np.array(w1), m, u


@pytest.mark.parametrize("conv,P", [(c, 0) for c in CONVENTIONS] + [("replicate", 1)])
@pytest.mark.parametrize("n", [2, 3, 4, 5, 16, 17, 40, 41])
def test_down_axis_is_the_dense_operator(conv, n, P):
    """down_axis (index arithmetic) against the entries of axis_matrix (reference)."""
    d = _pyramid.down_axis(n, conv, P)
    i0, i1, w0, w1, m, u = _down_from_matrix(_pyramid.axis_matrix(n, conv, P))
    for got, want in zip((d.i0, d.i1, d.w0, d.w1, d.m, d.u), (i0, i1, w0, w1, m, u)):
        np.testing.assert_array_equal(got, want)
    # the regular interior really is regular, and ``last`` names each output's later sample
    o = np.arange(d.lo, d.hi)
    np.testing.assert_array_equal(d.i0[d.lo:d.hi], 2 * o + d.shift)
    for k in range(d.n_out):
        assert d.last[max(i0[k], i1[k] if w1[k] else i0[k])] == k
    assert (d.last >= 0).sum() == d.n_out


def test_down_axis_is_linear_in_memory():
    """A million-sample axis: the dense matrix would need 4 TiB."""
    d = _pyramid.down_axis((1 << 20) + 1, "symmetric")
    assert d.n_out == (1 << 19) + 1 and (d.lo, d.hi) == (0, 1 << 19)
    assert d.w0[-1] == 1.0 and d.i0[-1] == 1 << 20


def test_invariants():
    x, y = _pair((170, 180), seed=3)
    assert fastssim.ms_ssim(x, x, data_range=1.0) == 1.0
    # one scale is SSIM over the valid region (the mean does not depend on the border)
    for conv in CONVENTIONS:
        np.testing.assert_allclose(fastssim.ms_ssim(x, y, data_range=1.0, weights=(1.0,), downsample=conv),
                                   fastssim.ssim(x, y, data_range=1.0), rtol=1e-13)
    # symmetric in x and y
    np.testing.assert_allclose(fastssim.ms_ssim(x, y, data_range=1.0),
                               fastssim.ms_ssim(y, x, data_range=1.0), rtol=1e-13)


# --------------------------------------------------------------------------
# Batch and channel semantics
# --------------------------------------------------------------------------

def test_batch_one_value_per_item():
    rng = np.random.default_rng(7)
    x = rng.random((2, 3, 40, 45))
    y = 0.5 * x + 0.5 * rng.random(x.shape)
    kw = dict(SMALL, workers=None)
    r = fastssim.ms_ssim(x, y, gradient="both", return_scales=True, **kw)
    assert r.value.shape == (2, 3) and r.scales.shape == (2, 3, 3)
    assert r.grad_x.shape == x.shape and r.grad_y.shape == y.shape
    for i in range(2):
        for j in range(3):
            s = fastssim.ms_ssim(x[i, j], y[i, j], gradient="both", return_scales=True, **kw)
            np.testing.assert_allclose(r.value[i, j], s.value, rtol=1e-14)
            np.testing.assert_allclose(r.scales[i, j], s.scales, rtol=1e-14)
            np.testing.assert_allclose(r.grad_x[i, j], s.grad_x, rtol=1e-13, atol=1e-18)
            np.testing.assert_allclose(r.grad_y[i, j], s.grad_y, rtol=1e-13, atol=1e-18)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_channel_axis_mean_over_channels(axis):
    rng = np.random.default_rng(8)
    planes = rng.random((3, 40, 42))
    other = 0.6 * planes + 0.4 * rng.random(planes.shape)
    x = np.moveaxis(planes, 0, axis)
    y = np.moveaxis(other, 0, axis)
    r = fastssim.ms_ssim(x, y, channel_axis=axis, gradient="y", return_scales=True, **SMALL)
    per = [fastssim.ms_ssim(planes[c], other[c], gradient="y", return_scales=True, **SMALL) for c in range(3)]
    np.testing.assert_allclose(r.value, np.mean([p.value for p in per]), rtol=1e-14)
    np.testing.assert_allclose(r.scales, np.stack([p.scales for p in per]), rtol=1e-14)
    # the gradient of the channel mean: each channel's gradient / 3, in the caller's layout
    np.testing.assert_allclose(np.moveaxis(r.grad_y, axis, 0), np.stack([p.grad_y for p in per]) / 3.0,
                               rtol=1e-13, atol=1e-18)


def test_batch_with_channels_and_layouts():
    rng = np.random.default_rng(9)
    x = rng.random((2, 40, 42, 3))
    y = 0.5 * x + 0.5 * rng.random(x.shape)
    v = fastssim.ms_ssim(x, y, channel_axis=-1, **SMALL)
    assert v.shape == (2,)
    v0 = fastssim.ms_ssim(np.moveaxis(x, -1, 1), np.moveaxis(y, -1, 1), channel_axis=1, **SMALL)
    np.testing.assert_allclose(v, v0, rtol=1e-14)
    # non-contiguous and Fortran-ordered inputs give the same numbers
    ys = np.repeat(y, 2, axis=-1)[..., ::2]  # the same values as a strided view
    assert not ys.flags.c_contiguous
    vf = fastssim.ms_ssim(np.asfortranarray(x), ys, channel_axis=-1, **SMALL)
    np.testing.assert_allclose(v, vf, rtol=1e-14)
    xs, ys = _pair((80, 84), seed=10)
    np.testing.assert_allclose(fastssim.ms_ssim(xs[::2, ::2], ys[::2, ::2], **SMALL),
                               fastssim.ms_ssim(xs[::2, ::2].copy(), ys[::2, ::2].copy(), **SMALL), rtol=1e-14)


# workers bitwise and inputs never modified: the entry-point table (entry_points.py),
# iterated by test_threads.py and test_inputs.py (same shapes, conventions and dtypes)


def test_dtypes_of_results():
    x, y = _pair((30, 33), seed=12)
    r = fastssim.ms_ssim(x.astype(np.float32), y.astype(np.float32), gradient="both", return_scales=True, **SMALL)
    assert r.grad_x.dtype == np.float32 and r.grad_y.dtype == np.float32
    assert r.scales.dtype == np.float64
    r64 = fastssim.ms_ssim(x, y, gradient="both", **SMALL)
    scale = np.abs(r64.grad_x).max()
    np.testing.assert_allclose(r.grad_x, r64.grad_x, rtol=0, atol=1e-4 * scale)
    assert isinstance(fastssim.ms_ssim(x, y, **SMALL), (float, np.floating))


# --------------------------------------------------------------------------
# Negative values
# --------------------------------------------------------------------------

def _mixed_pair(c=1.0, shape=(24, 26), seed=21):
    """x = a + n, y = a - c n: smooth a, white n.  At scale 1 the noise dominates
    (mean cs < 0 for c >~ 0.3); from scale 2 on the pooling averages it out (> 0)."""
    rng = np.random.default_rng(seed)
    i, j = np.mgrid[0:shape[0], 0:shape[1]]
    a = 0.5 + 0.3 * np.sin(i / 3.0) * np.cos(j / 4.0)
    n = 0.1 * rng.standard_normal(shape)
    return a + n, a - c * n


@pytest.mark.parametrize("conv", CONVENTIONS)
def test_negative_policies_on_one_negative_scale(conv):
    x, y = _mixed_pair()
    kw = dict(SMALL, downsample=conv)
    m = fastssim.ms_ssim(x, y, return_scales=True, **kw).scales
    assert m[0] < 0 and np.all(m[1:] > 0), m
    w = np.array(kw["weights"])

    # clamp: value 0 and an exactly zero (finite) gradient, as max(m, 0)^w implies
    r = fastssim.ms_ssim(x, y, negative="clamp", gradient="both", **kw)
    assert r.value == 0.0
    assert np.all(r.grad_x == 0.0) and np.all(r.grad_y == 0.0)
    fd = batch_fd(lambda a: fastssim.ms_ssim(a, _stack_other(y, len(a)), negative="clamp", **kw), x)
    assert np.all(fd == 0.0)

    # simple: prod ((m + 1) / 2)^w, smooth: gradient vs FD
    r = fastssim.ms_ssim(x, y, negative="simple", gradient="both", **kw)
    np.testing.assert_allclose(r.value, np.prod(((m + 1) / 2) ** w), rtol=1e-14)
    assert_grad_matches_fd(r.grad_x, batch_fd(
        lambda a: fastssim.ms_ssim(a, _stack_other(y, len(a)), negative="simple", **kw), x))
    assert_grad_matches_fd(r.grad_y, batch_fd(
        lambda a: fastssim.ms_ssim(_stack_other(x, len(a)), a, negative="simple", **kw), y))

    # none with a fractional weight on the negative scale: NaN, value and gradient
    r = fastssim.ms_ssim(x, y, negative="none", gradient="both", **kw)
    assert np.isnan(r.value)
    assert np.all(np.isnan(r.grad_x)) and np.all(np.isnan(r.grad_y))

    # none with an integer weight there: a real (negative) number, m_1 * prod m_j^w_j
    kwi = dict(kw, weights=(1.0, 0.5, 2.0))
    r = fastssim.ms_ssim(x, y, negative="none", gradient="x", **kwi)
    assert r.value < 0
    np.testing.assert_allclose(r.value, m[0] * m[1] ** 0.5 * m[2] ** 2.0, rtol=1e-14)
    assert_grad_matches_fd(r.grad_x, batch_fd(
        lambda a: fastssim.ms_ssim(a, _stack_other(y, len(a)), negative="none", **kwi), x))

    # a zero weight on the negative scale removes it under every policy
    kw0 = dict(kw, weights=(0.0, 0.5, 0.5))
    v = {neg: fastssim.ms_ssim(x, y, negative=neg, gradient="x", **kw0) for neg in NEGATIVE}
    np.testing.assert_allclose(v["clamp"].value, np.prod(m[1:] ** 0.5), rtol=1e-14)
    assert v["none"].value == v["clamp"].value
    np.testing.assert_array_equal(v["none"].grad_x, v["clamp"].grad_x)
    assert_grad_matches_fd(v["clamp"].grad_x, batch_fd(
        lambda a: fastssim.ms_ssim(a, _stack_other(y, len(a)), negative="clamp", **kw0), x))


def test_negative_policies_anticorrelated():
    """y = 1 - x: every scale's mean is negative."""
    x, _ = _pair((24, 26), seed=22)
    y = 1.0 - x
    m = fastssim.ms_ssim(x, y, return_scales=True, **SMALL).scales
    assert np.all(m < 0)
    r = fastssim.ms_ssim(x, y, negative="clamp", gradient="both", **SMALL)
    assert r.value == 0.0 and not np.any(r.grad_x) and not np.any(r.grad_y)
    r = fastssim.ms_ssim(x, y, negative="simple", gradient="x", **SMALL)
    np.testing.assert_allclose(r.value, np.prod(((m + 1) / 2) ** np.array(SMALL["weights"])), rtol=1e-14)
    assert 0 < r.value < 0.1
    assert_grad_matches_fd(r.grad_x, batch_fd(
        lambda a: fastssim.ms_ssim(a, _stack_other(y, len(a)), negative="simple", **SMALL), x))
    assert np.isnan(fastssim.ms_ssim(x, y, negative="none", **SMALL))


def test_negative_item_does_not_leak_into_batch():
    x1, y1 = _pair((24, 26), seed=23)
    x0 = x1[::-1].copy()
    xb = np.stack([x0, x1])
    yb = np.stack([1.0 - x0, y1])
    for neg in NEGATIVE:
        r = fastssim.ms_ssim(xb, yb, negative=neg, gradient="both", **SMALL)
        s = fastssim.ms_ssim(x1, y1, negative=neg, gradient="both", **SMALL)
        assert r.value[1] == s.value
        np.testing.assert_array_equal(r.grad_x[1], s.grad_x)
        np.testing.assert_array_equal(r.grad_y[1], s.grad_y)
        if neg == "clamp":
            assert r.value[0] == 0 and not np.any(r.grad_x[0])
        if neg == "none":
            assert np.isnan(r.value[0])


def test_gradient_finite_when_a_cs_is_tiny():
    """m_1 in (0, 1e-9]: the gradient is finite (no division by cs_j), and
    with weight 1 on that scale (a smooth function of m_1) it matches FD."""
    kw = dict(SMALL)

    def m1(c):
        x, y = _mixed_pair(c)
        return fastssim.ms_ssim(x, y, return_scales=True, **kw).scales[0]

    lo, hi = 0.0, 1.0  # m1(lo) > 0 > m1(hi)
    assert m1(lo) > 0 > m1(hi)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if m1(mid) > 0:
            lo = mid
        else:
            hi = mid
        if 0 < m1(lo) <= 1e-9:
            break
    assert 0 < m1(lo) <= 1e-9
    x, y = _mixed_pair(lo)
    for neg in NEGATIVE:
        r = fastssim.ms_ssim(x, y, negative=neg, gradient="both", **kw)
        assert np.isfinite(r.value) and r.value >= 0
        assert np.all(np.isfinite(r.grad_x)) and np.all(np.isfinite(r.grad_y))
    assert np.abs(fastssim.ms_ssim(x, y, negative="clamp", gradient="x", **kw).grad_x).max() > 0
    kw1 = dict(kw, weights=(1.0, 0.3, 0.4))
    r = fastssim.ms_ssim(x, y, negative="none", gradient="x", **kw1)
    assert 0 < r.value < 1e-8
    assert_grad_matches_fd(r.grad_x, batch_fd(
        lambda a: fastssim.ms_ssim(a, _stack_other(y, len(a)), negative="none", **kw1), x))


def test_nan_input_gives_nan():
    x, y = _pair((24, 26), seed=24)
    x[5, 7] = np.nan
    for neg in NEGATIVE:
        assert np.isnan(fastssim.ms_ssim(x, y, negative=neg, **SMALL))


# --------------------------------------------------------------------------
# Gradients against finite differences, every pixel
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _small_fd(shape, conv, neg, side):
    x, y = _pair(shape, seed=41)
    kw = dict(SMALL, downsample=conv, negative=neg)
    if side == "x":
        return batch_fd(lambda a: fastssim.ms_ssim(a, _stack_other(y, len(a)), **kw), x)
    return batch_fd(lambda a: fastssim.ms_ssim(_stack_other(x, len(a)), a, **kw), y)


@pytest.mark.parametrize("shape", SMALL_SHAPES)
@pytest.mark.parametrize("conv", CONVENTIONS)
@pytest.mark.parametrize("neg", NEGATIVE)
@pytest.mark.parametrize("gradient", ["x", "y", "both"])
def test_gradient_vs_fd(gradient, neg, conv, shape):
    x, y = _pair(shape, seed=41)
    r = fastssim.ms_ssim(x, y, downsample=conv, negative=neg, gradient=gradient, return_scales=True, **SMALL)
    # every m_j > 0 on this pair (and under each +-h), so 'clamp' and 'none'
    # are the same function here and share their differences
    assert np.all(r.scales > 0.3)
    key = "simple" if neg == "simple" else "clamp"
    if gradient in ("x", "both"):
        fd = _small_fd(shape, conv, key, "x")
        assert_grad_matches_fd(r.grad_x, fd)
        # the pyramid's border samples (odd rows/cols, the replicated first
        # sample) are where a wrong adjoint would show: check them explicitly
        edge = np.zeros(shape, bool)
        edge[[0, 1, -2, -1], :] = True
        edge[:, [0, 1, -2, -1]] = True
        np.testing.assert_allclose(r.grad_x[edge], fd[edge], rtol=0, atol=FD_REL * np.abs(fd).max())
    else:
        assert r.grad_x is None
    if gradient in ("y", "both"):
        assert_grad_matches_fd(r.grad_y, _small_fd(shape, conv, key, "y"))
    else:
        assert r.grad_y is None


def test_gradient_vs_plain_fd_loop():
    """The batch trick is not needed: helpers' plain loop gives the same check."""
    x, y = _pair((25, 23), seed=42)
    kw = dict(SMALL, downsample="replicate")
    r = fastssim.ms_ssim(x, y, gradient="y", **kw)
    assert_grad_matches_fd(r.grad_y, central_fd(lambda a: fastssim.ms_ssim(x, a, **kw), y))


@pytest.mark.parametrize("conv", CONVENTIONS)
def test_gradient_box_window_vs_fd(conv):
    x, y = _pair((25, 26), seed=43)
    kw = dict(data_range=1.0, weights=(0.2, 0.3, 0.5), window="uniform", win_size=3,
              covariance="sample", downsample=conv, workers=1)
    r = fastssim.ms_ssim(x, y, gradient="both", **kw)
    assert_grad_matches_fd(r.grad_x, batch_fd(lambda a: fastssim.ms_ssim(a, _stack_other(y, len(a)), **kw), x))
    assert_grad_matches_fd(r.grad_y, batch_fd(lambda a: fastssim.ms_ssim(_stack_other(x, len(a)), a, **kw), y))


@pytest.mark.parametrize("axis", [-1, 0])
def test_gradient_channel_axis_vs_fd(axis):
    rng = np.random.default_rng(44)
    shape = (23, 24, 2) if axis == -1 else (2, 23, 24)
    x = rng.random(shape)
    y = 0.5 * x + 0.5 * rng.random(shape)
    kw = dict(SMALL, downsample="zero")
    r = fastssim.ms_ssim(x, y, channel_axis=axis, gradient="both", **kw)
    cax = -1 if axis == -1 else -3  # the same axis once a batch axis is stacked in front
    assert_grad_matches_fd(r.grad_x, batch_fd(
        lambda a: fastssim.ms_ssim(a, _stack_other(y, len(a)), channel_axis=cax, **kw), x))
    assert_grad_matches_fd(r.grad_y, batch_fd(
        lambda a: fastssim.ms_ssim(_stack_other(x, len(a)), a, channel_axis=cax, **kw), y))


def test_gradient_batch_vs_fd():
    """Per item: d value[b] / d x[b]; no cross-talk between items."""
    rng = np.random.default_rng(45)
    x = rng.random((2, 21, 22))
    y = 0.5 * x + 0.5 * rng.random(x.shape)
    kw = dict(SMALL, downsample="drop")
    r = fastssim.ms_ssim(x, y, gradient="x", **kw)
    fd = batch_fd(lambda a: fastssim.ms_ssim(a, _stack_other(y, len(a)), **kw), x)  # (2, H, W, 2)
    for b in range(2):
        assert_grad_matches_fd(r.grad_x[b], fd[b, ..., b])
        assert not np.any(fd[b, ..., 1 - b])


VOLUME_KW = dict(data_range=1.0, weights=(0.3, 0.3, 0.4), window="uniform", win_size=3, spatial_dims=3,
                 workers=1)


@pytest.mark.parametrize("conv", CONVENTIONS)
def test_gradient_volume_vs_fd(conv):
    # 12x17x13: odd extents on every axis at some scale; the middle axis never
    # shrinks to the window's 3 taps (that case has its own test below)
    x, y = _pair((12, 17, 13), seed=46)
    kw = dict(VOLUME_KW, downsample=conv)
    shapes = _pyramid.pyramid_shapes(x.shape, conv, 3)
    assert all(s[1] > 3 for s in shapes) and any(s[0] == 3 or s[2] == 3 for s in shapes)
    r = fastssim.ms_ssim(x, y, gradient="x", **kw)
    assert_grad_matches_fd(r.grad_x, batch_fd(lambda a: fastssim.ms_ssim(a, _stack_other(y, len(a)), **kw), x))


@pytest.mark.parametrize("what", ["ssim", "ms_ssim"])
def test_gradient_volume_middle_axis_equal_to_window(what):
    if what == "ssim":
        x, y = _pair((6, 3, 5), seed=47)
        kw = dict(data_range=1.0, window="uniform", win_size=3, spatial_dims=3, border="valid")
        f = fastssim.ssim
    else:  # the coarsest scale is 3x3x3
        x, y = _pair((12, 13, 12), seed=47)
        kw = dict(VOLUME_KW, downsample="drop")
        f = fastssim.ms_ssim
    r = f(x, y, gradient="x", **kw)
    assert_grad_matches_fd(r.grad_x, batch_fd(lambda a: f(a, _stack_other(y, len(a)), **kw), x))


def test_gradient_fit_scales_vs_fd():
    x, y = _pair((24, 26), seed=47)
    kw = dict(data_range=1.0, weights=(0.2, 0.2, 0.3, 0.3), sigma=0.7, fit_scales=True, workers=1)
    r = fastssim.ms_ssim(x, y, gradient="x", return_scales=True, **kw)
    assert r.scales.shape == (3,)
    assert_grad_matches_fd(r.grad_x, batch_fd(lambda a: fastssim.ms_ssim(a, _stack_other(y, len(a)), **kw), x))


def test_skimage_style_entry_point_gradient_vs_fd():
    x, y = _pair((24, 25), seed=48)
    kw = dict(data_range=1.0, weights=(0.3, 0.3, 0.4), sigma=0.7)
    v, g = fastssim.multiscale_structural_similarity(x, y, gradient=True, **kw)
    assert isinstance(v, float) and g.shape == y.shape
    assert v == fastssim.ms_ssim(x, y, **kw)
    # the gradient is with respect to im2
    assert_grad_matches_fd(g, batch_fd(lambda a: fastssim.ms_ssim(_stack_other(x, len(a)), a, **kw), y))
    fd_y = central_fd(lambda a: fastssim.multiscale_structural_similarity(x, a, **kw), y)
    assert_grad_matches_fd(g, fd_y)


# --------------------------------------------------------------------------
# multiscale_structural_similarity (scikit-image style)
# --------------------------------------------------------------------------

def test_skimage_style_entry_point():
    case = CASES[3]  # uint8: data_range from the dtype (255)
    x, y = gen.make_pair(case)
    v = fastssim.multiscale_structural_similarity(x, y)
    np.testing.assert_allclose(v, REF[f"{case['name']}/symmetric/clamp"], rtol=1e-12)
    case = CASES[2]  # RGB, channels last
    x, y = gen.make_pair(case)
    for conv in CONVENTIONS:
        v = fastssim.multiscale_structural_similarity(x, y, data_range=1.0, channel_axis=-1, downsample=conv)
        np.testing.assert_allclose(v, REF[f"{case['name']}/{conv}/clamp"], rtol=1e-12)
    v, g = fastssim.multiscale_structural_similarity(x, y, data_range=1.0, channel_axis=-1, gradient=True)
    assert g.shape == x.shape
    r = fastssim.ms_ssim(x, y, data_range=1.0, channel_axis=-1, gradient="y")
    np.testing.assert_array_equal(g, r.grad_y)
    # volumes: 3 spatial dimensions are taken as a volume
    xv, yv = _pair((20, 21, 22), seed=49)
    np.testing.assert_allclose(
        fastssim.multiscale_structural_similarity(xv, yv, data_range=1.0, weights=(0.5, 0.5), sigma=0.7),
        fastssim.ms_ssim(xv, yv, data_range=1.0, weights=(0.5, 0.5), sigma=0.7, spatial_dims=3), rtol=1e-14)


# --------------------------------------------------------------------------
# Small images: min_size, the error, fit_scales
# --------------------------------------------------------------------------

def test_min_size():
    assert fastssim.min_size(5, 11) == 161
    for conv, n in MIN_SIZE.items():
        assert fastssim.min_size(5, 11, conv) == n
    for M in (1, 2, 3, 4, 5, 6):
        for T in (3, 5, 7, 11):
            for conv in CONVENTIONS:
                n = fastssim.min_size(M, T, conv)
                expect = T * 2 ** (M - 1) if conv == "drop" else (T - 1) * 2 ** (M - 1) + 1
                if M == 1:
                    expect = T
                assert n == expect, (M, T, conv)
                # it is the smallest: n fits, n - 1 does not
                assert min(_pyramid.pyramid_shapes((n, n), conv, M)[-1]) >= T
                if n > T:
                    assert min(_pyramid.pyramid_shapes((n - 1, n - 1), conv, M)[-1]) < T
    assert fastssim.min_size(3, 5, "drop", spatial_dims=3) == 20


def test_many_scales_error_is_immediate():
    # min_size bisects: 40 scales of 11 taps need 10 * 2**39 + 1 px, found at once
    assert fastssim.min_size(40, 11) == 10 * 2 ** 39 + 1
    x, y = _pair((200, 200), seed=52)
    with pytest.raises(ValueError, match=rf"9 scales .* needs at least {10 * 2 ** 8 + 1} px"):
        fastssim.ms_ssim(x, y, data_range=1.0, weights=(0.1,) * 9)
    # more scales than the engine's pyramid holds (2**15 px per side fit 16)
    with pytest.raises(ValueError, match=r"weights: at most 16 scales, got 40"):
        fastssim.ms_ssim(x, y, data_range=1.0, weights=(0.025,) * 40)


@pytest.mark.parametrize("negative", ["clamp", "simple", "none"])
def test_combine_kernel(negative):
    """The compiled combination of the per-scale means: the value against the
    generator's NumPy formula, d value / d m_j against central differences of
    that formula (every row where the formula is smooth), and with 'clamp'
    finite coefficients when an m_j is exactly 0 or negative."""
    from fastssim._msssim import _combine
    rng = np.random.default_rng(53)
    w = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    m = rng.uniform(0.05, 0.99, size=(6, 5))
    m[1, 2] = -0.3          # a negative mean
    m[2, 4] = 0.0           # exactly zero
    m[3, 0] = 1e-300        # vanishing
    v, coef = _combine(m, w, negative, True)
    ref = gen.combine(m, w, negative)
    np.testing.assert_allclose(v, ref, rtol=1e-14, equal_nan=True)
    assert _combine(m, w, negative, False)[1] is None
    h = 1e-7
    # rows away from the kinks (all rows for 'simple', which has none)
    for p in (range(6) if negative == "simple" else (0, 4, 5)):
        for j in range(5):
            mp, mm = m.copy(), m.copy()
            mp[p, j] += h
            mm[p, j] -= h
            fd = (gen.combine(mp[p], w, negative) - gen.combine(mm[p], w, negative)) / (2 * h)
            np.testing.assert_allclose(coef[p, j], fd, rtol=1e-6, atol=1e-9)
    if negative == "clamp":
        assert np.all(np.isfinite(coef))
        # a clamped (negative or zero) mean has slope 0, and zeroes the others
        assert coef[1, 2] == 0 and np.all(coef[1, np.arange(5) != 2] == 0)
        assert np.all(coef[2] == 0)  # a zero factor: the product has slope 0 everywhere
        assert np.all(np.isfinite(coef[3]))  # a vanishing (1e-300) factor
    # a zero weight contributes slope 0 (and a factor 1)
    w0 = w.copy()
    w0[1] = 0.0
    v0, c0 = _combine(m, w0, negative, True)
    assert np.all(c0[:, 1] == 0)
    np.testing.assert_allclose(v0, gen.combine(m, w0, negative), rtol=1e-14, equal_nan=True)


@pytest.mark.parametrize("conv", CONVENTIONS)
def test_too_small_error_states_min_size(conv):
    n = MIN_SIZE[conv]
    x, y = _pair((n, n + 3), seed=50)
    fastssim.ms_ssim(x, y, data_range=1.0, downsample=conv)  # fits exactly
    msg = (rf"MS-SSIM with 5 scales and a window of 11 taps needs at least {n} px per side "
           rf"\(downsample='{conv}'\); got {n - 1}x{n + 3}: pass fewer scales")
    with pytest.raises(ValueError, match=msg):
        fastssim.ms_ssim(x[1:], y[1:], data_range=1.0, downsample=conv)
    with pytest.raises(ValueError, match=rf"needs at least {n} px per side .* got 64x64: .*fit_scales=True"):
        fastssim.ms_ssim(x[:64, :64], y[:64, :64], data_range=1.0, downsample=conv)
    with pytest.raises(ValueError, match=rf"needs at least {n} px per side"):
        fastssim.multiscale_structural_similarity(x[:64, :64], y[:64, :64], data_range=1.0, downsample=conv)
    # the window size enters: 3 scales of 5 taps
    small = fastssim.min_size(3, 5, conv)
    with pytest.raises(ValueError, match=rf"3 scales and a window of 5 taps needs at least {small} px"):
        fastssim.ms_ssim(x[:small - 1, :30], y[:small - 1, :30], data_range=1.0, weights=(0.3, 0.3, 0.4),
                         sigma=0.7, downsample=conv)


@pytest.mark.parametrize("conv,shape,fit", [("symmetric", (100, 100), 4), ("drop", (100, 100), 4),
                                             ("symmetric", (60, 70), 3), ("drop", (87, 175), 3),
                                             ("replicate", (30, 35), 2), ("replicate", (41, 44), 3), ("zero", (20, 11), 1)])
def test_fit_scales_truncates_and_renormalises(conv, shape, fit):
    x, y = _pair(shape, seed=51, corr=0.7)
    w = np.array(fastssim.WANG_WEIGHTS)
    r = fastssim.ms_ssim(x, y, data_range=1.0, downsample=conv, fit_scales=True, return_scales=True)
    assert r.scales.shape == (fit,)
    # the kept weights are rescaled to the original sum (1.0001 for Wang's)
    wk = w[:fit] * (w.sum() / w[:fit].sum())
    explicit = fastssim.ms_ssim(x, y, data_range=1.0, downsample=conv, weights=tuple(wk), return_scales=True)
    np.testing.assert_allclose(r.value, explicit.value, rtol=1e-15)
    np.testing.assert_array_equal(r.scales, explicit.scales)
    m = gen.reference_scales(x, y, data_range=1.0, weights=wk, convention=conv)
    np.testing.assert_allclose(r.value, gen.combine(m, wk, "clamp"), rtol=1e-12)
    # fit_scales changes nothing when every scale fits
    big = gen.make_pair(CASES[0])
    assert (fastssim.ms_ssim(*big, data_range=1.0, downsample=conv, fit_scales=True)
            == fastssim.ms_ssim(*big, data_range=1.0, downsample=conv))


def test_fit_scales_errors():
    x, y = _pair((100, 100), seed=52)
    with pytest.raises(ValueError, match=r"fit_scales: not even one scale fits: the 11-tap window needs at "
                                         r"least 11 px per side, got 10x100"):
        fastssim.ms_ssim(x[:10], y[:10], data_range=1.0, fit_scales=True)
    with pytest.raises(ValueError, match=r"fit_scales: only the first 4 of 5 scales fit 100x100, and their "
                                         r"weights \(0\.0, 0\.0, 0\.0, 0\.0\) are all zero"):
        fastssim.ms_ssim(x, y, data_range=1.0, weights=(0, 0, 0, 0, 1.0), fit_scales=True)
    with pytest.raises(TypeError, match=r"fit_scales: expected a bool, got 'yes'"):
        fastssim.ms_ssim(x, y, data_range=1.0, fit_scales="yes")


# --------------------------------------------------------------------------
# Argument errors
# --------------------------------------------------------------------------

_X, _Y = _pair((30, 31), seed=53)
ERRORS = [
    (dict(weights="abc"), TypeError, r"weights: expected a sequence of non-negative numbers, got 'abc'"),
    (dict(weights={"a": 1}), TypeError, r"weights: expected a sequence of non-negative numbers"),
    (dict(weights=[]), ValueError, r"weights: expected a non-empty 1-D sequence \(one weight per scale\), "
                                   r"got shape \(0,\)"),
    (dict(weights=[[0.5, 0.5]]), ValueError, r"weights: expected a non-empty 1-D sequence .* got shape \(1, 2\)"),
    (dict(weights=0.5), ValueError, r"weights: expected a non-empty 1-D sequence .* got shape \(\)"),
    (dict(weights=(0.5, -0.1)), ValueError, r"weights: expected finite non-negative numbers, got \(0\.5, -0\.1\)"),
    (dict(weights=(0.5, np.nan)), ValueError, r"weights: expected finite non-negative numbers, got \(0\.5, nan\)"),
    (dict(weights=(0.5, np.inf)), ValueError, r"weights: expected finite non-negative numbers"),
    (dict(weights=(0.0, 0.0)), ValueError, r"weights: at least one weight must be positive"),
    (dict(downsample="reflect"), ValueError, r"downsample: expected one of \('symmetric', 'zero', 'drop', "
                                             r"'replicate'\), got 'reflect'"),
    (dict(downsample=None), ValueError, r"downsample: expected one of .* got None"),
    (dict(negative="relu"), ValueError, r"negative: expected one of \('clamp', 'simple', 'none'\), got 'relu'"),
    (dict(negative=None), ValueError, r"negative: expected one of .* got None"),
    (dict(gradient="z"), ValueError, r"gradient: expected None, 'x', 'y' or 'both', got 'z'"),
    (dict(data_range=np.nan), ValueError, r"data_range: expected a positive finite number, got nan"),
    (dict(data_range=-1.0), ValueError, r"data_range: expected a positive finite number, got -1\.0"),
    (dict(data_range="1"), TypeError, r"data_range: expected a positive finite number"),
    (dict(sigma=0.0), ValueError, r"sigma"),
    (dict(window="box"), ValueError, r"window: expected 'gaussian' or 'uniform', got 'box'"),
    (dict(spatial_dims=4), ValueError, r"spatial_dims: expected 2 \(images\) or 3 \(volumes\), got 4"),
    (dict(covariance="unbiased"), ValueError, r"covariance: expected 'population' or 'sample'"),
    (dict(channel_axis=5), ValueError, r"channel_axis=5 is out of range"),
]  # data_range=None, workers=0: test_errors.py's table of every entry point


@pytest.mark.parametrize("kw,exc,match", ERRORS, ids=[str(e[0]) for e in ERRORS])
def test_argument_errors(kw, exc, match):
    args = dict(SMALL)
    args.update(kw)
    with pytest.raises(exc, match=match):
        fastssim.ms_ssim(_X, _Y, **args)


def test_input_errors():
    """The shared ones (shapes, complex input, 1-D ms_ssim, a missing data_range) are in
    test_errors.py's table of every entry point; these are the drop-in's own."""
    with pytest.raises(TypeError, match=r"gradient: expected a bool, got 'y'"):
        fastssim.multiscale_structural_similarity(_X, _Y, data_range=1.0, gradient="y")
    with pytest.raises(ValueError, match=r"supports 2-D and 3-D images, got 1 spatial dimensions"):
        fastssim.multiscale_structural_similarity(_X[0], _Y[0], data_range=1.0)


# --------------------------------------------------------------------------
# Peers: pytorch_msssim ('zero'), piq ('replicate'), torchmetrics ('drop')
# --------------------------------------------------------------------------

# even/even, odd/odd, the smallest that fits 'zero' and 'replicate' (mixed
# parity: piq then pads the even axis too), and RGB with an odd height
PEER_SHAPES = [(192, 200), (177, 183), (161, 164), (181, 190, 3)]


def _nchw(torch, a):
    """(H, W) -> (1, 1, H, W); (H, W, C) -> (1, C, H, W); float64."""
    a = a[None, None] if a.ndim == 2 else np.moveaxis(a, -1, 0)[None]
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _peer_pairs(min_side=0):
    for k, shape in enumerate(PEER_SHAPES):
        if min(shape[:2]) >= min_side:
            x, y = _pair(shape, seed=60 + k)
            yield shape, x, y


def test_pytorch_msssim():
    """pytorch_msssim.ms_ssim = downsample='zero', negative='clamp'.

    It builds its Gaussian window in float32 (``torch.arange(..., dtype=torch.float)``)
    and casts it to the input's dtype, so with its default window float64 input
    is 1.6e-6 (relative) from any float64-window result.  With the float64
    window passed as ``win`` it agrees with fastssim to <= 1e-14; its default
    result is the generator's with those float32 taps to <= 1e-14.
    """
    torch = pytest.importorskip("torch")
    pms = pytest.importorskip("pytorch_msssim")
    taps = gen.gaussian_window(1.5)
    # its own window, made in float32 (private helper; the public call uses it)
    taps32 = importlib.import_module("pytorch_msssim.ssim")._fspecial_gauss_1d(11, 1.5).double().numpy().ravel()
    assert 1e-9 < np.abs(taps32 - taps).max() < 1e-7
    for shape, x, y in _peer_pairs():
        X, Y = _nchw(torch, x), _nchw(torch, y)
        C = X.shape[1]
        cax = -1 if len(shape) == 3 else None
        win = torch.from_numpy(taps)[None, None].repeat(C, 1, 1, 1)
        ref = float(pms.ms_ssim(X, Y, data_range=1.0, win=win))
        ours = fastssim.ms_ssim(x, y, data_range=1.0, downsample="zero", negative="clamp", channel_axis=cax)
        np.testing.assert_allclose(ours, ref, rtol=1e-12)
        ref_default = float(pms.ms_ssim(X, Y, data_range=1.0))
        planes = (x[None] if cax is None else np.moveaxis(x, -1, 0), y[None] if cax is None else np.moveaxis(y, -1, 0))
        m32 = gen.reference_scales(*planes, data_range=1.0, weights=gen.WANG_WEIGHTS, convention="zero",
                                   taps=taps32)
        np.testing.assert_allclose(ref_default, np.mean(gen.combine(m32, gen.WANG_WEIGHTS, "clamp")), rtol=1e-12)
    # batch, per item (size_average=False), data_range 255
    rng = np.random.default_rng(70)
    x = rng.random((2, 2, 161, 165)) * 255
    y = 0.5 * x + 0.5 * rng.random(x.shape) * 255
    win = torch.from_numpy(taps)[None, None].repeat(2, 1, 1, 1)
    ref = pms.ms_ssim(torch.from_numpy(x), torch.from_numpy(y), data_range=255, win=win, size_average=False).numpy()
    ours = fastssim.ms_ssim(x, y, data_range=255.0, downsample="zero", channel_axis=1)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    # volumes: avg_pool3d with padding = (D % 2, H % 2, W % 2); a 3-tap box window
    x, y = _pair((33, 34, 35), seed=71)
    box = torch.full((1, 1, 1, 1, 3), 1.0 / 3.0, dtype=torch.float64)
    ref = float(pms.ms_ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None], data_range=1.0, win=box))
    ours = fastssim.ms_ssim(x, y, data_range=1.0, window="uniform", win_size=3, spatial_dims=3, downsample="zero")
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    # negative means are clamped (relu) to 0
    x, _ = _pair((170, 171), seed=72)
    win1 = torch.from_numpy(taps)[None, None].repeat(1, 1, 1, 1)
    assert float(pms.ms_ssim(_nchw(torch, x), _nchw(torch, 1 - x), data_range=1.0, win=win1)) == 0.0
    assert fastssim.ms_ssim(x, 1 - x, data_range=1.0, downsample="zero") == 0.0


def test_piq():
    """piq.multi_scale_ssim = downsample='replicate', negative='clamp'.

    piq divides by data_range first (then C1 = K1^2), pads max(H % 2, W % 2)
    replicated rows *and* columns at the start before avg_pool2d, clamps with
    relu and averages the per-channel values.  Agreement <= 1e-14.  It
    normalises user-given ``scale_weights`` to sum 1, but not its default
    weights (which sum to 1.0001).
    """
    torch = pytest.importorskip("torch")
    piq = pytest.importorskip("piq")
    for shape, x, y in _peer_pairs():
        cax = -1 if len(shape) == 3 else None
        X, Y = _nchw(torch, x), _nchw(torch, y)
        ref = float(piq.multi_scale_ssim(X, Y, data_range=1.0))
        ours = fastssim.ms_ssim(x, y, data_range=1.0, downsample="replicate", channel_axis=cax)
        np.testing.assert_allclose(ours, ref, rtol=1e-12)
        if shape == (161, 164):
            ref255 = float(piq.multi_scale_ssim(X * 255, Y * 255, data_range=255.0))
            np.testing.assert_allclose(fastssim.ms_ssim(x * 255, y * 255, data_range=255.0, downsample="replicate"),
                                       ref255, rtol=1e-12)
    w = np.array(fastssim.WANG_WEIGHTS)
    ref = float(piq.multi_scale_ssim(X, Y, data_range=1.0, scale_weights=torch.tensor(w)))
    ours = fastssim.ms_ssim(x, y, data_range=1.0, downsample="replicate", channel_axis=-1, weights=w / w.sum())
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    # batch: reduction='none' gives one value per item
    rng = np.random.default_rng(73)
    xb = rng.random((2, 2, 163, 161))
    yb = 0.6 * xb + 0.4 * rng.random(xb.shape)
    ref = piq.multi_scale_ssim(torch.from_numpy(xb), torch.from_numpy(yb), data_range=1.0, reduction="none").numpy()
    np.testing.assert_allclose(fastssim.ms_ssim(xb, yb, data_range=1.0, downsample="replicate", channel_axis=1),
                               ref, rtol=1e-12)
    # negative means are clamped (relu) to 0
    x, _ = _pair((170, 171), seed=74)
    assert float(piq.multi_scale_ssim(_nchw(torch, x), _nchw(torch, 1 - x), data_range=1.0)) == 0.0
    assert fastssim.ms_ssim(x, 1 - x, data_range=1.0, downsample="replicate") == 0.0


def _torchmetrics_last_scale(x, y, M):
    """torchmetrics' last-scale term as its code reads: the mean of l*cs over the
    whole same-size map of the image padded by the window radius with
    torch's 'reflect' (NumPy 'reflect', edge not repeated), after M-1 'drop'
    downsamplings; channels pooled into one mean."""
    taps = gen.gaussian_window(1.5)
    r = len(taps) // 2
    for _ in range(M - 1):
        x, y = gen.downsample(x, "drop", 2), gen.downsample(y, "drop", 2)
    pad = [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)]
    _, s = gen.scale_means(np.pad(x, pad, mode="reflect"), np.pad(y, pad, mode="reflect"),
                           taps, 1e-4, 9e-4, 2)
    return float(np.mean(s))


def test_torchmetrics():
    """torchmetrics' MS-SSIM = downsample='drop' for the cs terms, but not for the last scale.

    As its ``_ssim_update`` reads (1.9.0): the images are padded by the window
    radius with torch 'reflect'; the cs map is cropped back to the valid region
    (so cs_j = our 'drop' m_j, to 1e-14), but the l*cs map is *not* cropped: the
    last scale's term is the mean over the whole padded map.  Also: channels are
    pooled into one mean per scale before the power (we and pytorch_msssim/piq
    average the per-channel MS-SSIM); ``betas`` become a float32 tensor, so the
    exponents are float32-rounded; ``data_range=None`` means max - min of the
    data; the Gaussian has 2*int(3.5 sigma + .5) + 1 taps whatever
    ``kernel_size`` says.  Dyadic betas (exact in float32) avoid the rounding.
    """
    torch = pytest.importorskip("torch")
    tmf = pytest.importorskip("torchmetrics.functional.image")
    tm_image = pytest.importorskip("torchmetrics.image")
    import inspect

    sig = inspect.signature(tmf.multiscale_structural_similarity_index_measure).parameters
    assert sig["gaussian_kernel"].default is True and sig["sigma"].default == 1.5
    assert sig["kernel_size"].default == 11 and sig["data_range"].default is None
    assert sig["k1"].default == 0.01 and sig["k2"].default == 0.03
    assert sig["betas"].default == fastssim.WANG_WEIGHTS
    assert sig["normalize"].default == "relu" and sig["reduction"].default == "elementwise_mean"

    tm = tmf.multiscale_structural_similarity_index_measure
    dyadic = (0.0625, 0.25, 0.3125, 0.25, 0.125)
    cs_only = dyadic[:-1] + (0.0,)
    w32 = np.float32(fastssim.WANG_WEIGHTS).astype(np.float64)
    for shape, x, y in _peer_pairs(min_side=176):  # it needs H // 16 > 10 and W // 16 > 10
        cax = -1 if len(shape) == 3 else None
        X, Y = _nchw(torch, x), _nchw(torch, y)
        planes = [a if cax is None else np.moveaxis(a, -1, 0) for a in (x, y)]
        last = _torchmetrics_last_scale(*planes, 5)
        r = fastssim.ms_ssim(x, y, data_range=1.0, downsample="drop", channel_axis=cax, return_scales=True)
        m = r.scales if cax is None else r.scales.mean(axis=0)  # channels pooled
        # cs terms alone (last beta 0): our 'drop' scales
        ref = float(tm(X, Y, data_range=1.0, betas=cs_only))
        np.testing.assert_allclose(ref, gen.combine(m, cs_only, "clamp"), rtol=1e-12)
        if cax is None:
            ours = fastssim.ms_ssim(x, y, data_range=1.0, downsample="drop", weights=cs_only)
            np.testing.assert_allclose(ours, ref, rtol=1e-12)
        # all terms, both normalisations: the last one is the mean over the padded map ...
        mm = np.concatenate([m[:-1], [last]])
        for norm, neg in (("relu", "clamp"), ("simple", "simple")):
            ref = float(tm(X, Y, data_range=1.0, normalize=norm, betas=dyadic))
            np.testing.assert_allclose(ref, gen.combine(mm, dyadic, neg), rtol=1e-12)
        # ... and the default betas are float32-rounded Wang weights
        ref = float(tm(X, Y, data_range=1.0))
        np.testing.assert_allclose(ref, gen.combine(mm, w32, "clamp"), rtol=1e-12)
        # so it is not our 'drop' value: 3e-4 .. 4e-3 apart on these pairs
        assert abs(r.value - ref) > 1e-4 * ref
    # the module API: same numbers once its float32 states are made float64
    metric = tm_image.MultiScaleStructuralSimilarityIndexMeasure(data_range=1.0, betas=cs_only)
    metric.set_dtype(torch.float64)
    x, y = _pair((177, 176), seed=75)
    metric.update(_nchw(torch, x), _nchw(torch, y))
    np.testing.assert_allclose(float(metric.compute()),
                               fastssim.ms_ssim(x, y, data_range=1.0, downsample="drop", weights=cs_only),
                               rtol=1e-12)
