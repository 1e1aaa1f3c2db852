"""Input handling: never modified (every entry point), any memory layout, NaN/Inf policy,
caller-provided outputs.

References: a copy of each input (unchanged after every call), and the result
for the C-contiguous, native-endian, writeable version of the same data —
the layout only changes how the Python layer copies the data into planes,
so results agree to rounding (rtol 1e-13; a bug such as reading a strided
array as contiguous gives O(1) differences).
"""

from __future__ import annotations

import numpy as np
import pytest

from entry_points import entry_params
from helpers import pair

import fastssim

CLOSE = dict(rtol=1e-13, atol=1e-15)


def _all_calls(x, y, **kw):
    """Every public entry point with every output requested."""
    out = [fastssim.ssim(x, y, full=True, gradient="both", **kw)]
    out.append(fastssim.ssim(x, y, full=True, gradient="both", border="valid", **kw))
    w = np.ones(np.shape(x))
    out.append(fastssim.ssim_vjp(x, y, w, wrt="both", **kw))
    if np.ndim(x) in (2, 3) and "channel_axis" not in kw:
        out.append(fastssim.structural_similarity(x, y, gradient=True, full=True, **kw))
    return out


def _views(shape, dtype, seed):
    """A pair in ``dtype`` as read-only, non-contiguous views (every other item of
    a twice-as-long first axis), with copies to compare against afterwards."""
    xb, yb = pair((2 * shape[0],) + tuple(shape[1:]), dtype=dtype, seed=seed)
    x, y = xb[::2], yb[1::2]
    assert not x.flags.c_contiguous and not y.flags.c_contiguous
    x0, y0 = x.copy(), y.copy()
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y, x0, y0


def _arrays(result):
    """Every array in a (nested) result."""
    if isinstance(result, (tuple, list)):
        return [a for r in result for a in _arrays(r)]
    return [result] if isinstance(result, np.ndarray) else []


@pytest.mark.parametrize("ep,case,dtype", entry_params("safe", "safe_dtypes"))
def test_inputs_never_modified(ep, case, dtype):
    """Every entry point (entry_points.py), every output requested: its inputs, read-only
    non-contiguous views, and its cotangent keep their values; no result aliases an
    input; the same array passed as both images is not modified either.  Reference: a
    copy of each input taken before the calls."""
    shape, kw = case
    x, y, x0, y0 = _views(shape, dtype, seed=401)
    kw = ep.kwargs(dtype, kw)
    extra = {}
    if ep.cotangent is not None:
        w = ep.make_cotangent(x, y, dtype, seed=0, **kw)
        w0 = w.copy()
        w.flags.writeable = False
        extra = dict(cotangent=w)
    r = ep(x, y, **kw, **extra)
    ep(x, x, **kw, **extra)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    if extra:
        np.testing.assert_array_equal(w, w0)
    outs = _arrays(r)
    assert outs, "the call returned no array"
    for out in outs:
        assert not np.shares_memory(out, x) and not np.shares_memory(out, y)


def test_self_pair_not_modified():
    """The same array passed as x and y (aliasing) is neither modified nor mis-read."""
    x, _ = pair((20, 21), seed=402)
    xc = x.copy()
    r = fastssim.ssim(x, x, data_range=1.0, full=True, gradient="both")
    np.testing.assert_array_equal(x, xc)
    np.testing.assert_allclose(r.value, 1.0, atol=1e-12)


