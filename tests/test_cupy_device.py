"""The GPU backend against the CPU backend, on a GPU (issue 12).

Skips where CuPy or a CUDA device is missing (in CI: no GPU).  References:

* values, maps, gradients and VJPs of the CPU backend (the same public
  functions on NumPy copies): float64 agrees to 1e-12 relative (values,
  maps) and 1e-12 of the largest gradient element (gradients: a sum of
  ~(2r+1)^2 terms in another order, each exact to rounding), float32 to
  2e-6 (values) and 2e-5 (maps) of the float64 CPU result (the float32
  accuracy tests/test_exactness.py measures for the CPU: 5e-9..2.4e-7 on
  values, 2.2e-5..4.1e-5 on maps);
* central finite differences (float64) of the GPU value itself, interior
  and border pixels included;
* bitwise identity of two runs (fixed-order reductions, no atomics).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastssim

from conftest import pair

cp = pytest.importorskip("cupy", reason="CuPy is not installed (the GPU backend needs it)")
try:
    _NDEV = cp.cuda.runtime.getDeviceCount()
except Exception as exc:  # no driver
    _NDEV = 0
    _WHY = f"no CUDA device ({type(exc).__name__}: {exc})"
else:
    _WHY = "no CUDA device"
pytestmark = pytest.mark.skipif(_NDEV == 0, reason=_WHY + ": GPU results are checked on a GPU only")


def _close64(g, c, what):
    g = cp.asnumpy(g)
    c = np.asarray(c)
    scale = max(1.0, float(np.max(np.abs(c)))) if what == "map" else float(np.max(np.abs(c)))
    err = float(np.max(np.abs(g - c)))
    assert err <= 1e-12 * max(scale, 1e-300), f"{what}: max error {err:.3g} (scale {scale:.3g})"


CASES = [
    # (shape, kwargs)
    ((37, 53), {}),
    ((11, 11), {}),
    ((12, 13), dict(window="uniform", win_size=3)),
    ((3, 2, 40, 33), {}),
    ((2, 31, 45, 3), dict(channel_axis=-1)),
    ((2, 3, 31, 45), dict(channel_axis=1)),
    ((64, 48), dict(window="uniform", win_size=7, covariance="sample")),
    ((64, 48), dict(sigma=0.5)),
    ((96, 80), dict(sigma=3.0)),
    ((40, 41), dict(border="valid")),
    ((23, 70), dict(K1=0.0, K2=0.0)),
]


@pytest.mark.parametrize("shape,kw", CASES)
@pytest.mark.parametrize("gradient", [None, "x", "both"])
def test_ssim_float64_matches_cpu(shape, kw, gradient):
    x, y = pair(shape, seed=len(shape) * 7 + shape[-1])
    cpu = fastssim.ssim(x, y, data_range=1.0, full=True, gradient=gradient, **kw)
    gpu = fastssim.ssim(cp.asarray(x), cp.asarray(y), data_range=1.0, full=True,
                        gradient=gradient, **kw)
    assert isinstance(gpu.value, cp.ndarray) and gpu.value.shape == np.shape(cpu.value)
    _close64(gpu.value, cpu.value, "map")
    _close64(gpu.map, cpu.map, "map")
    assert gpu.map.shape == cpu.map.shape and gpu.map.dtype == cpu.map.dtype
    for a, b in ((gpu.grad_x, cpu.grad_x), (gpu.grad_y, cpu.grad_y)):
        assert (a is None) == (b is None)
        if b is not None:
            assert a.shape == b.shape
            _close64(a, b, "gradient")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_ssim_integer_inputs_read_in_kernel(dtype):
    x, y = pair((45, 38), dtype=dtype, seed=5)
    cpu = fastssim.ssim(x, y, gradient="y")
    gpu = fastssim.ssim(cp.asarray(x), cp.asarray(y), gradient="y")
    _close64(gpu.value, cpu.value, "map")
    _close64(gpu.grad_y, cpu.grad_y, "gradient")


def test_float16_inputs_read_in_kernel():
    x, y = pair((2, 40, 41), dtype=np.float16, seed=97)
    ref = fastssim.ssim(x.astype(np.float64), y.astype(np.float64), data_range=1.0, full=True)
    gpu = fastssim.ssim(cp.asarray(x), cp.asarray(y), data_range=1.0, full=True)
    assert gpu.map.dtype == cp.float32
    assert np.max(np.abs(cp.asnumpy(gpu.value) - ref.value)) <= 2e-6
    assert np.max(np.abs(cp.asnumpy(gpu.map) - ref.map)) <= 2e-5


def test_ssim_broadcast_batch():
    x, _ = pair((1, 30, 31), seed=8)
    _, y = pair((4, 30, 31), seed=9)
    cpu = fastssim.ssim(x, y, data_range=1.0, gradient="both")
    gpu = fastssim.ssim(cp.asarray(x), cp.asarray(y), data_range=1.0, gradient="both")
    _close64(gpu.value, cpu.value, "map")
    assert gpu.grad_x.shape == (1, 30, 31)
    _close64(gpu.grad_x, cpu.grad_x, "gradient")
    _close64(gpu.grad_y, cpu.grad_y, "gradient")


@pytest.mark.parametrize("shape,kw", CASES[:6])
@pytest.mark.parametrize("wrt", ["x", "y", "both"])
def test_ssim_vjp_float64_matches_cpu(shape, kw, wrt):
    x, y = pair(shape, seed=11)
    m = fastssim.ssim(x, y, data_range=1.0, full=True, **kw).map
    w = np.random.default_rng(3).standard_normal(m.shape)
    cpu = fastssim.ssim_vjp(x, y, w, wrt=wrt, data_range=1.0, **kw)
    gpu = fastssim.ssim_vjp(cp.asarray(x), cp.asarray(y), cp.asarray(w), wrt=wrt,
                            data_range=1.0, **kw)
    for a, b in zip(gpu if wrt == "both" else (gpu,), cpu if wrt == "both" else (cpu,)):
        _close64(a, b, "gradient")


@pytest.mark.parametrize("kw", [{}, dict(channel_axis=-1), dict(window="uniform", win_size=5)])
def test_ssim_float32_matches_cpu_float64(kw):
    shape = (2, 47, 51, 3) if kw.get("channel_axis") == -1 else (2, 47, 51)
    x, y = pair(shape, seed=13)
    ref = fastssim.ssim(x, y, data_range=1.0, full=True, **kw)
    gpu = fastssim.ssim(cp.asarray(x, dtype=cp.float32), cp.asarray(y, dtype=cp.float32),
                        data_range=1.0, full=True, **kw)
    assert gpu.map.dtype == cp.float32
    assert np.max(np.abs(cp.asnumpy(gpu.value) - ref.value)) <= 2e-6
    assert np.max(np.abs(cp.asnumpy(gpu.map) - ref.map)) <= 2e-5


@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_gpu_gradient_finite_differences(border):
    """Central differences (h = 1e-6, float64) of the GPU value at every pixel
    of a 12 x 13 pair: borders included."""
    x, y = pair((12, 13), seed=17)
    kw = dict(data_range=1.0, window="uniform", win_size=5, border=border)
    g = cp.asnumpy(fastssim.ssim(cp.asarray(x), cp.asarray(y), gradient="x", **kw).grad_x)
    fd = np.empty_like(x)
    h = 1e-6
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fp = float(fastssim.ssim(cp.asarray(xp), cp.asarray(y), **kw))
        fm = float(fastssim.ssim(cp.asarray(xm), cp.asarray(y), **kw))
        fd[idx] = (fp - fm) / (2 * h)
    assert np.max(np.abs(g - fd)) <= 1e-7 * np.max(np.abs(fd))


def test_bitwise_deterministic():
    x, y = pair((3, 517, 613), seed=19)
    a = [fastssim.ssim(cp.asarray(x), cp.asarray(y), data_range=1.0, full=True, gradient="both")
         for _ in range(3)]
    for r in a[1:]:
        for f in ("value", "map", "grad_x", "grad_y"):
            assert cp.array_equal(getattr(r, f), getattr(a[0], f)), f


def test_loss_ssim_matches_cpu():
    x, y = pair((2, 33, 34), seed=23)
    cpu = fastssim.losses.ssim(x, y, data_range=1.0, gradient=True, full=True)
    gpu = fastssim.losses.ssim(cp.asarray(x), cp.asarray(y), data_range=1.0, gradient=True,
                               full=True)
    _close64(gpu.value, cpu.value, "map")
    _close64(gpu.grad, cpu.grad, "gradient")
    _close64(gpu.map, cpu.map, "map")


@pytest.mark.parametrize("shape,kw", [((2, 70, 75), {}),
                                      ((1, 40, 41, 3), dict(sigmas=(0.5, 1.0, 2.0),
                                                            channel_axis=-1))])
def test_pixelwise_ms_ssim_matches_cpu(shape, kw):
    x, y = pair(shape, seed=41)
    cpu = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, full=True, gradient="both", **kw)
    gpu = fastssim.pixelwise_ms_ssim(cp.asarray(x), cp.asarray(y), data_range=1.0, full=True,
                                     gradient="both", **kw)
    _close64(gpu.value, cpu.value, "map")
    _close64(gpu.map, cpu.map, "map")
    _close64(gpu.grad_x, cpu.grad_x, "gradient")
    _close64(gpu.grad_y, cpu.grad_y, "gradient")
    w = np.random.default_rng(1).standard_normal(cpu.map.shape)
    _close64(fastssim.pixelwise_ms_ssim_vjp(cp.asarray(x), cp.asarray(y), cp.asarray(w),
                                            data_range=1.0, **kw),
             fastssim.pixelwise_ms_ssim_vjp(x, y, w, data_range=1.0, **kw), "gradient")


def test_mix_loss_matches_cpu():
    x, y = pair((2, 60, 61), seed=53)
    cpu = fastssim.losses.mix(x, y, data_range=1.0, gradient=True, full=True)
    gpu = fastssim.losses.mix(cp.asarray(x), cp.asarray(y), data_range=1.0, gradient=True,
                              full=True)
    _close64(gpu.value, cpu.value, "map")
    _close64(gpu.grad, cpu.grad, "gradient")
    _close64(gpu.map, cpu.map, "map")


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_pointwise_losses_match_cpu(kind):
    x, y = pair((3, 20, 21), seed=61)
    cpu = getattr(fastssim.losses, kind)(x, y, gradient=True, full=True)
    gpu = getattr(fastssim.losses, kind)(cp.asarray(x), cp.asarray(y), gradient=True, full=True)
    for a, b in zip(gpu, cpu):
        _close64(a, b, "map")


@pytest.mark.parametrize("shape,kw", [((2, 161, 170), {}),
                                      ((1, 200, 203, 3), dict(channel_axis=-1, downsample="zero")),
                                      ((2, 176, 181), dict(downsample="drop", negative="simple")),
                                      ((2, 165, 177), dict(downsample="replicate")),
                                      ((40, 45, 43), dict(weights=(0.3, 0.3, 0.4), sigma=1.0,
                                                          spatial_dims=3)),
                                      ((2, 33, 35, 37), dict(weights=(0.5, 0.5), window="uniform",
                                                             win_size=5, spatial_dims=3,
                                                             downsample="replicate"))])
def test_ms_ssim_matches_cpu(shape, kw):
    x, y = pair(shape, seed=67)
    cpu = fastssim.ms_ssim(x, y, data_range=1.0, gradient="both", return_scales=True, **kw)
    gpu = fastssim.ms_ssim(cp.asarray(x), cp.asarray(y), data_range=1.0, gradient="both",
                           return_scales=True, **kw)
    _close64(gpu.value, cpu.value, "map")
    _close64(gpu.scales, cpu.scales, "map")
    _close64(gpu.grad_x, cpu.grad_x, "gradient")
    _close64(gpu.grad_y, cpu.grad_y, "gradient")


@pytest.mark.parametrize("shape,kw", [((2, 20, 23, 25), {}),
                                      ((1, 12, 14, 16, 3), dict(window="uniform", win_size=5,
                                                                channel_axis=-1))])
def test_volumes_match_cpu(shape, kw):
    x, y = pair(shape, seed=79)
    cpu = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both", spatial_dims=3, **kw)
    gpu = fastssim.ssim(cp.asarray(x), cp.asarray(y), data_range=1.0, full=True,
                        gradient="both", spatial_dims=3, **kw)
    _close64(gpu.value, cpu.value, "map")
    _close64(gpu.map, cpu.map, "map")
    _close64(gpu.grad_x, cpu.grad_x, "gradient")
    _close64(gpu.grad_y, cpu.grad_y, "gradient")


@pytest.mark.parametrize("loss", ["ssim", "ms_ssim", "pixelwise_ms_ssim"])
def test_similarity_losses_match_cpu(loss):
    x, y = pair((2, 176, 180), seed=89)
    cpu = getattr(fastssim.losses, loss)(x, y, data_range=1.0, gradient=True)
    gpu = getattr(fastssim.losses, loss)(cp.asarray(x), cp.asarray(y), data_range=1.0,
                                         gradient=True)
    _close64(gpu.value, cpu.value, "map")
    _close64(gpu.grad, cpu.grad, "gradient")


def test_mixed_host_device_is_a_type_error():
    x, y = pair((16, 16))
    with pytest.raises(TypeError, match="x is a CuPy array .GPU. and y a numpy.ndarray"):
        fastssim.ssim(cp.asarray(x), y, data_range=1.0)


@pytest.mark.parametrize("kw", [dict(), dict(gaussian_weights=True, channel_axis=-1)])
def test_structural_similarity_on_the_device(kw):
    """The drop-in on CuPy arrays against the CPU drop-in (float64)."""
    x, y = pair((64, 70, 3) if "channel_axis" in kw else (64, 70), seed=97)
    v, g, s = fastssim.structural_similarity(x, y, data_range=1.0, gradient=True, full=True, **kw)
    vg, gg, sg = fastssim.structural_similarity(cp.asarray(x), cp.asarray(y), data_range=1.0,
                                                gradient=True, full=True, **kw)
    assert isinstance(vg, cp.ndarray) and vg.shape == ()
    _close64(vg, v, "value")
    _close64(sg, s, "map")
    _close64(gg, g, "gradient")
