"""fastssim.torch: the PyTorch adapter.

References: the NumPy functions themselves (the adapter must give their values
and gradients exactly: same engine call), torch.autograd.gradcheck (central
finite differences in float64) for every function family, and
torch.library.opcheck for the custom operator's registrations.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastssim.torch")

import fastssim  # noqa: E402
from fastssim import losses  # noqa: E402


def tpair(shape, dtype=torch.float64, seed=0, corr=0.5):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = corr * x + (1 - corr) * torch.rand(shape, generator=g, dtype=torch.float64)
    return x.to(dtype), y.to(dtype)


def _np(t):
    return t.detach().numpy()


def test_import_fastssim_does_not_import_torch():
    code = "import sys, fastssim; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- values


SMALL_MS = dict(weights=(0.2, 0.3, 0.5), sigma=0.5)   # 5 taps, 3 scales: min size 17
PW = dict(sigmas=(0.5, 1.0, 2.0))                      # 15 taps at most (the default needs 57 px)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_equal_the_numpy_functions(dtype):
    x, y = tpair((3, 2, 40, 37), dtype)
    cases = [
        (ft.ssim(x, y, data_range=1.0, reduction="none"),
         fastssim.ssim(_np(x), _np(y), data_range=1.0, channel_axis=1)),
        (ft.ssim(x, y, data_range=1.0, window="uniform", win_size=5, covariance="sample",
                 K2=0.1, reduction="none"),
         fastssim.ssim(_np(x), _np(y), data_range=1.0, window="uniform", win_size=5,
                       covariance="sample", K2=0.1, channel_axis=1)),
        (ft.ms_ssim(x, y, data_range=1.0, downsample="zero", reduction="none", **SMALL_MS),
         fastssim.ms_ssim(_np(x), _np(y), data_range=1.0, downsample="zero", channel_axis=1,
                          **SMALL_MS)),
        (ft.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=(0.5, 1.0, 2.0), reduction="none"),
         fastssim.pixelwise_ms_ssim(_np(x), _np(y), data_range=1.0, sigmas=(0.5, 1.0, 2.0),
                                    channel_axis=1)),
        (ft.mix_loss(x, y, data_range=1.0, alpha=0.7, reduction="none", **PW),
         losses.mix(_np(x), _np(y), data_range=1.0, alpha=0.7, channel_axis=1, **PW)),
        (ft.ssim_loss(x, y, data_range=1.0, reduction="none"),
         losses.ssim(_np(x), _np(y), data_range=1.0, channel_axis=1)),
        (ft.ms_ssim_loss(x, y, data_range=1.0, reduction="none", **SMALL_MS),
         losses.ms_ssim(_np(x), _np(y), data_range=1.0, channel_axis=1, **SMALL_MS)),
        (ft.pixelwise_ms_ssim_loss(x, y, data_range=1.0, reduction="none", **PW),
         losses.pixelwise_ms_ssim(_np(x), _np(y), data_range=1.0, channel_axis=1, **PW)),
        (ft.l1_loss(x, y, reduction="none"), losses.l1(_np(x), _np(y), channel_axis=1)),
        (ft.l2_loss(x, y, reduction="none"), losses.l2(_np(x), _np(y), channel_axis=1)),
    ]
    # float64: the same engine call (the channel mean and 1 - v are summed in another
    # order: last-bit differences); float32: the value is returned in float32 (l1/l2 are
    # torch's own float32 sums against NumPy's float64 accumulation)
    tol = 1e-15 if dtype == torch.float64 else 1e-6
    for got, ref in cases:
        assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        assert got.shape == (3,)
        np.testing.assert_allclose(got.detach().numpy(), ref, rtol=tol, atol=tol)


def test_reductions_and_modules():
    x, y = tpair((4, 3, 32, 32))
    none = ft.ssim(x, y, data_range=1.0, reduction="none")
    assert ft.ssim(x, y, data_range=1.0).item() == pytest.approx(none.mean().item(), abs=1e-15)
    assert ft.ssim(x, y, data_range=1.0, reduction="sum").item() == pytest.approx(
        none.sum().item(), abs=1e-14)
    assert ft.ssim(x, y, data_range=1.0).dim() == 0
    pairs = [
        (ft.SSIM(data_range=1.0, sigma=1.0), ft.ssim(x, y, data_range=1.0, sigma=1.0)),
        (ft.MSSSIM(data_range=1.0, fit_scales=True), ft.ms_ssim(x, y, data_range=1.0, fit_scales=True)),
        (ft.PixelwiseMSSSIM(data_range=1.0, **PW), ft.pixelwise_ms_ssim(x, y, data_range=1.0, **PW)),
        (ft.SSIMLoss(data_range=1.0, reduction="sum"), ft.ssim_loss(x, y, data_range=1.0, reduction="sum")),
        (ft.MSSSIMLoss(data_range=1.0, **SMALL_MS), ft.ms_ssim_loss(x, y, data_range=1.0, **SMALL_MS)),
        (ft.PixelwiseMSSSIMLoss(data_range=1.0, **PW), ft.pixelwise_ms_ssim_loss(x, y, data_range=1.0, **PW)),
        (ft.MixLoss(data_range=1.0, **PW), ft.mix_loss(x, y, data_range=1.0, **PW)),
        (ft.L1Loss(), ft.l1_loss(x, y)),
        (ft.L2Loss(reduction="none"), ft.l2_loss(x, y, reduction="none")),
    ]
    for module, ref in pairs:
        assert torch.equal(module(x, y), ref)
    assert "data_range=1.0" in repr(ft.SSIMLoss(data_range=1.0))
    # the loss is 1 - the similarity, per item
    assert torch.allclose(ft.ssim_loss(x, y, data_range=1.0, reduction="none"), 1 - none,
                          rtol=0, atol=1e-15)


def test_volumes_equal_numpy_spatial_dims_3():
    x, y = tpair((2, 2, 9, 12, 13))
    got = ft.ssim(x, y, data_range=1.0, sigma=0.8, reduction="none")
    ref = fastssim.ssim(_np(x), _np(y), data_range=1.0, sigma=0.8, spatial_dims=3, channel_axis=1)
    np.testing.assert_array_equal(got.numpy(), ref)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("wrt", ["x", "y", "both"])
def test_gradient_equals_numpy_gradient(wrt):
    """The adapter's gradient of sum_n value_n is the NumPy function's gradient, bit for
    bit: reduction='sum' is the same engine call (channel_axis=1), and the backward hands
    the engine's gradient over unscaled."""
    x, y = tpair((2, 3, 30, 33))
    xr = x.clone().requires_grad_(wrt in ("x", "both"))
    yr = y.clone().requires_grad_(wrt in ("y", "both"))
    ft.ssim(xr, yr, data_range=1.0, reduction="sum").backward()
    r = fastssim.ssim(_np(x), _np(y), data_range=1.0, channel_axis=1, gradient=wrt)
    if wrt in ("x", "both"):
        np.testing.assert_array_equal(xr.grad.numpy(), r.grad_x)
    else:
        assert xr.grad is None
    if wrt in ("y", "both"):
        np.testing.assert_array_equal(yr.grad.numpy(), r.grad_y)
    else:
        assert yr.grad is None