def _layouts(a):
    """The same values in other layouts."""
    big = np.zeros((a.shape[0] * 2, a.shape[1] * 3) + a.shape[2:], dtype=a.dtype)
    big[::2, ::3] = a
    ro = a.copy()
    ro.setflags(write=False)
    yield "strided", big[::2, ::3]
    yield "fortran", np.asfortranarray(a)
    yield "reversed", a[::-1, ::-1].copy()[::-1, ::-1]
    yield "read-only", ro
    yield "swapped-endian", a.astype(a.dtype.newbyteorder()) if a.dtype.itemsize > 1 else a
    tv = a.T.copy().T  # transposed view of a contiguous array
    yield "transposed-view", tv


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint16])
def test_layouts_give_the_same_result(dtype):
    x, y = pair((20, 21), dtype=dtype, seed=403)
    kw = dict(data_range=1.0)
    ref = _all_calls(x, y, **kw)
    for (name, xl), (_, yl) in zip(_layouts(x), _layouts(y)):
        assert np.array_equal(xl, x)
        got = _all_calls(xl, yl, **kw)
        for a, b in zip(got, ref):
            for u, v in zip(a, b):
                if u is not None:
                    np.testing.assert_allclose(u, v, **CLOSE, err_msg=name)
        assert xl.flags.writeable == (name != "read-only")


def test_big_endian_explicit():
    x, y = pair((20, 21), seed=404)
    r = fastssim.ssim(x.astype(">f8"), y.astype(">f8"), data_range=1.0, full=True,
                      gradient="y")
    ref = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="y")
    np.testing.assert_allclose(r.value, ref.value, **CLOSE)
    np.testing.assert_allclose(r.map, ref.map, **CLOSE)
    np.testing.assert_allclose(r.grad_y, ref.grad_y, **CLOSE)
    assert r.map.dtype.isnative and r.grad_y.dtype.isnative
    r32 = fastssim.ssim(x.astype(">f4"), y.astype(">f4"), data_range=1.0, full=True)
    assert r32.map.dtype == np.float32 and r32.map.dtype.isnative


def test_channel_axis_non_contiguous():
    x, y = pair((20, 21, 3), seed=405)
    ref = fastssim.ssim(x, y, data_range=1.0, channel_axis=-1, full=True, gradient="both")
    xf, yf = np.asfortranarray(x), np.asfortranarray(y)
    r = fastssim.ssim(xf, yf, data_range=1.0, channel_axis=-1, full=True, gradient="both")
    for u, v in zip(r, ref):
        np.testing.assert_allclose(u, v, **CLOSE)


def test_list_inputs():
    x, y = pair((20, 21), seed=406)
    np.testing.assert_allclose(fastssim.ssim(x.tolist(), y.tolist(), data_range=1.0),
                               fastssim.ssim(x, y, data_range=1.0), **CLOSE)


# ---------------------------------------------------------------- NaN / Inf

NAN_WINDOWS = [dict(), dict(window="uniform", win_size=7), dict(window="uniform", win_size=3)]


def _nan_case(kw, bad):
    x, y = pair((40, 50), seed=407)
    i, j = 20, 25
    xb = x.copy()
    xb[i, j] = bad
    r = fastssim.ssim(xb, y, data_range=1.0, full=True, gradient="both", **kw)
    ref = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both", **kw)
    rad = (kw.get("win_size", 11) - 1) // 2
    ii, jj = np.indices(x.shape)
    dist = np.maximum(abs(ii - i), abs(jj - j))  # Chebyshev distance to the bad pixel
    return r, ref, rad, dist


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kw", NAN_WINDOWS)
def test_nan_inf_propagate_to_windows_that_contain_them(kw, bad):
    """Policy (documented in ``ssim``'s Notes): NaN and Inf are not checked for; they propagate.

    The value is NaN; every map value whose window touches the bad pixel is
    NaN and every other map value is unaffected (equal to the result with a
    finite value there).  The gradient is non-finite within 2r of the pixel
    (where the adjoint reads NaN map values) and unaffected far from it — no
    running sum carries the NaN along the row or down the image.  Nothing
    raises or hangs.
    """
    r, ref, rad, dist = _nan_case(kw, bad)
    near, far = dist <= rad, dist > 4 * rad
    assert np.isnan(r.value)
    assert np.isnan(r.map[near]).all()
    np.testing.assert_allclose(r.map[~near], ref.map[~near], **CLOSE)
    for g, gref in ((r.grad_x, ref.grad_x), (r.grad_y, ref.grad_y)):
        assert not np.isfinite(g[dist <= 2 * rad]).any()
        np.testing.assert_allclose(g[far], gref[far], rtol=1e-12, atol=1e-18)


