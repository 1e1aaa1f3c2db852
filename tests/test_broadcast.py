"""Batch broadcasting (issue 11): x and y may differ in their batch axes.

References: the same call on explicitly broadcast inputs (``np.broadcast_to``
then a copy), whose values and maps must be the same bits (each item runs the
same arithmetic on the same samples), and whose gradients, summed over the
axes along which an input broadcasts (as autograd does), must match to
rounding; and central finite differences in float64 of the summed value with
respect to the broadcast input.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from helpers import assert_grad_matches_fd, batch_fd, pair

import fastssim
from fastssim import losses


def explicit(a, b):
    """The inputs broadcast against each other and copied (the reference call's)."""
    return tuple(np.ascontiguousarray(t) for t in np.broadcast_arrays(a, b))


def sum_to(g, shape):
    """The reference reduction: sum a broadcast-shape gradient to ``shape``."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)), dtype=np.float64)
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True, dtype=np.float64)


def close(a, b, dtype):
    """Gradients summed in a different order: rounding of the compute type."""
    tol = 1e-12 if np.dtype(dtype) == np.float64 else 2e-6
    scale = max(np.abs(b).max(), 1e-300)
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


def rand(shape, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    if np.dtype(dtype).kind == "u":
        return (a * 255).astype(dtype)
    return a.astype(dtype)


# (x shape, y shape, keyword arguments): the engine's layouts (contiguous
# planes, interleaved channels read in place, channel planes moved out),
# read-in-place and converted dtypes, volumes, a missing leading axis
SSIM_CASES = [
    ("ref-vs-stack", (24, 26), (3, 24, 26), {}),
    ("stack-vs-ref", (3, 24, 26), (1, 24, 26), {}),
    ("one-vs-ref", (1, 24, 26), (24, 26), {}),
    ("extra-axes", (2, 1, 1, 24, 26), (3, 24, 26), {}),
    ("two-ways", (1, 2, 20, 22), (3, 1, 20, 22), {}),
    ("rgb-interleaved", (2, 1, 20, 22, 3), (1, 3, 20, 22, 3), dict(channel_axis=-1)),
    ("rgb-planes", (1, 3, 20, 22), (2, 3, 20, 22), dict(channel_axis=1)),
    ("volume", (1, 14, 15, 16), (2, 14, 15, 16), dict(spatial_dims=3)),
    ("box-sample", (20, 21), (2, 2, 20, 21), dict(window="uniform", win_size=5,
                                                  covariance="sample")),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8])
@pytest.mark.parametrize("xs,ys,kw", [c[1:] for c in SSIM_CASES], ids=[c[0] for c in SSIM_CASES])
def test_ssim_matches_explicit_broadcast(xs, ys, kw, dtype):
    x, y = rand(xs, dtype, 1), rand(ys, dtype, 2)
    xb, yb = explicit(x, y)
    dr = 255.0 if dtype == np.uint8 else 1.0
    r = fastssim.ssim(x, y, data_range=dr, full=True, gradient="both", **kw)
    e = fastssim.ssim(xb, yb, data_range=dr, full=True, gradient="both", **kw)
    assert np.array_equal(r.value, e.value)
    assert np.array_equal(r.map, e.map)
    assert r.grad_x.shape == x.shape and r.grad_y.shape == y.shape
    close(r.grad_x, sum_to(e.grad_x, x.shape), e.grad_x.dtype)
    close(r.grad_y, sum_to(e.grad_y, y.shape), e.grad_y.dtype)
    # the value alone, and a VJP with a cotangent of the broadcast map
    assert np.array_equal(fastssim.ssim(x, y, data_range=dr, **kw), e.value)
    w = rand(e.map.shape, np.float64, 3)
    g = fastssim.ssim_vjp(x, y, w, wrt="both", data_range=dr, **kw)
    ge = fastssim.ssim_vjp(xb, yb, w, wrt="both", data_range=dr, **kw)
    close(g[0], sum_to(ge[0], x.shape), ge[0].dtype)
    close(g[1], sum_to(ge[1], y.shape), ge[1].dtype)


def test_non_contiguous_and_mixed_dtype_inputs():
    # converted planes (a transposed view, a float32/float64 pair)
    x = rand((30, 24), np.float64, 4).T
    y = rand((2, 24, 30), np.float32, 5)
    xb, yb = explicit(x, y)
    r = fastssim.ssim(x, y, data_range=1.0, gradient="x")
    e = fastssim.ssim(xb, yb, data_range=1.0, gradient="x")
    assert np.array_equal(r.value, e.value)
    close(r.grad_x, sum_to(e.grad_x, x.shape), np.float64)


def test_gradient_of_the_broadcast_input_matches_fd():
    """d/dref sum_i SSIM(ref, y_i): FD of the summed value, every pixel, borders included."""
    ref, _ = pair((13, 14), seed=6)
    ys = np.stack([pair((13, 14), seed=s)[1] for s in (7, 8, 9)])
    kw = dict(data_range=1.0, window="gaussian", sigma=1.0)
    g = fastssim.ssim(ref, ys, gradient="x", **kw).grad_x
    assert g.shape == ref.shape
    fd = batch_fd(lambda s: fastssim.ssim(s[:, None], ys[None], **kw).sum(axis=1), ref)
    assert_grad_matches_fd(g, fd)


def test_ms_ssim_matches_explicit_broadcast():
    for xs, ys, kw in [((180, 170), (2, 180, 170), {}),
                       ((2, 1, 170, 165, 3), (1, 2, 170, 165, 3), dict(channel_axis=-1)),
                       ((1, 40, 42, 44), (2, 40, 42, 44),  # volumes: unfused first level
                        dict(spatial_dims=3, weights=(0.5, 0.5), sigma=1.0))]:
        for dtype in (np.float64, np.float32):
            x, y = rand(xs, dtype, 10), rand(ys, dtype, 11)
            xb, yb = explicit(x, y)
            r = fastssim.ms_ssim(x, y, data_range=1.0, gradient="both", return_scales=True, **kw)
            e = fastssim.ms_ssim(xb, yb, data_range=1.0, gradient="both", return_scales=True, **kw)
            assert np.array_equal(r.value, e.value) and np.array_equal(r.scales, e.scales)
            assert r.grad_x.shape == x.shape and r.grad_y.shape == y.shape
            close(r.grad_x, sum_to(e.grad_x, x.shape), dtype)
            close(r.grad_y, sum_to(e.grad_y, y.shape), dtype)


def test_pixelwise_matches_explicit_broadcast():
    for xs, ys, kw in [((40, 41), (2, 40, 41), {}),
                       ((1, 36, 37, 3), (2, 36, 37, 3), dict(channel_axis=-1))]:
        x, y = rand(xs, np.float64, 12), rand(ys, np.float64, 13)
        xb, yb = explicit(x, y)
        kw = dict(data_range=1.0, sigmas=(0.5, 1.0, 2.0), **kw)
        r = fastssim.pixelwise_ms_ssim(x, y, full=True, gradient="both", **kw)
        e = fastssim.pixelwise_ms_ssim(xb, yb, full=True, gradient="both", **kw)
        assert np.array_equal(r.value, e.value) and np.array_equal(r.map, e.map)
        close(r.grad_x, sum_to(e.grad_x, x.shape), np.float64)
        close(r.grad_y, sum_to(e.grad_y, y.shape), np.float64)
        w = rand(e.map.shape, np.float64, 14)
        g = fastssim.pixelwise_ms_ssim_vjp(x, y, w, wrt="y", **kw)
        close(g, sum_to(fastssim.pixelwise_ms_ssim_vjp(xb, yb, w, wrt="y", **kw), y.shape),
              np.float64)


@pytest.mark.parametrize("name", ["l1", "l2", "ssim", "ms_ssim", "pixelwise_ms_ssim", "mix"])
def test_losses_broadcast(name):
    big = name == "ms_ssim"
    sp = (170, 165) if big else (36, 37)
    kw = {} if name in ("l1", "l2") else dict(data_range=1.0)
    if name in ("pixelwise_ms_ssim", "mix"):
        kw["sigmas"] = (0.5, 1.0, 2.0)
    f = getattr(losses, name)
    for ps, ts, ck in [((2, 1) + sp, (1, 3) + sp, {}), ((2,) + sp, sp, {}),
                       ((1, 2) + sp + (3,), (2, 1) + sp + (3,), dict(channel_axis=-1))]:
        p, t = rand(ps, np.float64, 15), rand(ts, np.float64, 16)
        pb, tb = explicit(p, t)
        r = f(p, t, gradient=True, full=True, **kw, **ck)
        e = f(pb, tb, gradient=True, full=True, **kw, **ck)
        np.testing.assert_array_equal(r.value, e.value)
        if e.map is not None:
            np.testing.assert_array_equal(r.map, e.map)
        assert r.grad.shape == p.shape
        close(r.grad, sum_to(e.grad, p.shape), np.float64)


def test_grad_out_in_the_inputs_own_shape():
    x, y = rand((24, 26), np.float64, 17), rand((3, 24, 26), np.float64, 18)
    gx, gy, m = np.empty(x.shape), np.empty(y.shape), np.empty(y.shape)
    r = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both", grad_out=(gx, gy),
                      map_out=m)
    assert r.grad_x is gx and r.grad_y is gy and r.map is m
    e = fastssim.ssim(*explicit(x, y), data_range=1.0, full=True, gradient="both")
    close(gx, sum_to(e.grad_x, x.shape), np.float64)
    assert np.array_equal(gy, e.grad_y) and np.array_equal(m, e.map)


def test_no_copy_of_the_broadcast_input():
    """Scoring one reference against a stack allocates no broadcast copy of it."""
    ref = rand((256, 256), np.float64, 19)
    stack = rand((64, 256, 256), np.float64, 20)  # a broadcast copy of ref: 32 MiB
    fastssim.ssim(ref, stack[:2], data_range=1.0)   # pooled scratch allocated once
    tracemalloc.start()
    try:
        v = fastssim.ssim(ref, stack, data_range=1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert v.shape == (64,)
    assert peak < stack.nbytes // 8, peak


@pytest.mark.parametrize("xs,ys,msg", [
    ((3, 20, 20), (2, 20, 20), r"x and y must have the same shape, got \(3, 20, 20\) and "
                               r"\(2, 20, 20\): the batch axis -3 has 3 and 2 items"),
    ((1, 20, 20), (2, 20, 19), r"the spatial axis -1 differs \(20 and 19\)"),
    ((2, 20, 20, 3), (2, 20, 20, 1), r"the channel axis -1 differs \(3 and 1\)"),
])
def test_only_batch_axes_broadcast(xs, ys, msg):
    kw = dict(channel_axis=-1) if len(xs) == 4 else {}
    x, y = rand(xs), rand(ys)
    for f in (fastssim.ssim, fastssim.pixelwise_ms_ssim):
        with pytest.raises(ValueError, match=msg):
            f(x, y, data_range=1.0, **kw)
    with pytest.raises(ValueError, match=msg.replace("x and y", "prediction and target")):
        losses.l1(x, y, **kw)


def test_missing_axis_in_the_lower_rank_input_is_named():
    x, y = rand((20, 20)), rand((2, 20, 20))
    with pytest.raises(ValueError, match=r"x has shape \(20, 20\): expected at least 2 spatial "
                                         r"dimensions plus the channel axis"):
        fastssim.ssim(x, y, data_range=1.0, channel_axis=-1)


def test_ms_ssim_broadcast_with_column_strips():
    """Strips turn off the fused downsampling: the first level is then
    downsampled on its own, through the item maps too."""
    from fastssim import _engine
    x, y = rand((180, 170), np.float64, 21), rand((2, 180, 170), np.float64, 22)
    xb, yb = explicit(x, y)
    _engine.set_strip_width(48)
    try:
        r = fastssim.ms_ssim(x, y, data_range=1.0, gradient="both")
        e = fastssim.ms_ssim(xb, yb, data_range=1.0, gradient="both")
        rs = fastssim.ssim(x, y, data_range=1.0, gradient="x")
        es = fastssim.ssim(xb, yb, data_range=1.0, gradient="x")
    finally:
        _engine.set_strip_width(0)
    assert np.array_equal(r.value, e.value)
    close(r.grad_x, sum_to(e.grad_x, x.shape), np.float64)
    close(r.grad_y, e.grad_y, np.float64)
    assert np.array_equal(rs.value, es.value)
    close(rs.grad_x, sum_to(es.grad_x, x.shape), np.float64)