def test_backward_scales_by_the_incoming_gradient():
    """A weighted sum of per-item values: item n's gradient is w_n times its own."""
    x, y = tpair((3, 1, 24, 24))
    xr = x.clone().requires_grad_()
    w = torch.tensor([2.0, -0.5, 0.0], dtype=torch.float64)
    (ft.pixelwise_ms_ssim(xr, y, data_range=1.0, reduction="none", **PW) * w).sum().backward()
    r = fastssim.pixelwise_ms_ssim(_np(x), _np(y), data_range=1.0, channel_axis=1, gradient="x",
                                   **PW)
    np.testing.assert_allclose(xr.grad.numpy(), r.grad_x * w.numpy()[:, None, None, None],
                               rtol=1e-15, atol=0)


def test_retain_graph_backward_twice():
    """The backward scales the saved gradient in place only when the graph is freed after
    it; with retain_graph=True it returns a copy, so a second pass gives the same gradient
    (accumulated: twice the NumPy gradient).  Then the graph is freed and a third pass is
    PyTorch's usual error."""
    x, y = tpair((2, 1, 20, 20))
    xr = x.clone().requires_grad_()
    v = ft.ssim(xr, y, data_range=1.0, reduction="sum")
    v.backward(retain_graph=True)
    v.backward()
    ref = fastssim.ssim(_np(x), _np(y), data_range=1.0, channel_axis=1, gradient="x").grad_x
    np.testing.assert_allclose(xr.grad.numpy(), 2 * ref, rtol=1e-14, atol=0)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        v.backward()


