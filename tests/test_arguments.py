"""Every argument checked by name, no hang, no stray exception type (issue 11).

The rule: a call returns a result, or raises a ValueError/TypeError that names
the argument and shows what was received.  References: the expected messages
(written here, not produced by the library), scikit-image for the drop-in's
values, and the library's own result with an equivalent explicit argument
(an integer image with its dtype's range passed by hand, say).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import pair

import fastssim
from fastssim import losses
from fastssim._validation import dtype_limits, dtype_range, resolve_workers

X, Y = pair((60, 61), seed=301)
BIG, BIG2 = pair((170, 165), seed=302)
S = fastssim.structural_similarity


def all_calls(**kw):
    """One call of every public function with ``kw`` (big images for the pyramid)."""
    w = np.ones(X.shape) / X.size
    return [
        ("ssim", lambda: fastssim.ssim(X, Y, **kw)),
        ("ssim_vjp", lambda: fastssim.ssim_vjp(X, Y, w, **kw)),
        ("ms_ssim", lambda: fastssim.ms_ssim(BIG, BIG2, **kw)),
        ("pixelwise", lambda: fastssim.pixelwise_ms_ssim(X, Y, **kw)),
        ("pixelwise_vjp", lambda: fastssim.pixelwise_ms_ssim_vjp(X, Y, w, **kw)),
        ("multiscale", lambda: fastssim.multiscale_structural_similarity(BIG, BIG2, **kw)),
        ("loss-ssim", lambda: losses.ssim(X, Y, **kw)),
        ("loss-ms_ssim", lambda: losses.ms_ssim(BIG, BIG2, **kw)),
        ("loss-pixelwise", lambda: losses.pixelwise_ms_ssim(X, Y, **kw)),
        ("mix", lambda: losses.mix(X, Y, **kw)),
    ]


# --- hangs: sizes are checked on Python ints, before anything is built ------

def test_min_size_with_numpy_ints():
    # np.int64 taps overflowed in the doubling loop and never returned
    assert fastssim.min_size(64, np.int64(11)) == fastssim.min_size(64, 11)
    assert fastssim.min_size(np.int32(5), np.uint8(11), "drop", np.int64(2)) == 176
    assert isinstance(fastssim.min_size(64, np.int64(11)), int)
    # the value by hand: (T - 1) 2^(M-1) + 1 for 'symmetric'
    assert fastssim.min_size(64, np.int64(11)) == 10 * 2 ** 63 + 1


def test_drop_in_huge_gaussian_with_explicit_win_size_is_refused_unbuilt():
    # sigma=1e6, win_size=11 built a 7-million-tap window for minutes first
    from fastssim._bands import gaussian_taps
    before = gaussian_taps.cache_info().currsize
    with pytest.raises(ValueError, match=re.escape(
            "sigma: the Gaussian window of sigma=1000000.0 has 7000001 taps")):
        S(X, Y, data_range=1.0, gaussian_weights=True, sigma=1e6, win_size=11)
    assert gaussian_taps.cache_info().currsize == before


def test_drop_in_gaussian_wider_than_the_image_still_matches_skimage():
    # a window that reflects (29 taps on 10 px) is what scikit-image computes too
    skm = pytest.importorskip("skimage.metrics")
    x, y = pair((10, 10), seed=303)
    kw = dict(data_range=1.0, gaussian_weights=True, sigma=4.0, win_size=7, full=True)
    m, s = S(x, y, **kw)
    m_sk, s_sk = skm.structural_similarity(x, y, **kw)
    np.testing.assert_allclose(m, m_sk, rtol=0, atol=1e-13)
    np.testing.assert_allclose(s, s_sk, rtol=0, atol=1e-13)


# --- OverflowError / ZeroDivisionError -> named ValueError ------------------

@pytest.mark.parametrize("kw,names", [
    (dict(data_range=1e200), "K1, data_range: the constant (K1 * data_range)**2 = (0.01 * 1e+200)**2 overflows"),
    (dict(data_range=1.0, K1=1e200), "K1, data_range: the constant (K1 * data_range)**2 = (1e+200 * 1.0)**2 overflows"),
    (dict(data_range=1.0, K2=1e200), "K2, data_range: the constant (K2 * data_range)**2 = (1e+200 * 1.0)**2 overflows"),
])
def test_overflowing_constants(kw, names):
    for fname, call in all_calls(**kw):
        with pytest.raises(ValueError, match=re.escape(names)):
            call()
    with pytest.raises(ValueError, match=re.escape(names)):
        S(X, Y, **kw)


def test_tiny_sigma_is_a_one_tap_window():
    # sigma=1e-320: 1/sigma^2 divided by zero; any sigma < 1/7 has radius 0
    from fastssim._bands import gaussian_taps
    assert gaussian_taps(1e-320, 3.5) == (1.0,)
    a = fastssim.ssim(X, Y, data_range=1.0, sigma=1e-320)
    b = fastssim.ssim(X, Y, data_range=1.0, sigma=0.1)
    assert a == b
    # the one-sample SSIM by hand: (2xy + C1) C2 / ((x^2 + y^2 + C1) C2), every pixel
    C1 = 1e-4
    np.testing.assert_allclose(a, np.mean((2 * X * Y + C1) / (X**2 + Y**2 + C1)), rtol=1e-12)
    assert S(X, Y, data_range=1.0, gaussian_weights=True, sigma=1e-320,
             use_sample_covariance=False) == a


def test_drop_in_one_sample_window():
    # NP / (NP - 1) with NP = 1: scikit-image's ZeroDivisionError
    msg = "win_size: use_sample_covariance=True divides by NP - 1 = 0"
    with pytest.raises(ValueError, match=re.escape(msg)):
        S(X, Y, data_range=1.0, win_size=1)
    with pytest.raises(ValueError, match=re.escape(msg)):
        S(X, Y, data_range=1.0, gaussian_weights=True, sigma=0.1)
    skm = pytest.importorskip("skimage.metrics")
    np.testing.assert_allclose(
        S(X, Y, data_range=1.0, win_size=1, use_sample_covariance=False),
        skm.structural_similarity(X, Y, data_range=1.0, win_size=1, use_sample_covariance=False),
        rtol=1e-13)


# --- real parameters: finite reals, by name ----------------------------------

@pytest.mark.parametrize("name", ["K1", "K2"])
@pytest.mark.parametrize("bad", [None, "a", [0.01], np.array([0.01, 0.02])])
def test_constants_must_be_numbers(name, bad):
    for fname, call in all_calls(data_range=1.0, **{name: bad}):
        with pytest.raises(TypeError, match=rf"{name}: expected a finite number, got "):
            call()
    with pytest.raises(TypeError, match=rf"{name}: expected a finite number, got "):
        S(X, Y, data_range=1.0, **{name: bad})


@pytest.mark.parametrize("bad", [[1.0], np.array([1.0]), np.array([1.0, 2.0]), "1", None])
def test_data_range_must_be_a_number(bad):
    calls = all_calls(data_range=bad) + [("drop-in", lambda: S(X, Y, data_range=bad))]
    for fname, call in calls:
        if bad is None and fname != "drop-in":
            with pytest.raises(ValueError, match="data_range is required for floating-point"):
                call()
            continue
        if bad is None:
            continue  # the drop-in's own float message: test_drop_in.py
        with pytest.raises(TypeError, match="data_range: expected a positive finite number, got "):
            call()


@pytest.mark.parametrize("bad", [0, -1, -1.0, float("nan"), float("inf"), np.float32("nan")])
def test_drop_in_data_range_values(bad):
    # scikit-image accepts these and returns NaN (or nonsense); ssim refuses them
    with pytest.raises(ValueError, match=re.escape(f"data_range: expected a positive finite number, got {bad!r}")):
        S(X, Y, data_range=bad)
    with pytest.raises(ValueError, match="data_range: expected a positive finite number"):
        fastssim.ssim(X, Y, data_range=bad)


def test_zero_d_array_data_range_is_a_number():
    # scikit-image takes np.array(1.0); so do we, with the same result as 1.0
    assert S(X, Y, data_range=np.array(1.0)) == S(X, Y, data_range=1.0)
    assert fastssim.ssim(X, Y, data_range=np.array(1.0)) == fastssim.ssim(X, Y, data_range=1.0)


def test_drop_in_sigma_type():
    with pytest.raises(TypeError, match=re.escape("sigma: expected a finite number, got None")):
        S(X, Y, data_range=1.0, sigma=None)


# --- flags must be bools, integers ints -------------------------------------

BAD_FLAGS = [np.array([1, 0]), 1, "yes", None]


@pytest.mark.parametrize("bad", BAD_FLAGS, ids=["array", "int", "str", "None"])
@pytest.mark.parametrize("flag", ["gaussian_weights", "full", "gradient", "use_sample_covariance"])
def test_drop_in_flags(flag, bad):
    with pytest.raises(TypeError, match=rf"{flag}: expected a bool, got "):
        S(X, Y, data_range=1.0, **{flag: bad})


@pytest.mark.parametrize("bad", BAD_FLAGS, ids=["array", "int", "str", "None"])
def test_flags(bad):
    cases = [
        ("full", lambda: fastssim.ssim(X, Y, data_range=1.0, full=bad)),
        ("full", lambda: fastssim.pixelwise_ms_ssim(X, Y, data_range=1.0, full=bad)),
        ("fit_scales", lambda: fastssim.ms_ssim(BIG, BIG2, data_range=1.0, fit_scales=bad)),
        ("return_scales", lambda: fastssim.ms_ssim(BIG, BIG2, data_range=1.0, return_scales=bad)),
        ("gradient", lambda: fastssim.multiscale_structural_similarity(BIG, BIG2, data_range=1.0,
                                                                       gradient=bad)),
        ("full", lambda: losses.l1(X, Y, full=bad)),
        ("gradient", lambda: losses.mix(X, Y, data_range=1.0, gradient=bad)),
    ]
    for name, call in cases:
        with pytest.raises(TypeError, match=rf"{name}: expected a bool, got "):
            call()


def test_numpy_bools_are_bools():
    a = fastssim.ssim(X, Y, data_range=1.0, full=np.True_)
    b = fastssim.ssim(X, Y, data_range=1.0, full=True)
    assert np.array_equal(a.map, b.map)
    assert S(X, Y, data_range=1.0, gaussian_weights=np.bool_(True)) == \
        S(X, Y, data_range=1.0, gaussian_weights=True)


@pytest.mark.parametrize("bad,exc", [(2.0, TypeError), ("2", TypeError), (True, TypeError),
                                     (4, ValueError), (np.int64(1), ValueError)])
def test_spatial_dims(bad, exc):
    # 2.0 passed the check and failed later with "slice indices must be integers"
    calls = [lambda: fastssim.ssim(X, Y, data_range=1.0, spatial_dims=bad),
             lambda: fastssim.ms_ssim(BIG, BIG2, data_range=1.0, spatial_dims=bad),
             lambda: fastssim.pixelwise_ms_ssim(X, Y, data_range=1.0, spatial_dims=bad),
             lambda: losses.l2(X, Y, spatial_dims=bad),
             lambda: losses.mix(X, Y, data_range=1.0, spatial_dims=bad)]
    for call in calls:
        with pytest.raises(exc, match=re.escape(f"spatial_dims: expected ")):
            call()


def test_numpy_int_spatial_dims_accepted():
    a = fastssim.ssim(X[None], Y[None], data_range=1.0, spatial_dims=np.int64(3),
                      window="uniform", win_size=1)
    b = fastssim.ssim(X[None], Y[None], data_range=1.0, spatial_dims=3, window="uniform", win_size=1)
    assert a == b


# --- inputs ----------------------------------------------------------------

def test_ragged_lists_name_the_argument():
    ragged = [[1.0, 2.0], [3.0]]
    with pytest.raises(TypeError, match="im1: expected an array-like of numbers, got list"):
        fastssim.multiscale_structural_similarity(ragged, ragged, data_range=1.0)
    with pytest.raises(TypeError, match="im2: expected an array-like of numbers, got list"):
        fastssim.multiscale_structural_similarity(BIG, ragged, data_range=1.0)
    with pytest.raises(TypeError, match="x: expected an array-like of numbers, got list"):
        fastssim.ssim(ragged, ragged, data_range=1.0)
    with pytest.raises(TypeError, match="im1: expected an array-like of numbers, got list"):
        S(ragged, ragged, data_range=1.0)


def test_multiscale_names_im1_im2():
    with pytest.raises(ValueError, match=re.escape(
            "im1 and im2 must have the same shape, got (170, 165) and (169, 165)")):
        fastssim.multiscale_structural_similarity(BIG, BIG2[:-1], data_range=1.0)
    with pytest.raises(TypeError, match="im2: expected a real numeric array"):
        fastssim.multiscale_structural_similarity(BIG, BIG2.astype(complex), data_range=1.0)


def test_drop_in_messages_show_what_was_seen():
    with pytest.raises(ValueError, match=re.escape(
            "Input images must have the same dimensions. im1 and im2 must have the same shape, "
            "got (60, 61) and (59, 61)")):
        S(X, Y[:-1], data_range=1.0)
    with pytest.raises(ValueError, match=re.escape("Window size must be odd. Got win_size=4")):
        S(X, Y, data_range=1.0, win_size=4)
    with pytest.raises(ValueError, match=re.escape(
            "set channel_axis to the axis number corresponding to the channels. "
            "(win_size=7, image shape (6, 6), channel_axis=None)")):
        S(X[:6, :6], Y[:6, :6], data_range=1.0)
    with pytest.raises(ValueError, match=re.escape("K1 must be positive; got K1=-0.5")):
        S(X, Y, data_range=1.0, K1=-0.5)
    with pytest.raises(ValueError, match=re.escape("(im1 dtype float64, im2 dtype float64)")):
        S(X, Y)


# --- dtypes: looked up by kind and size ---------------------------------------

INT_TYPES = sorted({np.dtype(c).type for c in np.typecodes["AllInteger"]}, key=lambda t: t.__name__)
FLOAT_TYPES = sorted({np.dtype(c).type for c in np.typecodes["Float"]}, key=lambda t: t.__name__)


def test_every_numpy_type_is_covered():
    # np.longlong / np.ulonglong are types of their own, distinct from int64/uint64
    assert np.longlong in INT_TYPES and np.ulonglong in INT_TYPES
    assert np.longdouble in FLOAT_TYPES and np.float16 in FLOAT_TYPES


@pytest.mark.parametrize("t", INT_TYPES, ids=lambda t: t.__name__)
def test_integer_types_default_data_range(t):
    info = np.iinfo(t)
    assert dtype_limits(t) == (int(info.min), int(info.max))
    assert dtype_range[t] == (int(info.min), int(info.max))  # the CLI's lookup
    span = float(info.max) - float(info.min)
    lo = max(int(info.min), -100)
    x = (X * 200 + lo).astype(t)
    y = (Y * 200 + lo).astype(t)
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    want = fastssim.ssim(xf, yf, data_range=span)
    assert fastssim.ssim(x, y) == want
    with pytest.warns(UserWarning, match="Setting data_range based on im1.dtype") \
            if t != np.uint8 else _no_warning():
        got = S(x, y)
    np.testing.assert_allclose(got, S(xf, yf, data_range=span), rtol=1e-12)
    bx = (BIG * 200 + lo).astype(t)
    by = (BIG2 * 200 + lo).astype(t)
    np.testing.assert_allclose(
        fastssim.ms_ssim(bx, by),
        fastssim.ms_ssim(bx.astype(np.float64), by.astype(np.float64), data_range=span),
        rtol=1e-12)


@pytest.mark.parametrize("t", FLOAT_TYPES, ids=lambda t: t.__name__)
def test_float_types(t):
    assert dtype_limits(t) == (-1, 1)
    x, y = X.astype(t), Y.astype(t)
    with pytest.raises(ValueError, match="data_range is required"):
        fastssim.ssim(x, y)
    # the same (rounded) values in the compute type: float32 for float16/32
    ct = np.float32 if np.dtype(t).itemsize <= 4 else np.float64
    ref = fastssim.ssim(x.astype(ct), y.astype(ct), data_range=1.0)
    rtol = 1e-12 if np.dtype(t).itemsize > 4 else 1e-6
    np.testing.assert_allclose(fastssim.ssim(x, y, data_range=1.0), ref, rtol=rtol)
    # float16 inputs are rounded before the float32 computation: compare with
    # the same rounded values
    np.testing.assert_allclose(
        S(x, y, data_range=1.0),
        S(x.astype(np.float64), y.astype(np.float64), data_range=1.0), rtol=1e-5)


class _no_warning:
    def __enter__(self):
        import warnings
        self._c = warnings.catch_warnings()
        self._c.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *a):
        return self._c.__exit__(*a)


# --- threads -------------------------------------------------------------------

def test_workers_capped_at_a_multiple_of_the_cpus():
    from fastssim._validation import WORKERS_PER_CPU, _fit_address_space
    cap = WORKERS_PER_CPU * (os.cpu_count() or 1)
    assert resolve_workers(1000) == _fit_address_space(min(1000, cap))
    assert resolve_workers(np.int64(1)) == 1
    assert np.array_equal(fastssim.ssim(X, Y, data_range=1.0, workers=1000),
                          fastssim.ssim(X, Y, data_range=1.0, workers=1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_memory_limit_does_not_kill_the_process():
    """Under RLIMIT_AS, workers=8 ended the process with "libgomp: Thread
    creation failed" (8 thread stacks of 8 MiB did not fit); now the call runs
    with as many threads as fit and gives the same bits."""
    script = textwrap.dedent("""
        import resource, sys
        import numpy as np
        import fastssim
        x = np.random.default_rng(0).random((512, 512)); y = x[::-1].copy()
        ref = fastssim.ssim(x, y, data_range=1.0, workers=1, gradient="x")
        with open("/proc/self/statm") as f:
            vm = int(f.read().split()[0]) * resource.getpagesize()
        lim = vm + (16 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        for w in (8, 64, None, -1):
            r = fastssim.ssim(x, y, data_range=1.0, workers=w, gradient="x")
            assert r.value == ref.value and np.array_equal(r.grad_x, ref.grad_x), w
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=env, timeout=120, cwd=os.path.dirname(__file__))
    assert p.returncode == 0 and p.stdout.strip() == "ok", (p.returncode, p.stdout, p.stderr)


