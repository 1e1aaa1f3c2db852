"""fastssim.torch.compat against pytorch_msssim itself (the reference, when installed).

Tolerances: float32 within 1e-5 (the issue's contract; measured differences are
a few 1e-7 for SSIM and up to ~5e-6 for MS-SSIM, from float32 convolutions in
pytorch_msssim).  float64: pytorch_msssim builds its Gaussian window in float32
and casts it, so its float64 numbers carry the window's float32 rounding
(measured up to 8e-8 for SSIM and 9e-7 for MS-SSIM); with a window built in
float64 and passed as ``win`` the two agree to 1e-13.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pm = pytest.importorskip("pytorch_msssim")
from fastssim.torch import compat as fc  # noqa: E402


def tpair(shape, dtype=torch.float64, seed=0, corr=0.6, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = corr * x + (1 - corr) * torch.rand(shape, generator=g, dtype=torch.float64)
    return (scale * x).to(dtype), (scale * y).to(dtype)


def win64(size, sigma, channels, spatial_dims=2):
    """pytorch_msssim's window, computed in float64."""
    c = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(c ** 2) / (2 * sigma ** 2))
    g /= g.sum()
    return g.reshape(1, 1, -1).repeat([channels, 1] + [1] * spatial_dims)


SSIM_SHAPES = [(2, 3, 64, 64), (1, 1, 33, 47), (2, 2, 11, 20), (1, 2, 6, 25, 31)]
SSIM_OPTS = [
    dict(data_range=1.0),
    dict(data_range=1.0, size_average=False),
    dict(data_range=1.0, win_size=7, win_sigma=1.0),
    dict(data_range=1.0, K=(0.02, 0.4)),
]


def _opts_fit(shape, opts):
    return min(shape[2:]) >= opts.get("win_size", 11)


@pytest.mark.parametrize("shape", SSIM_SHAPES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 2e-7)])
def test_ssim_values_match_pytorch_msssim(shape, dtype, tol):
    x, y = tpair(shape, dtype)
    for opts in SSIM_OPTS:
        if not _opts_fit(shape, opts):
            continue
        ref, got = pm.ssim(x, y, **opts), fc.ssim(x, y, **opts)
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=0, atol=tol)


def test_ssim_data_range_255_default():
    x, y = tpair((2, 3, 40, 40), torch.float32, scale=255.0)
    torch.testing.assert_close(fc.ssim(x, y), pm.ssim(x, y), rtol=0, atol=1e-5)
    torch.testing.assert_close(fc.SSIM()(x, y), pm.SSIM()(x, y), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 1, 33, 47), (1, 2, 9, 25, 31)])
def test_float64_window_matches_to_rounding(shape):
    """With pytorch_msssim given a float64 window, the only difference left is rounding."""
    x, y = tpair(shape)
    sd = len(shape) - 2
    w = win64(7, 1.5, shape[1], sd)
    for opts in (dict(data_range=1.0), dict(data_range=1.0, size_average=False)):
        ref = pm.ssim(x, y, win=w, **opts)
        torch.testing.assert_close(fc.ssim(x, y, win_size=7, **opts), ref, rtol=0, atol=1e-13)
        torch.testing.assert_close(fc.ssim(x, y, win=w, **opts), ref, rtol=0, atol=1e-13)


def test_nonnegative_ssim_values_and_gradients():
    """Anti-correlated channels have a negative SSIM: relu makes it 0 and its gradient 0."""
    x, y = tpair((2, 3, 24, 24))
    y = y.clone()
    y[:, 1] = 1 - x[:, 1]
    for nonneg in (False, True):
        xa = x.clone().requires_grad_()
        xb = x.clone().requires_grad_()
        ref = pm.ssim(xa, y, data_range=1.0, nonnegative_ssim=nonneg, size_average=False,
                      win=win64(11, 1.5, 3))
        got = fc.ssim(xb, y, data_range=1.0, nonnegative_ssim=nonneg, size_average=False)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-13)
        ref.sum().backward()
        got.sum().backward()
        torch.testing.assert_close(xb.grad, xa.grad, rtol=0, atol=1e-11 * xa.grad.abs().max().item())
        if nonneg:
            assert torch.all(xb.grad[:, 1] == 0)
    # the channel really is negative without relu
    assert fc.ssim(x[:, 1:2], y[:, 1:2], data_range=1.0).item() < -0.1


MS_SHAPES = [(2, 3, 161, 170), (1, 1, 175, 201), (1, 2, 200, 193)]


@pytest.mark.parametrize("shape", MS_SHAPES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 2e-6)])
def test_ms_ssim_values_match_pytorch_msssim(shape, dtype, tol):
    x, y = tpair(shape, dtype)
    for opts in (dict(data_range=1.0), dict(data_range=1.0, size_average=False),
                 dict(data_range=1.0, weights=[0.5, 0.3, 0.2]), dict(data_range=1.0, K=(0.01, 0.1))):
        torch.testing.assert_close(fc.ms_ssim(x, y, **opts), pm.ms_ssim(x, y, **opts),
                                   rtol=0, atol=tol)