def _gradcheck(f, shape, seed=0):
    x, y = tpair(shape, seed=seed)
    assert torch.autograd.gradcheck(f, (x.requires_grad_(), y.requires_grad_()))


def test_gradcheck_ssim():
    _gradcheck(lambda a, b: ft.ssim(a, b, data_range=1.0, reduction="none"), (2, 1, 24, 24))


def test_gradcheck_ssim_options():
    _gradcheck(lambda a, b: ft.ssim(a, b, data_range=2.0, window="uniform", win_size=5,
                                    covariance="sample", K1=0.02, reduction="sum"),
               (1, 2, 14, 15))


def test_gradcheck_ssim_volume():
    _gradcheck(lambda a, b: ft.ssim(a, b, data_range=1.0, sigma=0.5, reduction="none"),
               (1, 2, 7, 8, 9))


@pytest.mark.parametrize("downsample", ["zero", "symmetric"])
def test_gradcheck_ms_ssim(downsample):
    # 5-tap window, 3 scales: fastssim.min_size(3, 5) == 17; odd sides exercise the padding
    assert fastssim.min_size(3, 5, downsample) == 17
    _gradcheck(lambda a, b: ft.ms_ssim(a, b, data_range=1.0, downsample=downsample,
                                       reduction="none", **SMALL_MS), (2, 1, 21, 18))


def test_gradcheck_ms_ssim_fit_scales():
    # the default 5 Wang scales on a 20 px image: fit_scales keeps the scales that fit
    _gradcheck(lambda a, b: ft.ms_ssim_loss(a, b, data_range=1.0, sigma=0.5, fit_scales=True),
               (1, 1, 20, 20))


def test_gradcheck_pixelwise_ms_ssim():
    _gradcheck(lambda a, b: ft.pixelwise_ms_ssim(a, b, data_range=1.0, sigmas=(0.5, 1.0, 2.0),
                                                 reduction="none"), (2, 1, 16, 16))


def test_gradcheck_mix_both_inputs():
    _gradcheck(lambda a, b: ft.mix_loss(a, b, data_range=1.0, sigmas=(0.5, 1.0, 2.0),
                                        reduction="none"), (2, 1, 16, 16))


def test_gradcheck_l1_l2():
    _gradcheck(lambda a, b: ft.l1_loss(a, b, reduction="none") + ft.l2_loss(a, b, reduction="none"),
               (2, 1, 6, 6))


def test_value_only_without_grad(monkeypatch):
    """No input requires a gradient (or grad mode is off): the engine is asked for the
    value only; with one, for the value and that gradient in the same call."""
    calls = []
    real = fastssim.ssim

    def spy(x, y, **kw):
        calls.append(kw["gradient"])
        return real(x, y, **kw)

    monkeypatch.setattr(fastssim, "ssim", spy)
    x, y = tpair((1, 1, 16, 16))
    ft.ssim(x, y, data_range=1.0)
    xr = x.clone().requires_grad_()
    with torch.no_grad():
        ft.ssim(xr, y, data_range=1.0)
    ft.ssim(xr, y, data_range=1.0)
    ft.ssim(y, xr, data_range=1.0)
    ft.ssim(xr, xr, data_range=1.0)
    assert calls == [None, None, "x", "y", "both"]


