"""Every ValueError / TypeError the Python layer of ``ssim`` / ``ssim_vjp`` raises, with ``match=``,
and the validation every public entry point shares (the table in entry_points.py).

Reference: the messages in fastssim/_validation.py, _ssim.py and _core.py
(house rule 3: name the argument, show what was received, say what is
expected).  Each case also asserts the exception type.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from entry_points import ENTRY_POINTS
from helpers import pair

import fastssim

X, Y = pair((16, 17), seed=301)
XB, YB = pair((2, 16, 17), seed=302)


def _fake(module, name="ndarray"):
    """An object that claims to come from another array framework (no import needed)."""
    cls = type(name, (), {"__module__": module, "shape": (16, 17), "__array__":
                          lambda self, dtype=None, copy=None: np.zeros((16, 17))})
    return cls()


CASES = [
    # --- the pair
    ("shape", dict(y=Y[:-1]), ValueError,
     "x and y must have the same shape, got (16, 17) and (15, 17)"),
    ("complex-x", dict(x=X.astype(np.complex128)), TypeError,
     "x: expected a real numeric array (bool, integer or float), got dtype complex128"),
    ("complex-y", dict(y=Y.astype(np.complex64)), TypeError,
     "y: expected a real numeric array (bool, integer or float), got dtype complex64"),
    ("object", dict(x=X.astype(object)), TypeError, "x: expected a real numeric array"),
    ("str", dict(x=np.full((16, 17), "a")), TypeError, "x: expected a real numeric array"),
    ("datetime", dict(x=np.zeros((16, 17), "datetime64[s]")), TypeError,
     "x: expected a real numeric array"),
    ("empty", dict(x=np.zeros((0, 16, 17)), y=np.zeros((0, 16, 17))), ValueError,
     "x: expected a non-empty array, got shape (0, 16, 17)"),
    ("empty-spatial", dict(x=np.zeros((16, 0)), y=np.zeros((16, 0))), ValueError,
     "x: expected a non-empty array"),
    ("cupy", dict(x=_fake("cupy._core.core")), TypeError,
     "x: expected a NumPy array, got cupy._core.core.ndarray; fastssim never moves data"),
    ("torch", dict(y=_fake("torch", "Tensor")), TypeError,
     "y: expected a NumPy array, got torch.Tensor"),
    ("jax", dict(x=_fake("jaxlib.xla_extension", "ArrayImpl")), TypeError,
     "x: expected a NumPy array, got jaxlib"),
    ("dask", dict(x=_fake("dask.array.core", "Array")), TypeError,
     "x: expected a NumPy array, got dask.array.core.Array"),
    # --- data_range
    ("range-missing", dict(data_range=None), ValueError,
     "data_range is required for floating-point input"),
    ("range-missing-y-float", dict(x=(X * 255).astype(np.uint8), data_range=None), ValueError,
     "data_range is required for floating-point input"),
    ("range-nan", dict(data_range=float("nan")), ValueError,
     "data_range: expected a positive finite number, got nan"),
    ("range-inf", dict(data_range=np.inf), ValueError,
     "data_range: expected a positive finite number, got inf"),
    ("range-zero", dict(data_range=0), ValueError,
     "data_range: expected a positive finite number, got 0"),
    ("range-negative", dict(data_range=-1.0), ValueError,
     "data_range: expected a positive finite number, got -1.0"),
    ("range-str", dict(data_range="1"), TypeError,
     "data_range: expected a positive finite number, got '1'"),
    ("range-bool", dict(data_range=True), TypeError,
     "data_range: expected a positive finite number, got True"),
    # --- window
    ("window-large", dict(x=X[:10], y=Y[:10]), ValueError,
     "the 11-tap window exceeds the image extent: spatial shape (10, 17)"),
    ("window-large-uniform", dict(x=X[:, :6], y=Y[:, :6], window="uniform"), ValueError,
     "the 7-tap window exceeds the image extent"),
    ("window-large-volume", dict(x=XB, y=YB, spatial_dims=3), ValueError,
     "the 11-tap window exceeds the image extent: spatial shape (2, 16, 17)"),
    # a huge sigma is refused from its tap count, before any window is built
    # (building 2e12 + 1 taps first would exhaust the memory)
    ("window-huge-sigma", dict(sigma=1e12), ValueError,
     "the 7000000000001-tap window exceeds the image extent"),
    ("window-infinite-radius", dict(sigma=1e308), ValueError,
     "sigma: truncate * sigma = 3.5 * 1e+308 has no finite window radius"),
    ("window-large-channels-hint", dict(x=np.zeros((16, 17, 3)), y=np.zeros((16, 17, 3))),
     ValueError, "check channel_axis and spatial_dims"),
    ("even-win", dict(window="uniform", win_size=4), ValueError,
     "win_size: expected an odd positive int, got 4"),
    ("zero-win", dict(window="uniform", win_size=0), ValueError,
     "win_size: expected an odd positive int, got 0"),
    ("negative-win", dict(window="uniform", win_size=-3), ValueError,
     "win_size: expected an odd positive int, got -3"),
    ("float-win", dict(window="uniform", win_size=7.0), TypeError,
     "win_size: expected an odd positive int, got 7.0"),
    ("bool-win", dict(window="uniform", win_size=True), TypeError,
     "win_size: expected an odd positive int, got True"),
    ("win-with-gaussian", dict(win_size=7), ValueError,
     "win_size applies to window='uniform'"),
    ("window-str", dict(window="box"), ValueError,
     "window: expected 'gaussian' or 'uniform', got 'box'"),
    ("sigma-zero", dict(sigma=0.0), ValueError, "sigma: expected a positive finite number, got 0.0"),
    ("sigma-nan", dict(sigma=np.nan), ValueError, "sigma: expected a positive finite number"),
    ("sigma-str", dict(sigma="1.5"), TypeError, "sigma: expected a finite number, got '1.5'"),
    ("truncate", dict(truncate=-1.0), ValueError, "truncate: expected a positive finite number"),
    ("sample-1tap", dict(window="uniform", win_size=1, covariance="sample"), ValueError,
     "covariance='sample' needs a window of more than one sample"),
    # --- constants and options
    ("K1", dict(K1=-0.01), ValueError, "K1: expected a non-negative finite number, got -0.01"),
    ("K2", dict(K2=np.inf), ValueError, "K2: expected a non-negative finite number, got inf"),
    ("K2-type", dict(K2=None), TypeError, "K2: expected a finite number, got None"),
    ("border", dict(border="constant"), ValueError,
     "border: expected 'reflect' or 'valid', got 'constant'"),
    ("covariance", dict(covariance="unbiased"), ValueError,
     "covariance: expected 'population' or 'sample', got 'unbiased'"),
    ("gradient-str", dict(gradient="xy"), ValueError,
     "gradient: expected None, 'x', 'y' or 'both', got 'xy'"),
    ("gradient-bool", dict(gradient=True), ValueError,
     "gradient: expected None, 'x', 'y' or 'both', got True"),
    ("gradient-list", dict(gradient=["x"]), ValueError,
     "gradient: expected None, 'x', 'y' or 'both', got ['x']"),
    # --- axes
    ("channel-float", dict(channel_axis=1.0), TypeError,
     "channel_axis: expected an int or None, got 1.0"),
    ("channel-bool", dict(channel_axis=True), TypeError,
     "channel_axis: expected an int or None, got True"),
    ("channel-high", dict(channel_axis=2), ValueError,
     "channel_axis=2 is out of range for an array with 2 dimensions"),
    ("channel-low", dict(channel_axis=-3), ValueError,
     "channel_axis=-3 is out of range for an array with 2 dimensions"),
    ("channel-no-room", dict(channel_axis=0), ValueError,
     "x has shape (16, 17): expected at least 2 spatial dimensions plus the channel axis"),
    ("1-D", dict(x=X[0], y=Y[0]), ValueError,
     "x has shape (17,): expected at least 2 spatial dimensions; for a single 1-D signal"),
    ("spatial-dims-4", dict(spatial_dims=4), ValueError,
     "spatial_dims: expected 2 (images) or 3 (volumes), got 4"),
    ("spatial-dims-1", dict(spatial_dims=1), ValueError,
     "spatial_dims: expected 2 (images) or 3 (volumes), got 1"),
    ("spatial-dims-3-on-2d", dict(spatial_dims=3), ValueError,
     "x has shape (16, 17): expected at least 3 spatial dimensions"),
    # --- workers
    ("workers-0", dict(workers=0), ValueError, "workers: 0 is not a thread count"),
    ("workers-float", dict(workers=2.0), TypeError, "workers: expected an int or None, got 2.0"),
    ("workers-bool", dict(workers=True), TypeError, "workers: expected an int or None, got True"),
]


def _call(fn, kw):
    kw = dict(kw)
    x = kw.pop("x", X)
    y = kw.pop("y", Y)
    kw.setdefault("data_range", 1.0)
    if fn is fastssim.ssim_vjp:
        kw.pop("gradient", None)
        return fn(x, y, np.zeros((16, 17)), **kw)
    return fn(x, y, **kw)


@pytest.mark.parametrize("kw,exc,msg", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_ssim_errors(kw, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        _call(fastssim.ssim, kw)


VJP_CASES = [c for c in CASES if not c[0].startswith("gradient")]


@pytest.mark.parametrize("kw,exc,msg", [c[1:] for c in VJP_CASES], ids=[c[0] for c in VJP_CASES])
def test_ssim_vjp_shares_validation(kw, exc, msg):
    """ssim_vjp validates its arguments with the same code and messages as ssim."""
    with pytest.raises(exc, match=re.escape(msg)):
        _call(fastssim.ssim_vjp, kw)


# ------------------------------------------------------------- ssim_vjp only

@pytest.mark.parametrize("wrt", [None, "z", "xy", True, ["x"]])
def test_vjp_bad_wrt(wrt):
    with pytest.raises(ValueError, match=re.escape(f"wrt: expected 'x', 'y' or 'both', got {wrt!r}")):
        fastssim.ssim_vjp(X, Y, np.zeros_like(X), wrt=wrt, data_range=1.0)


@pytest.mark.parametrize("border,shape", [("reflect", (6, 7)), ("valid", (16, 17)),
                                          ("reflect", (1, 16, 17))])
def test_vjp_cotangent_wrong_shape(border, shape):
    expect = "(16, 17)" if border == "reflect" else "(6, 7)"
    with pytest.raises(ValueError, match=re.escape(
            f"cotangent: expected the shape of the SSIM map, {expect} (border={border!r}), "
            f"got {shape}")):
        fastssim.ssim_vjp(X, Y, np.zeros(shape), data_range=1.0, border=border)


def test_vjp_cotangent_wrong_shape_channel_axis():
    x, y = pair((16, 17, 3), seed=303)
    with pytest.raises(ValueError, match=re.escape(
            "cotangent: expected the shape of the SSIM map, (6, 7, 3) (border='valid')")):
        fastssim.ssim_vjp(x, y, np.zeros((16, 17, 3)), data_range=1.0, border="valid",
                          channel_axis=-1)


@pytest.mark.parametrize("w", [np.zeros((16, 17), np.complex128), np.full((16, 17), "a"),
                               np.zeros((16, 17), object)])
def test_vjp_cotangent_wrong_dtype(w):
    with pytest.raises(TypeError, match=re.escape(
            f"cotangent: expected a real numeric array (bool, integer or float), got dtype {w.dtype}")):
        fastssim.ssim_vjp(X, Y, w, data_range=1.0)


@pytest.mark.parametrize("module", ["torch", "cupy._core.core", "jaxlib._jax"])
def test_vjp_cotangent_from_another_framework(module):
    with pytest.raises(TypeError, match=re.escape(f"cotangent: expected a NumPy array, got {module}.")):
        fastssim.ssim_vjp(X, Y, _fake(module), data_range=1.0)


def test_vjp_cotangent_list_is_accepted():
    w = np.random.default_rng(0).random((16, 17))
    np.testing.assert_array_equal(fastssim.ssim_vjp(X, Y, w.tolist(), data_range=1.0),
                                  fastssim.ssim_vjp(X, Y, w, data_range=1.0))


# ------------------------------------------------------------- output buffers

def _full(**kw):
    return fastssim.ssim(X, Y, data_range=1.0, full=True, **kw)


def _grad(**kw):
    return fastssim.ssim(X, Y, data_range=1.0, gradient="x", **kw)


@pytest.mark.parametrize("call,name", [(_full, "map_out"), (_grad, "grad_out")])
def test_out_wrong_shape(call, name):
    with pytest.raises(ValueError, match=re.escape(
            f"{name}: expected an array of shape (16, 17) and dtype float64, "
            "got shape (16, 16) and dtype float64")):
        call(**{name: np.empty((16, 16))})


@pytest.mark.parametrize("call,name", [(_full, "map_out"), (_grad, "grad_out")])
def test_out_wrong_dtype(call, name):
    with pytest.raises(ValueError, match=re.escape(
            f"{name}: expected an array of shape (16, 17) and dtype float64, "
            "got shape (16, 17) and dtype float32")):
        call(**{name: np.empty((16, 17), np.float32)})


@pytest.mark.parametrize("call,name", [(_full, "map_out"), (_grad, "grad_out")])
def test_out_non_contiguous(call, name):
    buf = np.empty((16, 34))[:, ::2]
    with pytest.raises(ValueError, match=re.escape(f"{name}: expected a writeable C-contiguous array")):
        call(**{name: buf})
    with pytest.raises(ValueError, match=re.escape(f"{name}: expected a writeable C-contiguous array")):
        call(**{name: np.asfortranarray(np.empty((16, 17)))})


@pytest.mark.parametrize("call,name", [(_full, "map_out"), (_grad, "grad_out")])
def test_out_read_only(call, name):
    buf = np.empty((16, 17))
    buf.setflags(write=False)
    with pytest.raises(ValueError, match=re.escape(f"{name}: expected a writeable C-contiguous array")):
        call(**{name: buf})


@pytest.mark.parametrize("call,name", [(_full, "map_out"), (_grad, "grad_out")])
def test_out_not_an_array(call, name):
    with pytest.raises(TypeError, match=re.escape(f"{name}: expected a NumPy array, got list")):
        call(**{name: np.zeros((16, 17)).tolist()})


def test_out_valid_border_shape():
    with pytest.raises(ValueError, match=re.escape(
            "map_out: expected an array of shape (6, 7) and dtype float64, got shape (16, 17)")):
        _full(border="valid", map_out=np.empty((16, 17)))


def test_out_channel_axis_wrong_shape():
    x, y = pair((16, 17, 3), seed=304)
    with pytest.raises(ValueError, match=re.escape(
            "map_out: expected an array of shape (16, 17, 3) and dtype float64, got shape (3, 16, 17)")):
        fastssim.ssim(x, y, data_range=1.0, full=True, channel_axis=-1,
                      map_out=np.empty((3, 16, 17)))
    with pytest.raises(ValueError, match=re.escape("grad_out: expected an array of shape (16, 17, 3)")):
        fastssim.ssim(x, y, data_range=1.0, gradient="y", channel_axis=-1,
                      grad_out=np.empty((16, 17)))


@pytest.mark.parametrize("bad", [np.empty((16, 17)), (np.empty((16, 17)),), [np.empty((16, 17))] * 3])
def test_grad_out_both_needs_a_pair(bad):
    with pytest.raises(TypeError, match=re.escape(
            "grad_out: expected a pair of arrays (grad_x, grad_y) for gradient='both'")):
        fastssim.ssim(X, Y, data_range=1.0, gradient="both", grad_out=bad)


def test_grad_out_both_checks_each():
    with pytest.raises(ValueError, match=re.escape("grad_out: expected an array of shape (16, 17)")):
        fastssim.ssim(X, Y, data_range=1.0, gradient="both",
                      grad_out=(np.empty((16, 17)), np.empty((17, 16))))


def test_out_buffers_must_not_overlap():
    """A buffer sharing memory with an input or with the other buffer would be
    written while the engine still reads it: refused, naming the argument."""
    x, y = X.copy(), Y.copy()
    with pytest.raises(ValueError, match=re.escape("map_out: the buffer overlaps an input image")):
        fastssim.ssim(x, y, data_range=1.0, full=True, map_out=x)
    g = np.empty_like(x)
    with pytest.raises(ValueError, match=re.escape("grad_out: the buffers overlap each other")):
        fastssim.ssim(x, y, data_range=1.0, gradient="both", grad_out=(g, g))
    with pytest.raises(ValueError, match=re.escape("grad_out: the buffer overlaps an input image")):
        fastssim.ssim(x, y, data_range=1.0, gradient="x", grad_out=y)
    # partial overlap, not only the same array: two views one row apart
    big = np.empty((X.shape[0] + 1, X.shape[1]))
    with pytest.raises(ValueError, match=re.escape("grad_out: the buffers overlap each other")):
        fastssim.ssim(x, y, data_range=1.0, gradient="both", grad_out=(big[:-1], big[1:]))
    np.testing.assert_array_equal(x, X)  # untouched
    np.testing.assert_array_equal(y, Y)


def test_out_buffer_without_its_result():
    with pytest.raises(ValueError, match=re.escape("map_out: a map buffer needs full=True")):
        fastssim.ssim(X, Y, data_range=1.0, map_out=np.empty((16, 17)))
    with pytest.raises(ValueError, match=re.escape("grad_out: a gradient buffer needs gradient=")):
        fastssim.ssim(X, Y, data_range=1.0, grad_out=np.empty((16, 17)))


@pytest.mark.parametrize("kw,msg", [
    (dict(win_size=-3), "win_size: expected a positive odd int, got -3"),
    (dict(win_size=0), "win_size: expected a positive odd int, got 0"),
    (dict(win_size=2.0), "win_size: expected a positive odd int, got 2.0"),
    (dict(gaussian_weights=True, sigma=0),
     "sigma: expected a positive number for gaussian_weights=True, got 0"),
])
def test_drop_in_window_arguments(kw, msg):
    """Used to segfault (win_size=-3: an empty window) or divide by zero."""
    with pytest.raises(ValueError, match=re.escape(msg)):
        fastssim.structural_similarity(X, Y, data_range=1.0, **kw)


def test_sigmas_string_and_huge_workers():
    with pytest.raises(TypeError, match=re.escape("sigmas: expected a sequence of positive numbers, got '248'")):
        fastssim.pixelwise_ms_ssim(X, Y, data_range=1.0, sigmas="248")
    with pytest.raises(ValueError, match=re.escape("workers: expected at most 1024 threads, got 1099511627776")):
        fastssim.ssim(X, Y, data_range=1.0, workers=2 ** 40)


@pytest.mark.parametrize("call,msg", [
    (lambda: fastssim.ms_ssim(X, Y, data_range=1.0, sigma=1e12),
     "7000000000001-tap window exceeds the image extent"),
    (lambda: fastssim.pixelwise_ms_ssim(X, Y, data_range=1.0, sigmas=(1.0, 1e12)),
     "7000000000001-tap window exceeds the image extent"),
    # the drop-in keeps scikit-image's message
    (lambda: fastssim.structural_similarity(X, Y, data_range=1.0, gaussian_weights=True,
                                            sigma=1e12), "win_size exceeds image extent"),
])
def test_huge_sigma_fails_before_building_the_window(call, msg):
    # 2e12 + 1 taps would take 16 TB: the tap count alone must reject it
    with pytest.raises(ValueError, match=msg):
        call()


@pytest.mark.parametrize("args,exc,msg", [
    ((5, -3), ValueError, "taps: expected a positive int, got -3"),
    ((5, 11.0), TypeError, "taps: expected a positive int, got 11.0"),
    ((10 ** 4, 3), ValueError, "scales: expected a positive int of at most 64, got 10000"),
    ((5, 11, "x"), ValueError, "downsample: expected one of"),
])
def test_min_size_errors(args, exc, msg):
    # 10**4 scales used to run for minutes; -3 taps returned -3
    with pytest.raises(exc, match=re.escape(msg)):
        fastssim.min_size(*args)


@pytest.mark.parametrize("kw,msg", [
    (dict(gaussian_weights=True, sigma=float("inf")), "sigma: expected a finite window radius"),
    (dict(gaussian_weights=True, sigma=1e300), "win_size exceeds image extent"),
    (dict(win_size=10 ** 30 + 1), "win_size exceeds image extent"),
])
def test_drop_in_huge_windows(kw, msg):
    # these raised OverflowError (int(inf), a numpy int64 overflow)
    with pytest.raises(ValueError, match=re.escape(msg)):
        fastssim.structural_similarity(X, Y, data_range=1.0, **kw)


def test_huge_box_is_refused_unbuilt():
    # the tap count is checked before uniform_taps builds (and caches) the box
    from fastssim._bands import uniform_taps
    before = uniform_taps.cache_info().currsize
    with pytest.raises(ValueError, match="10000001-tap window exceeds the image extent"):
        fastssim.ssim(X, Y, data_range=1.0, window="uniform", win_size=10 ** 7 + 1)
    assert uniform_taps.cache_info().currsize == before


# ------------------------------------------------- every public entry point

PX, PY = pair((170, 171), seed=305)  # large enough for MS-SSIM's five scales

# (id, what to change, exception, message with {a} / {b} for the images' names); the
# data_range and workers cases apply where the entry point has those arguments
SHARED = [
    ("shape", dict(y=PY[:-1]), ValueError, "{a} and {b} must have the same shape, got (170, 171) and (169, 171)"),
    ("complex-x", dict(x=PX.astype(np.complex128)), TypeError,
     "{a}: expected a real numeric array (bool, integer or float), got dtype complex128"),
    ("complex-y", dict(y=PY.astype(np.complex64)), TypeError,
     "{b}: expected a real numeric array (bool, integer or float), got dtype complex64"),
    ("object", dict(x=PX.astype(object)), TypeError, "{a}: expected a real numeric array"),
    ("empty", dict(x=np.zeros((0, 170, 171)), y=np.zeros((0, 170, 171))), ValueError,
     "{a}: expected a non-empty array, got shape (0, 170, 171)"),
    ("torch", dict(x=_fake("torch", "Tensor")), TypeError, "{a}: expected a NumPy array, got torch.Tensor"),
    ("cupy", dict(y=_fake("cupy._core.core")), TypeError,
     "{b}: expected a NumPy array, got cupy._core.core.ndarray"),
    ("1-D", dict(x=PX[0], y=PY[0]), ValueError, "{a} has shape (171,): expected at least 2 spatial dimensions"),
    ("range-missing", dict(data_range=None), ValueError, None),
    ("range-zero", dict(data_range=0), ValueError, "data_range: expected a positive finite number, got 0"),
    ("workers-0", dict(workers=0), ValueError, "workers: 0 is not a thread count"),
    ("workers-float", dict(workers=2.0), TypeError, "workers: expected an int or None, got 2.0"),
    ("workers-bool", dict(workers=True), TypeError, "workers: expected an int or None, got True"),
    ("workers-huge", dict(workers=2 ** 40), ValueError, "workers: expected at most 1024 threads, got 1099511627776"),
]


def _shared_params():
    out = []
    for ep in ENTRY_POINTS:
        for cid, change, exc, msg in SHARED:
            if cid.startswith("range") and not ep.data_range:
                continue
            if cid.startswith("workers") and not ep.workers:
                continue
            if cid == "1-D" and not ep.plain_1d_message:
                continue  # the drop-ins' own messages, tested in test_drop_in.py / test_msssim.py
            out.append(pytest.param(ep, change, exc, msg, id=f"{ep.name}-{cid}"))
    return out


@pytest.mark.parametrize("ep,change,exc,msg", _shared_params())
def test_every_entry_point_shares_the_validation(ep, change, exc, msg):
    """One validation layer: the same message from every public function and loss,
    with the function's own names for its two images (x/y, im1/im2, prediction/target)."""
    kw = dict(change)
    x, y = kw.pop("x", PX), kw.pop("y", PY)
    if ep.data_range:
        kw.setdefault("data_range", 1.0)
    if msg is None:
        msg = ep.no_range_message
    extra = {}
    if ep.cotangent is not None:
        extra = dict(cotangent=np.zeros((170, 171)))
    with pytest.raises(exc, match=re.escape(msg.format(a=ep.names[0], b=ep.names[1]))):
        ep(x, y, **kw, **extra)