@pytest.mark.parametrize("kw", NAN_WINDOWS)
def test_nan_gradient_confined_to_2r(kw):
    """The gradient at pixel q reads map values within r of q, which read inputs within r:
    it can only depend on the bad pixel within Chebyshev distance 2r."""
    r, ref, rad, dist = _nan_case(kw, np.nan)
    out = dist > 2 * rad
    for g, gref in ((r.grad_x, ref.grad_x), (r.grad_y, ref.grad_y)):
        assert np.isfinite(g[out]).all()
        np.testing.assert_allclose(g[out], gref[out], rtol=1e-12, atol=1e-18)


def test_nan_in_one_batch_item_stays_there():
    x, y = pair((3, 20, 21), seed=408)
    x[1, 3, 4] = np.nan
    v = fastssim.ssim(x, y, data_range=1.0)
    assert np.isnan(v[1]) and np.isfinite(v[[0, 2]]).all()
    np.testing.assert_allclose(v[[0, 2]], fastssim.ssim(x[[0, 2]], y[[0, 2]], data_range=1.0),
                               **CLOSE)


def test_nan_dropin():
    x, y = pair((20, 21), seed=409)
    x[0, 0] = np.nan
    m, S = fastssim.structural_similarity(x, y, data_range=1.0, full=True)
    assert np.isnan(m) and np.isnan(S[0, 0]) and np.isfinite(S[10:, 10:]).all()


# ---------------------------------------------------------------- outputs

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_map_out_and_grad_out_are_filled_and_returned(border, dtype):
    x, y = pair((2, 20, 21), dtype=dtype, seed=410)
    ref = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both", border=border)
    mo = np.full(ref.map.shape, -7.0, dtype=dtype)
    gx = np.full(x.shape, -7.0, dtype=dtype)
    gy = np.full(x.shape, -7.0, dtype=dtype)
    r = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both", border=border,
                      map_out=mo, grad_out=(gx, gy))
    assert r.map is mo and r.grad_x is gx and r.grad_y is gy
    np.testing.assert_allclose(mo, ref.map, **CLOSE)
    np.testing.assert_allclose(gx, ref.grad_x, **CLOSE)
    np.testing.assert_allclose(gy, ref.grad_y, **CLOSE)
    np.testing.assert_allclose(r.value, ref.value, **CLOSE)


@pytest.mark.parametrize("gradient", ["x", "y"])
def test_grad_out_single(gradient):
    x, y = pair((20, 21), seed=411)
    buf = np.zeros_like(x)
    r = fastssim.ssim(x, y, data_range=1.0, gradient=gradient, grad_out=buf)
    ref = fastssim.ssim(x, y, data_range=1.0, gradient=gradient)
    got = r.grad_x if gradient == "x" else r.grad_y
    assert got is buf
    np.testing.assert_allclose(buf, ref.grad_x if gradient == "x" else ref.grad_y, **CLOSE)


def test_outputs_with_channel_axis():
    """With a channel axis the buffers are in the caller's layout (channel axis in place)."""
    x, y = pair((20, 21, 3), seed=412)
    ref = fastssim.ssim(x, y, data_range=1.0, channel_axis=-1, full=True, gradient="both")
    mo, gx, gy = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    r = fastssim.ssim(x, y, data_range=1.0, channel_axis=-1, full=True, gradient="both",
                      map_out=mo, grad_out=[gx, gy])
    assert r.map is mo and r.grad_x is gx and r.grad_y is gy
    for u, v in zip((mo, gx, gy), ref[1:]):
        np.testing.assert_allclose(u, v, **CLOSE)