def test_ms_ssim_odd_sizes_float64_window_to_rounding():
    """Odd extents at every scale (zero-padded average pooling): 175 -> 88 -> 44, 201 -> 101 -> 51
    -> 26; with a float64 window the two agree to rounding."""
    x, y = tpair((1, 2, 175, 201))
    w = win64(11, 1.5, 2)
    torch.testing.assert_close(fc.ms_ssim(x, y, data_range=1.0),
                               pm.ms_ssim(x, y, data_range=1.0, win=w), rtol=0, atol=1e-13)
    torch.testing.assert_close(fc.MS_SSIM(data_range=1.0, channel=2)(x, y),
                               pm.ms_ssim(x, y, data_range=1.0, win=w), rtol=0, atol=1e-13)


def test_ms_ssim_volumes():
    x, y = tpair((1, 1, 33, 34, 35))
    w = win64(3, 1.5, 1, 3)
    torch.testing.assert_close(fc.ms_ssim(x, y, data_range=1.0, win_size=3),
                               pm.ms_ssim(x, y, data_range=1.0, win=w), rtol=0, atol=1e-13)


@pytest.mark.parametrize("fn", ["ssim", "ms_ssim"])
def test_gradients_match_pytorch_msssim(fn):
    """Both differentiate the same function: autograd through pytorch_msssim's convolutions
    and fastssim's analytic gradient agree (float64, float64 window)."""
    shape = (2, 2, 165, 170) if fn == "ms_ssim" else (2, 2, 40, 37)
    x, y = tpair(shape)
    w = win64(11, 1.5, 2)
    xa, ya = x.clone().requires_grad_(), y.clone().requires_grad_()
    xb, yb = x.clone().requires_grad_(), y.clone().requires_grad_()
    getattr(pm, fn)(xa, ya, data_range=1.0, win=w).backward()
    getattr(fc, fn)(xb, yb, data_range=1.0).backward()
    for a, b in ((xa, xb), (ya, yb)):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-11 * a.grad.abs().max().item())


def test_gradients_float32_close():
    x, y = tpair((2, 3, 48, 48), torch.float32)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    pm.SSIM(data_range=1.0)(xa, y).backward()
    fc.SSIM(data_range=1.0)(xb, y).backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=0, atol=1e-4 * xa.grad.abs().max().item())


def test_modules_mirror_pytorch_msssim():
    ref, got = pm.SSIM(data_range=1.0, channel=1, win_size=7), fc.SSIM(data_range=1.0, channel=1, win_size=7)
    assert torch.equal(got.win, ref.win)
    assert (got.size_average, got.data_range, got.K, got.win_size) == (
        ref.size_average, ref.data_range, ref.K, ref.win_size)
    ref, got = pm.MS_SSIM(weights=[0.5, 0.5]), fc.MS_SSIM(weights=[0.5, 0.5])
    assert torch.equal(got.win, ref.win) and got.weights == ref.weights


def test_squeezes_singleton_dims_like_pytorch_msssim():
    x, y = tpair((2, 1, 1, 30, 30))
    torch.testing.assert_close(fc.ssim(x, y, data_range=1.0), pm.ssim(x, y, data_range=1.0),
                               rtol=0, atol=2e-7)
    with pytest.raises(ValueError, match="X: Input images should be 4-d or 5-d tensors"):
        fc.ssim(x[:, :, :, 0, :1], y[:, :, :, 0, :1], data_range=1.0)


def test_box_window_via_win():
    x, y = tpair((1, 2, 30, 30))
    box = torch.full((2, 1, 1, 5), 0.2, dtype=torch.float64)
    torch.testing.assert_close(fc.ssim(x, y, data_range=1.0, win=box),
                               pm.ssim(x, y, data_range=1.0, win=box), rtol=0, atol=1e-13)


def test_errors():
    x, y = tpair((1, 1, 30, 30))
    with pytest.raises(ValueError, match="X, Y: Input images should have the same dimensions"):
        fc.ssim(x, y[..., :29])
    with pytest.raises(ValueError, match="win_size: Window size should be odd"):
        fc.ssim(x, y, win_size=10)
    with pytest.raises(ValueError, match="pytorch_msssim would skip the Gaussian smoothing along it"):
        fc.ssim(x[..., :9], y[..., :9], data_range=1.0)
    with pytest.raises(ValueError, match="X: Image size should be larger than 160"):
        fc.ms_ssim(x, y, data_range=1.0)
    with pytest.raises(ValueError, match=r"dimension 2\+0 of scale 3 has 10 < win_size=11.*pytorch_msssim would skip"):
        big = tpair((1, 1, 40, 161, 161))  # depth 40 -> 20 -> 10 at scale 3
        fc.ms_ssim(*big, data_range=1.0)
    with pytest.raises(ValueError, match="win: expected Gaussian taps"):
        fc.ssim(x, y, data_range=1.0, win=torch.tensor([[[0.1, 0.2, 0.4, 0.2, 0.1]]]))
    with pytest.raises(ValueError, match="win: every channel's window must be the same"):
        fc.ssim(x, y, data_range=1.0, win=torch.stack([win64(5, 1.0, 1)[0], win64(5, 2.0, 1)[0]]))
    with pytest.raises(TypeError, match=r"K: expected a pair \(K1, K2\)"):
        fc.ssim(x, y, data_range=1.0, K=0.01)