def test_inputs_reach_the_engine_without_copies(monkeypatch):
    seen = []
    real = fastssim.ms_ssim

    def spy(x, y, **kw):
        seen.append((x, y))
        return real(x, y, **kw)

    monkeypatch.setattr(fastssim, "ms_ssim", spy)
    x, y = tpair((2, 1, 20, 20), torch.float32)
    xr = x.requires_grad_()
    ft.ms_ssim(xr, y, data_range=1.0, **SMALL_MS).backward()
    assert np.shares_memory(seen[0][0], x.detach().numpy())
    assert np.shares_memory(seen[0][1], y.numpy())
    # a non-contiguous tensor is made contiguous once (a copy), and gives the same result
    xt = x.detach().transpose(2, 3)
    v = ft.ms_ssim(xt, y.transpose(2, 3), data_range=1.0, **SMALL_MS)
    ref = fastssim.ms_ssim(np.ascontiguousarray(_np(xt)), np.ascontiguousarray(_np(y.transpose(2, 3))),
                           data_range=1.0, channel_axis=1, **SMALL_MS).mean()
    assert v.item() == pytest.approx(float(ref), rel=1e-6)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(half):
    x, y = tpair((2, 1, 24, 24), half)
    xr = x.clone().requires_grad_()
    v = ft.ssim(xr, y, data_range=1.0, reduction="none")
    v.sum().backward()
    assert v.dtype == torch.float32
    assert xr.grad.dtype == half
    x32, y32 = x.float().requires_grad_(), y.float()
    v32 = ft.ssim(x32, y32, data_range=1.0, reduction="none")
    v32.sum().backward()
    assert torch.equal(v, v32)                      # the same float32 computation
    assert torch.equal(xr.grad, x32.grad.to(half))  # its gradient, rounded to the input's dtype