@pytest.mark.parametrize("bad", [np.array(["gaussian", "uniform"]), np.array([1, 2])],
                         ids=["str-array", "int-array"])
def test_string_options_given_arrays(bad):
    # an array compared with the allowed strings elementwise: "truth value ambiguous"
    cases = [
        ("window: expected 'gaussian' or 'uniform'",
         lambda: fastssim.ssim(X, Y, data_range=1.0, window=bad)),
        ("border: expected 'reflect' or 'valid'",
         lambda: fastssim.ssim(X, Y, data_range=1.0, border=bad)),
        ("covariance: expected 'population' or 'sample'",
         lambda: fastssim.pixelwise_ms_ssim(X, Y, data_range=1.0, covariance=bad)),
        ("downsample: expected one of", lambda: fastssim.ms_ssim(BIG, BIG2, data_range=1.0,
                                                                 downsample=bad)),
        ("downsample: expected one of", lambda: fastssim.min_size(5, 11, bad)),
        ("negative: expected one of", lambda: fastssim.ms_ssim(BIG, BIG2, data_range=1.0,
                                                               negative=bad)),
        ("gradient: expected None, 'x', 'y' or 'both'",
         lambda: fastssim.ssim(X, Y, data_range=1.0, gradient=bad)),
        ("wrt: expected 'x', 'y' or 'both'", lambda: fastssim.ssim_vjp(X, Y, X, data_range=1.0,
                                                                       wrt=bad)),
    ]
    for msg, call in cases:
        with pytest.raises(ValueError, match=re.escape(msg)):
            call()
