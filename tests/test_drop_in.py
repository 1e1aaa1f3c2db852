"""``fastssim.structural_similarity`` behaves as scikit-image 0.26's: errors, warnings, returns.

Reference: ``skimage.metrics.structural_similarity`` itself — every case
calls both functions and asserts the same exception type and message (or the
same warning), so a change on either side shows up here.
"""

from __future__ import annotations

import inspect
import re
import warnings

import numpy as np
import pytest

from helpers import pair

import fastssim

skm = pytest.importorskip("skimage.metrics")
sk_ssim = skm.structural_similarity
ours = fastssim.structural_similarity

X, Y = pair((16, 17), seed=201)
X3, Y3 = pair((16, 17, 3), seed=202)

ERROR_CASES = [
    ("shapes", (X, Y[:-1]), dict(data_range=1.0), "Input images must have the same dimensions."),
    ("K1", (X, Y), dict(data_range=1.0, K1=-0.01), "K1 must be positive"),
    ("K2", (X, Y), dict(data_range=1.0, K2=-0.03), "K2 must be positive"),
    ("sigma", (X, Y), dict(data_range=1.0, sigma=-1.0), "sigma must be positive"),
    ("too-small", (X[:6, :6], Y[:6, :6]), dict(data_range=1.0), "win_size exceeds image extent"),
    ("too-small-gauss", (X[:9], Y[:9]), dict(data_range=1.0, gaussian_weights=True),
     "win_size exceeds image extent"),
    ("color-without-axis", (X3[:5, :5], Y3[:5, :5]), dict(data_range=1.0, win_size=5),
     "set channel_axis to the axis number"),
    ("even", (X, Y), dict(data_range=1.0, win_size=4), "Window size must be odd."),
    ("float-no-range", (X, Y), dict(), "Since image dtype is floating point, you must specify "
                                       "the data_range parameter"),
    ("float-im2-no-range", (X.astype(np.uint8), Y), dict(),
     "Since image dtype is floating point, you must specify the data_range parameter"),
    ("channel-too-small", (X3[:6], Y3[:6]), dict(data_range=1.0, channel_axis=-1),
     "win_size exceeds image extent"),
]


@pytest.mark.parametrize("args,kw,msg", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_errors_match_skimage(args, kw, msg):
    with pytest.raises(ValueError, match=re.escape(msg)) as e_sk:
        sk_ssim(*args, **kw)
    with pytest.raises(ValueError, match=re.escape(msg)) as e:
        ours(*args, **kw)
    # scikit-image's whole message first (its own tests match on it), then the
    # argument's value or the shapes seen (issue 11: messages that name nothing)
    assert str(e.value).startswith(str(e_sk.value))
    assert len(str(e.value)) > len(str(e_sk.value))


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.int32, np.int8])
def test_warns_for_non_uint8_integers(dtype):
    x, y = pair((16, 17), dtype=dtype, seed=203)
    span = float(np.iinfo(dtype).max) - float(np.iinfo(dtype).min)
    msg = f"Setting data_range based on im1.dtype. data_range = {span:.0f}. Please specify"
    with pytest.warns(UserWarning, match=re.escape(msg)) as w_sk:
        sk_ssim(x, y)
    with pytest.warns(UserWarning, match=re.escape(msg)) as w:
        ours(x, y)
    assert [str(m.message) for m in w] == [str(m.message) for m in w_sk]


def test_warns_for_mismatched_dtypes():
    x, _ = pair((16, 17), dtype=np.uint8, seed=204)
    _, y = pair((16, 17), dtype=np.int16, seed=204)
    msg = "Inputs have mismatched dtypes. Setting data_range based on im1.dtype."
    with pytest.warns(UserWarning, match=re.escape(msg)) as w_sk:
        m_sk = sk_ssim(x, y)
    with pytest.warns(UserWarning, match=re.escape(msg)) as w:
        m = ours(x, y)
    assert [str(m_.message) for m_ in w] == [str(m_.message) for m_ in w_sk]
    np.testing.assert_allclose(m, m_sk, rtol=1e-12)  # data_range 255 from im1


def test_warning_points_at_caller():
    """stacklevel=2 as scikit-image: the warning names the caller's file."""
    x, y = pair((16, 17), dtype=np.uint16, seed=205)
    with pytest.warns(UserWarning) as w:
        ours(x, y)
    assert w[0].filename == __file__


@pytest.mark.parametrize("dtype", [np.uint8, np.bool_])
def test_no_warning_for_uint8_bool_or_explicit_range(dtype):
    x, y = pair((16, 17), dtype=dtype, seed=206)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours(x, y)
        ours(x.astype(np.int16), y.astype(np.int16), data_range=255)


def test_signature_matches_skimage_plus_workers():
    p = inspect.signature(ours).parameters
    for name in ("win_size", "gradient", "data_range", "channel_axis", "gaussian_weights", "full"):
        assert p[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert p[name].default == inspect.signature(sk_ssim).parameters[name].default
    assert p["K1"].default == 0.01 and p["K2"].default == 0.03 and p["sigma"].default == 1.5
    assert p["use_sample_covariance"].default is True and p["workers"].default is None
    with pytest.raises(TypeError):
        ours(X, Y, 7)  # win_size is keyword-only, as in scikit-image


@pytest.mark.parametrize("full,gradient,n", [(False, False, 1), (True, False, 2),
                                             (False, True, 2), (True, True, 3)])
@pytest.mark.parametrize("axis", [None, -1])
def test_return_structure(full, gradient, n, axis):
    x, y = (X3, Y3) if axis is not None else (X, Y)
    r_sk = sk_ssim(x, y, data_range=1.0, full=full, gradient=gradient, channel_axis=axis)
    r = ours(x, y, data_range=1.0, full=full, gradient=gradient, channel_axis=axis)
    if n == 1:
        assert np.ndim(r) == 0 and type(r) is type(r_sk)
        return
    assert isinstance(r, tuple) and len(r) == len(r_sk) == n
    for a, b in zip(r[1:], r_sk[1:]):
        assert a.shape == b.shape and a.dtype == b.dtype


def test_fastssim_only_type_errors():
    """Where scikit-image fails obscurely or with a ValueError, fastssim raises a TypeError
    naming the argument (complex: scikit-image says 'complex valued input is not supported')."""
    c = X.astype(np.complex128)
    with pytest.raises(TypeError, match="im1: expected a real numeric array"):
        ours(c, c, data_range=1.0)
    with pytest.raises(TypeError, match="im2: expected a real numeric array"):
        ours(X, X.astype(object), data_range=1.0)
    with pytest.raises(ValueError, match=re.escape("im1 and im2 must have the same shape")):
        ours(X.tolist(), Y[:-1].tolist(), data_range=1.0)
    with pytest.raises(ValueError, match="channel_axis=3 is out of range"):
        ours(X3, Y3, data_range=1.0, channel_axis=3)
    with pytest.raises(TypeError, match="channel_axis: expected an int or None"):
        ours(X3, Y3, data_range=1.0, channel_axis=1.0)
    with pytest.raises(ValueError, match="im1: expected a non-empty array"):
        ours(X[:0], Y[:0], data_range=1.0)
    with pytest.raises(TypeError, match="workers: expected an int or None"):
        ours(X, Y, data_range=1.0, workers="2")
    with pytest.raises(ValueError, match="workers: 0 is not a thread count"):
        ours(X, Y, data_range=1.0, workers=0)


def test_list_inputs_accepted():
    r = ours(X.tolist(), Y.tolist(), data_range=1.0)
    np.testing.assert_allclose(r, ours(X, Y, data_range=1.0), rtol=1e-14)