def test_autocast_bfloat16_training_step():
    """Under CPU autocast a conv's output is bfloat16; the loss runs in float32 and the
    conv's weights get float32 gradients equal to those of the bfloat16 path done by hand."""
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    x, y = tpair((2, 1, 24, 24), torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
        assert out.dtype == torch.bfloat16
        loss = ft.ssim_loss(out, y.to(torch.bfloat16), data_range=1.0)
    assert loss.dtype == torch.float32
    loss.backward()
    assert conv.weight.grad is not None and conv.weight.grad.dtype == torch.float32
    assert torch.isfinite(conv.weight.grad).all() and conv.weight.grad.abs().sum() > 0


def test_create_graph_first_derivative_then_double_backward_error():
    x, y = tpair((1, 1, 16, 16))
    xr = x.clone().requires_grad_()
    g, = torch.autograd.grad(ft.ssim(xr, y, data_range=1.0), xr, create_graph=True)
    ref = fastssim.ssim(_np(x), _np(y), data_range=1.0, channel_axis=1, gradient="x").grad_x
    np.testing.assert_array_equal(g.detach().numpy(), ref)
    with pytest.raises(RuntimeError, match="second derivatives are not supported"):
        g.pow(2).sum().backward()


def test_training_loop_reduces_the_loss():
    """A few Adam steps on a 1-layer model with the Mix loss lower it (the gradients point
    downhill); reference: the loss at the start."""
    torch.manual_seed(0)
    clean, _ = tpair((4, 1, 24, 24), torch.float32)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    net = torch.nn.Conv2d(1, 1, 5, padding=2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = ft.MixLoss(data_range=1.0, **PW)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn(net(noisy), clean)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.7 * first


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradcheck_reductions_in_the_engine_call(reduction):
    """'mean' is one engine call over the N*C planes, 'sum' one over the items; the loss
    (1 - value) is formed there too: their gradients against finite differences."""
    _gradcheck(lambda a, b: ft.ssim_loss(a, b, data_range=1.0, sigma=0.8, reduction=reduction),
               (2, 2, 12, 13))


def test_loss_backward_hands_over_the_engine_gradient(monkeypatch):
    """loss.backward() on the reduced value: the gradient array the engine returned
    becomes x.grad itself (no copy, no scaling pass); a loss (1 - SSIM) negates it in
    place; with retain_graph the saved gradient is kept and x.grad is a copy.
    Reference: the array fastssim.ssim returned (by identity of memory), and its values."""
    seen = []
    real = fastssim.ssim

    def spy(x, y, **kw):
        r = real(x, y, **kw)
        seen.append(r.grad_x)
        return r

    monkeypatch.setattr(fastssim, "ssim", spy)
    x, y = tpair((2, 3, 20, 20), torch.float32)
    xr = x.clone().requires_grad_()
    ft.ssim(xr, y, data_range=1.0).backward()
    assert np.shares_memory(xr.grad.numpy(), seen[-1])
    ref = real(_np(x).reshape(1, 6, 20, 20), _np(y).reshape(1, 6, 20, 20), data_range=1.0,
               channel_axis=1, gradient="x").grad_x.reshape(2, 3, 20, 20)
    np.testing.assert_array_equal(xr.grad.numpy(), ref)
    xr.grad = None
    ft.ssim_loss(xr, y, data_range=1.0).backward()
    assert np.shares_memory(xr.grad.numpy(), seen[-1])
    np.testing.assert_array_equal(xr.grad.numpy(), -ref)
    xr.grad = None
    v = ft.ssim(xr, y, data_range=1.0)
    v.backward(retain_graph=True)
    assert not np.shares_memory(xr.grad.numpy(), seen[-1])
    np.testing.assert_array_equal(seen[-1].reshape(ref.shape), ref)  # the saved gradient is intact
    np.testing.assert_array_equal(xr.grad.numpy(), ref)


# --------------------------------------------------------------------------- maps, scales


def test_maps_and_scales_equal_the_numpy_outputs():
    """full=True / return_scales=True: the NumPy function's map / per-scale means, (N, C, ...),
    in the value's dtype, for every reduction; the value is unchanged by asking for them."""
    x, y = tpair((2, 3, 40, 37), torch.float32)
    xn, yn = _np(x), _np(y)
    for reduction in ("none", "mean", "sum"):
        v, m = ft.ssim(x, y, data_range=1.0, full=True, reduction=reduction)
        assert torch.equal(v, ft.ssim(x, y, data_range=1.0, reduction=reduction))
        r = fastssim.ssim(xn, yn, data_range=1.0, full=True)
        assert m.dtype == torch.float32 and m.shape == (2, 3, 40, 37)
        np.testing.assert_array_equal(m.numpy(), r.map)
    _, m = ft.ssim(x, y, data_range=1.0, full=True, border="valid", reduction="none")
    np.testing.assert_array_equal(m.numpy(), fastssim.ssim(xn, yn, data_range=1.0, full=True,
                                                           border="valid").map)
    assert m.shape == (2, 3, 30, 27)
    _, m = ft.pixelwise_ms_ssim(x, y, data_range=1.0, full=True, **PW)
    np.testing.assert_array_equal(m.numpy(), fastssim.pixelwise_ms_ssim(
        xn, yn, data_range=1.0, full=True, **PW).map)
    _, m = ft.mix_loss(x, y, data_range=1.0, full=True, **PW)
    np.testing.assert_array_equal(m.numpy(), losses.mix(xn, yn, data_range=1.0, full=True,
                                                        **PW).map)
    v, s = ft.ms_ssim(x, y, data_range=1.0, return_scales=True, reduction="none", **SMALL_MS)
    ref = fastssim.ms_ssim(xn, yn, data_range=1.0, return_scales=True, **SMALL_MS)
    assert s.shape == (2, 3, 3) and s.dtype == torch.float32
    np.testing.assert_allclose(s.numpy(), ref.scales, rtol=1e-7)  # float64 -> float32
    np.testing.assert_allclose(v.numpy(), ref.value.mean(1), rtol=1e-6)


@pytest.mark.parametrize("fn", [
    lambda a, b: ft.ssim(a, b, data_range=1.0, full=True, reduction="none")[0],
    lambda a, b: ft.ms_ssim(a, b, data_range=1.0, return_scales=True, **SMALL_MS)[0],
    lambda a, b: ft.pixelwise_ms_ssim(a, b, data_range=1.0, full=True, **PW)[0],
    lambda a, b: ft.mix_loss(a, b, data_range=1.0, full=True, reduction="sum", **PW)[0],
], ids=["ssim", "ms_ssim", "pixelwise", "mix"])
def test_gradcheck_value_when_the_map_is_returned(fn):
    _gradcheck(fn, (2, 1, 18, 17))


def test_map_is_not_differentiable():
    """Backward through the map raises (the engine has no gradient of the map); the value
    beside it keeps its gradient, and a detached map is fine."""
    x, y = tpair((1, 1, 20, 20))
    xr = x.clone().requires_grad_()
    v, m = ft.ssim(xr, y, data_range=1.0, full=True)
    with pytest.raises(RuntimeError, match="the map and the per-scale means .* are not "
                                           "differentiable"):
        (v + m.mean()).backward()
    v, s = ft.ms_ssim(xr, y, data_range=1.0, return_scales=True, **SMALL_MS)
    with pytest.raises(RuntimeError, match="not differentiable"):
        s.sum().backward()
    v, m = ft.ssim(xr, y, data_range=1.0, full=True)
    (v + m.detach().mean()).backward()
    # the engine's gradient when it also writes the map (full=True) differs from the
    # value-only call in the last bits (measured: 1.2e-14 relative)
    ref = fastssim.ssim(_np(x), _np(y), data_range=1.0, full=True, gradient="x").grad_x
    np.testing.assert_array_equal(xr.grad.numpy(), ref)
    ref = fastssim.ssim(_np(x), _np(y), data_range=1.0, gradient="x").grad_x
    np.testing.assert_allclose(xr.grad.numpy(), ref, rtol=1e-12, atol=1e-13 * np.abs(ref).max())


# --------------------------------------------------------------------------- torch.compile


def test_opcheck():
    x, y = tpair((2, 1, 16, 16))
    opts = ft._options_string(ft._options(data_range=1.0))
    for need in (0, 1, 2, 3):
        for mode, negate in (("plane", False), ("item", True), ("sum", False), ("mean", True)):
            args = (x.clone().requires_grad_(bool(need & 1)),
                    y.clone().requires_grad_(bool(need & 2)), "ssim", opts, need, mode, negate)
            torch.library.opcheck(torch.ops.fastssim.similarity.default, args)


def test_compile_fullgraph_training_step():
    """A compiled step (no graph break allowed: fullgraph=True) gives the eager values and
    gradients.  backend='aot_eager' traces forward and backward through the fake and
    autograd registrations, as inductor does, without a C++ compile."""
    torch._dynamo.reset()
    conv = torch.nn.Conv2d(1, 1, 3, padding=1).double()
    x, y = tpair((2, 1, 20, 20))

    def step(inp, target):
        out = conv(inp)
        return (ft.ssim_loss(out, target, data_range=1.0)
                + ft.ms_ssim_loss(out, target, data_range=1.0, **SMALL_MS)
                + ft.mix_loss(out, target, data_range=1.0, sigmas=(0.5, 1.0, 2.0))
                + ft.l1_loss(out, target))

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    loss_c = compiled(x, y)
    loss_c.backward()
    g_c = conv.weight.grad.clone()
    conv.weight.grad = None
    loss_e = step(x, y)
    loss_e.backward()
    assert loss_c.item() == pytest.approx(loss_e.item(), rel=1e-14)
    torch.testing.assert_close(g_c, conv.weight.grad, rtol=1e-13, atol=1e-15)


def test_compile_with_a_map_runs_it_eagerly():
    """full=True under torch.compile: a graph break (the map call runs eagerly), the eager
    value, map and gradient; fullgraph=True says it cannot."""
    torch._dynamo.reset()
    x, y = tpair((2, 1, 20, 20))
    xr = x.clone().requires_grad_()

    def f(a, b):
        v, m = ft.ssim(a, b, data_range=1.0, full=True)
        return 2 * v, m

    v_c, m_c = torch.compile(f, backend="aot_eager")(xr, y)
    v_c.backward()
    g_c, xr.grad = xr.grad, None
    v_e, m_e = f(xr, y)
    v_e.backward()
    assert torch.equal(v_c, v_e) and torch.equal(m_c, m_e) and torch.equal(g_c, xr.grad)
    torch._dynamo.reset()
    with pytest.raises(Exception, match="disable"):
        torch.compile(f, backend="aot_eager", fullgraph=True)(xr, y)


# --------------------------------------------------------------------------- errors


def test_errors():
    x, y = tpair((1, 1, 16, 16))
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        ft.ssim(_np(x), y, data_range=1.0)
    with pytest.raises(ValueError, match=r"x, y: expected the same shape, got \(1, 1, 16, 16\)"):
        ft.ssim(x, y[..., :15], data_range=1.0)
    with pytest.raises(TypeError, match="x, y: expected one dtype, got torch.float64 and torch.float32"):
        ft.ssim(x, y.float(), data_range=1.0)
    with pytest.raises(ValueError, match=r"x: expected an \(N, C, H, W\) or \(N, C, D, H, W\)"):
        ft.ssim(x[0], y[0], data_range=1.0)
    with pytest.raises(TypeError, match="x: expected a floating-point tensor, got torch.int64"):
        ft.ssim(x.long(), y.long(), data_range=1.0)
    with pytest.raises(ValueError, match=r"reduction: expected one of \('mean', 'sum', 'none'\)"):
        ft.ssim(x, y, data_range=1.0, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        ft.SSIMLoss(data_range=1.0, reduction="avg")
    with pytest.raises(TypeError, match="prediction: expected a torch.Tensor"):
        ft.mix_loss(None, y, data_range=1.0)
    with pytest.raises(TypeError, match="ssim_loss: unexpected keyword argument 'sigmas'"):
        ft.ssim_loss(x, y, data_range=1.0, sigmas=(1.0, 2.0))
    with pytest.raises(TypeError, match="weights: expected a sequence of numbers"):
        ft.ms_ssim(x, y, data_range=1.0, weights=("a", "b"))
    with pytest.raises(TypeError, match="data_range: expected a number"):
        ft.ssim(x, y, data_range=torch.tensor(1.0))
    with pytest.raises(ValueError, match="window: unexpected value"):
        ft.ssim(x, y, data_range=1.0, window="gauss;ian")
    with pytest.raises(ValueError, match="kind: expected one of"):
        ft.similarity_per_plane("psnr", x, y, data_range=1.0)
    # the NumPy function's own validation reaches the user unchanged
    with pytest.raises(ValueError, match="sigma"):
        ft.ssim(x, y, data_range=1.0, sigma=-1.0)
    with pytest.raises(ValueError, match="MS-SSIM with 5 scales and a window of 11 taps needs at least 161 px"):
        ft.ms_ssim(x, y, data_range=1.0)
    with pytest.raises(TypeError, match="x: expected a CPU tensor, got a tensor on meta"):
        ft.ssim(torch.empty(1, 1, 16, 16, device="meta"), torch.empty(1, 1, 16, 16, device="meta"),
                data_range=1.0)


class _LooksCuda(torch.Tensor):
    """A CPU tensor reporting a CUDA device: the check runs before any data is touched."""

    @property
    def device(self):
        return torch.device("cuda", 0)


def test_cuda_tensors_without_cupy_get_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "cupy" else real(name, *a))
    x, y = tpair((1, 1, 16, 16))
    xc, yc = x.as_subclass(_LooksCuda), y.as_subclass(_LooksCuda)
    with pytest.raises(TypeError, match="x: CUDA tensors need CuPy, fastssim's GPU backend"):
        ft.ssim(xc, yc, data_range=1.0)


class _StandInStream:
    """What the adapter asks of torch.cuda.current_stream: the stream protocol."""
    cuda_stream = 0

    def __cuda_stream__(self):
        return (0, 0)


def _numpy_standing_in_for_cupy(monkeypatch):
    """The CUDA branch of the adapter with NumPy in place of CuPy: CPU tensors that
    report a CUDA device go through it (DLPack import / export, the stream and
    device contexts, the tensor-side scaling of the backward), and the engine call
    dispatches to the CPU backend on the NumPy arrays."""
    import contextlib
    import types

    import importlib.machinery

    fake = types.ModuleType("cupy")
    fake.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
    fake.from_dlpack = lambda t: t.as_subclass(torch.Tensor).numpy()
    fake.asarray = np.asarray
    fake.float64 = np.float64
    fake.cuda = types.SimpleNamespace(
        Device=lambda index: contextlib.nullcontext(),
        Stream=types.SimpleNamespace(from_external=lambda s: contextlib.nullcontext()))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _StandInStream())
    monkeypatch.setattr(torch, "from_dlpack",
                        lambda a: torch.from_numpy(np.asarray(a)).as_subclass(_LooksCuda))


@pytest.mark.parametrize("call", [
    lambda x, y, **k: ft.ssim(x, y, data_range=1.0, **k),
    lambda x, y, **k: ft.ms_ssim(x, y, data_range=1.0, **SMALL_MS, **k),
    lambda x, y, **k: ft.ssim_loss(x, y, data_range=1.0, **k),
    lambda x, y, **k: ft.mix_loss(x, y, data_range=1.0, **PW, **k),
])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cuda_branch_plumbing(monkeypatch, call, reduction):
    """Reference: the same call on plain CPU tensors; the values and both inputs'
    gradients (through a weighted sum for reduction='none', so the backward's scaling
    by a non-unit incoming gradient is exercised) must agree exactly."""
    x, y = tpair((2, 2, 40, 37))
    w = torch.tensor([0.25, -2.0], dtype=torch.float64)

    def run(xx, yy):
        xx, yy = xx.clone().requires_grad_(True), yy.clone().requires_grad_(True)
        v = call(xx, yy, reduction=reduction)
        out = v if reduction == "mean" else (v.as_subclass(torch.Tensor) * w).sum()
        out.backward()
        return (v.detach().as_subclass(torch.Tensor), xx.grad.as_subclass(torch.Tensor),
                yy.grad.as_subclass(torch.Tensor))

    want = run(x, y)
    _numpy_standing_in_for_cupy(monkeypatch)
    got = run(x.as_subclass(_LooksCuda), y.as_subclass(_LooksCuda))
    for g, r in zip(got, want):
        assert torch.equal(g, r)


_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@_CUDA
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("call", [
    lambda x, y, **k: ft.ssim(x, y, data_range=1.0, **k),
    lambda x, y, **k: ft.ms_ssim(x, y, data_range=1.0, **SMALL_MS, **k),
    lambda x, y, **k: ft.pixelwise_ms_ssim(x, y, data_range=1.0, **PW, **k),
    lambda x, y, **k: ft.mix_loss(x, y, data_range=1.0, **PW, **k),
])
def test_cuda_tensors_match_the_cpu(call, dtype, tol):
    """Reference: the same call on CPU tensors.  On a side stream: the kernels must
    follow PyTorch's current stream (the inputs are written on it just before)."""
    pytest.importorskip("cupy")
    x, y = tpair((2, 3, 48, 45), dtype)
    w = torch.tensor([0.5, -1.5], dtype=dtype)
    xc = x.clone().requires_grad_(True)
    yc = y.clone().requires_grad_(True)
    (call(xc, yc, reduction="none") * w).sum().backward()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        xg = x.cuda().requires_grad_(True)
        yg = (y.cuda() * 1.0).requires_grad_(True)
        v = call(xg, yg, reduction="none")
        (v * w.cuda()).sum().backward()
    s.synchronize()
    assert v.device.type == "cuda" and xg.grad.device.type == "cuda"
    ref = call(x, y, reduction="none")
    assert torch.allclose(v.cpu().double(), ref.double(), rtol=0, atol=tol)
    for g, r in ((xg.grad, xc.grad), (yg.grad, yc.grad)):
        scale = r.abs().max().item()
        assert (g.cpu().double() - r.double()).abs().max().item() <= tol * max(scale, 1e-30) * 10
