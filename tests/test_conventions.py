"""Convention presets (issue 17): each preset against the library it names.

References: the peers themselves where they import (scikit-image, pytorch_msssim,
torchmetrics, piq, kornia), and tests/data/conventions_frozen.json, made by
tests/data/make_conventions.py, for all of them (MATLAB through a NumPy
transcription of Wang's ssim.m / msssim.m, TensorFlow 2.21 run once).
Gradients of every preset against central finite differences in float64.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
import types

import numpy as np
import pytest

import fastssim
from fastssim import losses
from conventions_pairs import pair

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "data", "conventions_frozen.json")) as _f:
    FROZEN = json.load(_f)["values"]

# How each peer was called (see the generator): the units of the images and
# the data range fastssim is given besides the preset (None: the preset's own).
UNITS = {
    "matlab": (1.0, None), "matlab-ssim_index": (1.0, None),
    "skimage": (1.0, 255.0), "skimage-gaussian": (1.0, 255.0),
    "tensorflow": (1.0, 255.0), "torchmetrics": (1.0, 255.0),
    "pytorch_msssim": (1.0, None), "piq": (1 / 255.0, None), "kornia": (1 / 255.0, None),
}

# Agreement required with each peer's frozen value.  Peers computing the same
# formula in float64: 1e-10 (measured <= 1e-13).  kornia adds eps = 1e-12 to
# the denominator (measured 7e-9 .. 1.9e-8; without eps, below, 1e-10).
# pytorch_msssim builds its Gaussian taps in float32 (measured <= 8.3e-6 for
# SSIM, 4.3e-6 for MS-SSIM; with a float64 window, below, 1e-10).  TensorFlow
# computes in float32 whatever its input (measured <= 4.7e-6 for SSIM, 1.7e-6
# for MS-SSIM).  A wrong convention moves the value by 1e-5 (MS-SSIM's 'zero'
# instead of 'symmetric' at odd sides, caught by the live pytorch_msssim test
# at 1e-10) to 0.3 (the auto-downsampling); the channel pooling, 1e-4; the
# padding, 2e-3.
TOL = {("kornia", "ssim"): 5e-8, ("pytorch_msssim", "ssim"): 2e-5,
       ("pytorch_msssim", "ms_ssim"): 1e-5, ("tensorflow", "ssim"): 1e-5,
       ("tensorflow", "ms_ssim"): 3e-6}


def _fast(kind, peer, x, y):
    scale, dr = UNITS[peer]
    xf, yf = x.astype(np.float64) * scale, y.astype(np.float64) * scale
    kw = {"convention": peer, "channel_axis": -1 if x.ndim == 3 else None}
    if dr is not None:
        kw["data_range"] = dr
    fn = fastssim.ssim if kind == "ssim" else fastssim.ms_ssim
    return float(fn(xf, yf, **kw))


FROZEN_CASES = [(name, kind, peer) for name in sorted(FROZEN) for kind in ("ssim", "ms_ssim")
                for peer in sorted(FROZEN[name][kind])]


@pytest.mark.parametrize("name,kind,peer", FROZEN_CASES)
def test_frozen_peer_values(name, kind, peer):
    x, y = pair(name)
    got = _fast(kind, peer, x, y)
    want = FROZEN[name][kind][peer]
    assert abs(got - want) <= TOL.get((peer, kind), 1e-10), (got, want)


def test_frozen_values_cover_every_preset():
    """Every preset with an SSIM / MS-SSIM has a frozen reference value
    (cuCIM's are scikit-image's: see the README)."""
    for name, conv in fastssim.conventions.items():
        if name.startswith("cucim"):
            assert dict(conv.ssim) == dict(fastssim.conventions[name.replace("cucim", "skimage")].ssim)
            continue
        for kind in ("ssim", "ms_ssim"):
            if getattr(conv, kind) is not None:
                assert any(peer == name for _, k, peer in FROZEN_CASES if k == kind), (name, kind)


def test_conventions_differ_where_the_peers_do():
    """The frozen peer values themselves disagree by more than the tolerances
    (the test above could not pass with one convention for all)."""
    g = FROZEN["gray"]["ssim"]
    assert abs(g["matlab"] - g["matlab-ssim_index"]) > 0.1       # auto-downsampling
    assert abs(g["torchmetrics"] - g["matlab-ssim_index"]) > 1e-3  # mirror padding
    assert abs(g["skimage"] - g["skimage-gaussian"]) > 1e-3
    c = FROZEN["color"]["ms_ssim"]
    assert abs(c["piq"] - c["pytorch_msssim"]) > 1e-4           # odd-side downsampling
    w = FROZEN["wide"]["ssim"]
    assert abs(w["matlab"] - w["piq"]) > 0.05                    # round(2.5): 3 vs 2


# --------------------------------------------------------------------------- live peers


def _torch():
    return pytest.importorskip("torch")


def _t(a):
    torch = _torch()
    a = np.asarray(a, dtype=np.float64)
    a = a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)
    return torch.from_numpy(np.ascontiguousarray(a))[None]


_PIQ = []


def _piq():
    """piq's ssim functions.  piq/__init__ imports torchvision, which its ssim
    modules do not need: they are imported under a bare stand-in package, which
    is then removed from sys.modules again (an ``import piq`` elsewhere must
    still find the real package, or fail as it would)."""
    _torch()
    if _PIQ:
        return _PIQ
    spec = importlib.util.find_spec("piq")
    if spec is None:
        pytest.skip("piq is not installed")
    saved = {k: v for k, v in sys.modules.items() if k == "piq" or k.startswith("piq.")}
    stub = types.ModuleType("piq")
    stub.__path__ = list(spec.submodule_search_locations)
    sys.modules["piq"] = stub
    try:
        ssim_mod = importlib.import_module("piq.ssim")
        ms_mod = importlib.import_module("piq.ms_ssim")
        _PIQ[:] = [ssim_mod.ssim, ms_mod.multi_scale_ssim]
    finally:
        for k in [k for k in sys.modules if k == "piq" or k.startswith("piq.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    return _PIQ


@pytest.mark.parametrize("name", ["gray", "color"])
def test_live_skimage(name):
    from skimage.metrics import structural_similarity as sk

    x, y = (a.astype(np.float64) for a in pair(name))
    cax = -1 if x.ndim == 3 else None
    for conv, kw in (("skimage", {}), ("skimage-gaussian", {"gaussian_weights": True}),
                     ("cucim", {}), ("cucim-gaussian", {"gaussian_weights": True})):
        want = sk(x, y, data_range=255.0, channel_axis=cax, **kw)
        got = fastssim.ssim(x, y, data_range=255.0, channel_axis=cax, convention=conv)
        assert abs(got - want) <= 1e-10, conv


@pytest.mark.parametrize("name", ["gray", "color"])
def test_live_pytorch_msssim(name):
    pm = pytest.importorskip("pytorch_msssim")
    x, y = pair(name)
    cax = -1 if x.ndim == 3 else None
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    C = 1 if x.ndim == 2 else 3
    # its window formula (_fspecial_gauss_1d) evaluated in float64 instead of float32
    torch = _torch()
    coords = torch.arange(11, dtype=torch.float64) - 5
    k = torch.exp(-(coords ** 2) / (2 * 1.5 ** 2))
    win64 = (k / k.sum()).reshape(1, 1, 1, 11).repeat([C, 1, 1, 1])
    s = pm.ssim(_t(x), _t(y), win=win64).item()
    assert abs(fastssim.ssim(xf, yf, channel_axis=cax, convention="pytorch_msssim") - s) <= 1e-10
    m = pm.ms_ssim(_t(x), _t(y), win=win64).item()
    assert abs(fastssim.ms_ssim(xf, yf, channel_axis=cax, convention="pytorch_msssim") - m) <= 1e-10
    # its default (float32 taps): within that rounding
    assert abs(fastssim.ssim(xf, yf, channel_axis=cax, convention="pytorch_msssim")
               - pm.ssim(_t(x), _t(y)).item()) <= 2e-5


@pytest.mark.parametrize("name", ["gray", "color", "wide"])
def test_live_torchmetrics(name):
    _torch()
    tm = pytest.importorskip("torchmetrics.functional.image")
    x, y = pair(name)
    cax = -1 if x.ndim == 3 else None
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    s = tm.structural_similarity_index_measure(_t(x), _t(y), data_range=255.0).item()
    assert abs(fastssim.ssim(xf, yf, data_range=255.0, channel_axis=cax,
                             convention="torchmetrics") - s) <= 1e-10
    m = tm.multiscale_structural_similarity_index_measure(_t(x), _t(y), data_range=255.0).item()
    assert abs(fastssim.ms_ssim(xf, yf, data_range=255.0, channel_axis=cax,
                                convention="torchmetrics") - m) <= 1e-10
    # normalize='simple' is negative='simple' on top of the preset
    m = tm.multiscale_structural_similarity_index_measure(_t(x), _t(y), data_range=255.0,
                                                          normalize="simple").item()
    assert abs(fastssim.ms_ssim(xf, yf, data_range=255.0, channel_axis=cax,
                                convention="torchmetrics", negative="simple") - m) <= 1e-10


@pytest.mark.parametrize("name", ["gray", "color", "wide"])
def test_live_piq(name):
    pssim, pms = _piq()
    x, y = pair(name)
    cax = -1 if x.ndim == 3 else None
    xf, yf = x / 255.0, y / 255.0
    assert abs(fastssim.ssim(xf, yf, channel_axis=cax, convention="piq")
               - pssim(_t(xf), _t(yf)).item()) <= 1e-10
    assert abs(fastssim.ssim(xf, yf, channel_axis=cax, convention="piq", auto_downsample=None)
               - pssim(_t(xf), _t(yf), downsample=False).item()) <= 1e-10
    assert abs(fastssim.ms_ssim(xf, yf, channel_axis=cax, convention="piq")
               - pms(_t(xf), _t(yf)).item()) <= 1e-10


@pytest.mark.parametrize("name", ["gray", "color"])
def test_live_kornia(name):
    _torch()
    kornia = pytest.importorskip("kornia")
    x, y = pair(name)
    cax = -1 if x.ndim == 3 else None
    xf, yf = x / 255.0, y / 255.0
    got = fastssim.ssim(xf, yf, channel_axis=cax, convention="kornia")
    exact = kornia.metrics.ssim(_t(xf), _t(yf), 11, eps=0.0).mean().item()
    assert abs(got - exact) <= 1e-10
    # kornia's default eps = 1e-12 in the denominator: a measured 1e-8 shift
    default = kornia.metrics.ssim(_t(xf), _t(yf), 11).mean().item()
    assert abs(got - default) <= 5e-8
    # the map too: kornia's same-size map
    m = fastssim.ssim(xf, yf, channel_axis=cax, convention="kornia", full=True).map
    km = kornia.metrics.ssim(_t(xf), _t(yf), 11, eps=0.0)[0].numpy()
    km = km[0] if cax is None else np.moveaxis(km, 0, -1)
    np.testing.assert_allclose(m, km, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- the API


def test_presets_are_inspectable_and_read_only():
    piq = fastssim.conventions["piq"]
    assert piq.ssim["auto_downsample"] == "piq" and piq.ssim["data_range"] == 1.0
    assert piq.ms_ssim["downsample"] == "replicate"
    with pytest.raises(TypeError):
        piq.ssim["data_range"] = 255.0
    with pytest.raises(TypeError):
        fastssim.conventions["mine"] = piq
    assert "auto_downsample='piq'" in repr(piq)
    assert fastssim.conventions["matlab"].ms_ssim["weights"] == fastssim.WANG_WEIGHTS


def test_signatures_show_the_keyword():
    for fn in (fastssim.ssim, fastssim.ms_ssim, losses.ssim, losses.ms_ssim):
        assert inspect.signature(fn).parameters["convention"].default is None
    assert "auto_downsample" in inspect.signature(fastssim.ssim).parameters
    assert "channel_pooling" in inspect.signature(fastssim.ms_ssim).parameters


def _small(shape=(48, 52), seed=3):
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    return x, 0.6 * x + 0.4 * rng.random(shape)


def test_explicit_keywords_override_the_preset():
    x, y = _small()
    # skimage's preset with a 9-tap box: the explicit win_size wins
    a = fastssim.ssim(x, y, data_range=1.0, convention="skimage", win_size=9)
    b = fastssim.ssim(x, y, data_range=1.0, window="uniform", win_size=9, covariance="sample")
    assert a == b
    # pytorch_msssim's data_range=255 replaced by an explicit 1.0
    assert fastssim.ssim(x, y, convention="pytorch_msssim", data_range=1.0) == \
        fastssim.ssim(x, y, data_range=1.0)
    assert fastssim.ssim(x, y, convention="pytorch_msssim") != fastssim.ssim(x, y, data_range=1.0)
    # the added options switch off like the others
    assert fastssim.ssim(x, y, convention="kornia", pad=None) == fastssim.ssim(x, y, data_range=1.0)


def test_errors():
    x, y = _small()
    with pytest.raises(ValueError, match="convention: expected None or one of"):
        fastssim.ssim(x, y, data_range=1.0, convention="matlab2")
    with pytest.raises(ValueError, match="has no MS-SSIM"):
        fastssim.ms_ssim(x, y, data_range=1.0, convention="skimage")
    with pytest.raises(ValueError, match="pad: expected one of"):
        fastssim.ssim(x, y, data_range=1.0, pad="reflect")
    with pytest.raises(ValueError, match="auto_downsample: expected one of"):
        fastssim.ssim(x, y, data_range=1.0, auto_downsample=2)
    with pytest.raises(ValueError, match="channel_pooling: expected one of"):
        fastssim.ms_ssim(x, y, data_range=1.0, channel_pooling="mean")
    with pytest.raises(ValueError, match="map_out: output buffers cannot be used"):
        fastssim.ssim(x, y, data_range=1.0, pad="mirror", full=True, map_out=np.empty_like(x))
    with pytest.raises(ValueError, match="pad=.mirror.: a side of 2 px"):
        fastssim.ssim(x[:2], y[:2], data_range=1.0, pad="mirror", window="uniform", win_size=5,
                      border="valid")
    with pytest.raises(ValueError, match="data_range is required"):
        fastssim.ssim(x, y, pad="mirror")
    a, b = _small((181, 187))
    with pytest.raises(ValueError, match="x and y must have the same shape with channel_pooling"):
        fastssim.ms_ssim(a, np.stack([b, b]), data_range=1.0, convention="torchmetrics")
    with pytest.raises(ValueError, match="fit_scales: not supported with channel_pooling"):
        fastssim.ms_ssim(a, b, data_range=1.0, convention="torchmetrics", fit_scales=True)
    with pytest.raises(TypeError, match="options are keyword-only"):
        fastssim.ssim(x, y, 1.0, pad="mirror")


def test_inputs_untouched_and_integer_data_range():
    a, b = pair("gray")
    a0, b0 = a.copy(), b.copy()
    v = fastssim.ssim(a, b, convention="matlab", data_range=None)  # uint8: 255 from the dtype
    assert v == fastssim.ssim(a.astype(np.float64), b.astype(np.float64), convention="matlab")
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_auto_downsample_factor_rounding():
    """min side 640: MATLAB's round(2.5) = 3, Python's (piq) = 2; 383 px: 1 (no resampling)."""
    from fastssim._conventions import _factor

    assert _factor("matlab", (640, 700)) == 3 and _factor("piq", (640, 700)) == 2
    assert _factor("matlab", (383, 900)) == 1 and _factor("matlab", (384, 900)) == 2
    x, y = _small((383, 390))
    assert fastssim.ssim(x, y, convention="matlab", data_range=1.0) == \
        fastssim.ssim(x, y, data_range=1.0)


def test_float32_stays_float32():
    x, y = (a.astype(np.float32) for a in _small((400, 404)))
    r = fastssim.ssim(x, y, convention="piq", gradient="x", full=True)
    assert r.grad_x.dtype == np.float32 and r.grad_x.shape == x.shape
    assert r.map.dtype == np.float32 and r.map.shape == (200, 202)
    r64 = fastssim.ssim(x.astype(np.float64), y.astype(np.float64), convention="piq")
    assert abs(r.value - r64) <= 1e-5  # float32 rounding


def test_batch_and_channels():
    """A batch of presets' values equals the values one by one (the resampling
    keeps the batch and channel axes apart)."""
    rng = np.random.default_rng(5)
    x = rng.random((2, 181, 187, 3))
    y = 0.7 * x + 0.3 * rng.random(x.shape)
    for conv in ("torchmetrics", "piq", "matlab-ssim_index"):
        v = fastssim.ms_ssim(x, y, data_range=1.0, channel_axis=-1, convention=conv)
        for i in range(2):
            assert abs(v[i] - fastssim.ms_ssim(x[i], y[i], data_range=1.0, channel_axis=-1,
                                               convention=conv)) <= 1e-14
    x = rng.random((2, 3, 400, 390))
    y = 0.7 * x + 0.3 * rng.random(x.shape)
    v = fastssim.ssim(x, y, data_range=1.0, channel_axis=1, convention="matlab")
    for i in range(2):
        assert abs(v[i] - fastssim.ssim(np.moveaxis(x[i], 0, -1), np.moveaxis(y[i], 0, -1),
                                        data_range=1.0, channel_axis=-1,
                                        convention="matlab")) <= 1e-14


def test_losses_follow_the_preset():
    x, y = _small((181, 187))
    for conv in ("kornia", "matlab-ssim_index", "torchmetrics"):
        r = losses.ssim(x, y, data_range=1.0, convention=conv, gradient=True, full=True)
        s = fastssim.ssim(x, y, data_range=1.0, convention=conv, gradient="x", full=True)
        assert r.value == 1.0 - s.value
        np.testing.assert_array_equal(r.grad, -s.grad_x)
        np.testing.assert_array_equal(r.map, 1.0 - s.map)
    for conv in ("torchmetrics", "piq"):
        r = losses.ms_ssim(x, y, data_range=1.0, convention=conv, gradient=True)
        s = fastssim.ms_ssim(x, y, data_range=1.0, convention=conv, gradient="x")
        assert r.value == 1.0 - s.value
        np.testing.assert_array_equal(r.grad, -s.grad_x)
    # the loss keeps the preset's data range unless given (piq: 1.0)
    assert losses.ssim(x, y, convention="piq") == 1.0 - fastssim.ssim(x, y, convention="piq")


# --------------------------------------------------------------------------- gradients


def _probe(shape):
    """Pixels to check: the four corners, edge midpoints, the pixels next to
    them and a few interior ones (the adjoint of a padding or a box filter
    lives at the borders)."""
    H, W = shape[:2]
    pts = [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1), (0, W // 2), (H - 1, W // 2),
           (H // 2, 0), (H // 2, W - 1), (1, 1), (2, W - 2), (H - 2, 3), (H // 2, W // 2),
           (H // 3, 2 * W // 3)]
    return pts


def _check_grad(value, grad, x, h=1e-5, channel=None):
    """Central differences of ``value`` at the probe pixels against ``grad``:
    within 1e-5 of max|grad| (FD rounding with h = 1e-5 on a value whose
    per-pixel gradient is ~1/N: measured <= 2e-7; a missed border fold or a
    dropped adjoint is O(1))."""
    scale = np.abs(grad).max()
    assert scale > 0
    for p in _probe(x.shape):
        idx = p if channel is None else p + (channel,)
        a = x.copy()
        a[idx] += h
        vp = value(a)
        a[idx] -= 2 * h
        vm = value(a)
        fd = (vp - vm) / (2 * h)
        assert abs(fd - grad[idx]) <= 1e-5 * scale, (idx, fd, grad[idx])


SSIM_PRESETS = [n for n, c in fastssim.conventions.items() if c.ssim is not None]
MS_PRESETS = [n for n, c in fastssim.conventions.items() if c.ms_ssim is not None]


@pytest.mark.parametrize("conv", SSIM_PRESETS)
def test_ssim_preset_gradient(conv):
    # 400 x 392: the auto-downsampling presets resample by 2 (MATLAB, piq)
    x, y = _small((400, 392), seed=11)
    r = fastssim.ssim(x, y, data_range=1.0, convention=conv, gradient="both")
    _check_grad(lambda a: fastssim.ssim(a, y, data_range=1.0, convention=conv), r.grad_x, x)
    _check_grad(lambda b: fastssim.ssim(x, b, data_range=1.0, convention=conv), r.grad_y, y)


def test_matlab_factor_3_gradient():
    x, y = _small((641, 650), seed=12)  # f = 3: a 3 x 3 box centred on the kept sample
    r = fastssim.ssim(x, y, data_range=1.0, convention="matlab", gradient="x")
    _check_grad(lambda a: fastssim.ssim(a, y, data_range=1.0, convention="matlab"), r.grad_x, x)


@pytest.mark.parametrize("conv", MS_PRESETS)
def test_ms_ssim_preset_gradient(conv):
    # odd sides: every downsampling convention has its irregular edge here
    x, y = _small((181, 187), seed=13)
    r = fastssim.ms_ssim(x, y, data_range=1.0, convention=conv, gradient="both")
    _check_grad(lambda a: fastssim.ms_ssim(a, y, data_range=1.0, convention=conv), r.grad_x, x)
    _check_grad(lambda b: fastssim.ms_ssim(x, b, data_range=1.0, convention=conv), r.grad_y, y)


@pytest.mark.parametrize("pooling", ["before", "after"])
def test_torchmetrics_color_gradient(pooling):
    """Channels pooled before the power (torchmetrics) or after, with the
    mirror-padded last scale: the gradient of every channel."""
    rng = np.random.default_rng(14)
    x = rng.random((181, 183, 3))
    y = 0.6 * x + 0.4 * rng.random(x.shape)
    kw = dict(data_range=1.0, channel_axis=-1, convention="torchmetrics", channel_pooling=pooling)
    r = fastssim.ms_ssim(x, y, gradient="x", **kw)
    for c in range(3):
        _check_grad(lambda a: fastssim.ms_ssim(a, y, **kw), r.grad_x, x, channel=c)
