"""The GPU kernels executed on the CPU, against the CPU engine (issue 12).

No GPU is needed: tests/cuda_emulator.cpp compiles the kernel source
(fastssim/_cupy/_source.py) verbatim as C++ with g++, every CUDA thread of a
block a std::thread and __syncthreads() a std::barrier, and the GPU driver
(fastssim._cupy._driver) runs with that in place of cupy.RawModule and NumPy
in place of CuPy.  So the driver's layouts, band tables, offsets and sum
regions and the kernels' tiling, indexing, formulas and fixed-order
reductions are all executed.  What this cannot check is the GPU itself
(FMA contraction, the memory model, launch limits): tests/test_cupy_device.py
does that on a GPU.

Reference: the CPU backend (the same public function on the same arrays).
Tolerance: float64 values and maps to 1e-12 (relative to max(1, |value|)),
gradients to 1e-12 of their largest element; float32 to the CPU float64
result within 2e-6 (values) and 2e-5 (maps), the float32 accuracy
tests/test_exactness.py states for the CPU engine.  Skips where g++ with
C++20 <barrier> is missing.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fastssim
from fastssim._cupy import _driver, _source

from conftest import pair

HERE = Path(__file__).parent
GXX = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("g++")


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """Swap the driver's kernel provider for the emulator (built per specialisation)."""
    if GXX is None:
        pytest.skip("no C++ compiler (g++) for the kernel emulator")
    # Builds are cached on disk by the hash of everything that goes into them
    # (kernel source, emulator, options, compiler): CI runs the suite several
    # times (SIMD paths, serial build) and compiles each specialisation once.
    emu_src = (HERE / "cuda_emulator.cpp").read_text()
    digest = hashlib.sha1((_source.SOURCE + emu_src + GXX).encode()).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / f"fastssim-cuda-emu-{os.getuid()}" / digest
    root.mkdir(parents=True, exist_ok=True)
    (root / "fastssim_kernels.cu").write_text(_source.SOURCE)
    (root / "cuda_emulator.cpp").write_text(emu_src)
    libs = {}

    def provider(compute, element, radius, rows):
        key = (compute, element, radius, rows)
        if key not in libs:
            opts = [o for o in _source.options(*key)]
            tag = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
            so = root / f"emu_{tag}.so"
            if not so.exists():
                tmp = root / f"emu_{tag}.{os.getpid()}.tmp.so"
                cmd = [GXX, "-std=c++20", "-O1", "-pthread", "-shared", "-fPIC",
                       f"-I{root}", *opts, str(root / "cuda_emulator.cpp"), "-o", str(tmp)]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    if "barrier" in res.stderr and "No such file" in res.stderr:
                        pytest.skip("the C++ compiler has no C++20 <barrier>")
                    raise RuntimeError(res.stderr)
                os.replace(tmp, so)  # atomic: a concurrent run never loads half a file
            lib = ctypes.CDLL(str(so))
            lib.emu_launch.restype = ctypes.c_int
            libs[key] = lib
        lib = libs[key]
        return {name: _kernel(lib, name) for name in _source.KERNELS}

    old = _driver.KERNELS
    _driver.KERNELS = provider
    _driver._TABLES.clear()
    yield
    _driver.KERNELS = old
    _driver._TABLES.clear()


_CT = {np.int32: ctypes.c_int32, np.int64: ctypes.c_int64, np.uint64: ctypes.c_uint64,
       np.float32: ctypes.c_float, np.float64: ctypes.c_double}


def _kernel(lib, name):
    def launch(grid, block, args, shared_mem=0):
        assert shared_mem <= _source.MAX_SMEM
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        assert grid[1] <= 65535 and grid[2] <= 65535
        keep = []
        for a in args:
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous
                keep.append(ctypes.c_void_p(a.ctypes.data))
            else:
                keep.append(_CT[type(a)](a))
        ptrs = (ctypes.c_void_p * len(keep))(*[ctypes.cast(ctypes.pointer(k), ctypes.c_void_p)
                                               for k in keep])
        rc = lib.emu_launch(name.encode(), *[ctypes.c_uint(v) for v in grid + block], ptrs)
        assert rc == 0
    return launch


def _close(g, c, what, tol=1e-12):
    g, c = np.asarray(g), np.asarray(c)
    assert g.shape == c.shape, (what, g.shape, c.shape)
    scale = max(1.0, float(np.max(np.abs(c)))) if what != "gradient" else float(np.max(np.abs(c)))
    err = float(np.max(np.abs(g.astype(np.float64) - c)))
    assert err <= tol * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


CASES = [
    ((37, 53), {}),
    ((11, 11), {}),
    ((12, 13), dict(window="uniform", win_size=3)),
    ((2, 40, 33), {}),
    ((1, 19, 45, 3), dict(channel_axis=-1)),
    ((2, 3, 21, 25), dict(channel_axis=1)),
    ((40, 36), dict(window="uniform", win_size=7, covariance="sample")),
    ((30, 34), dict(sigma=0.5)),
    ((45, 40), dict(sigma=3.0)),
    ((40, 41), dict(border="valid")),
    ((23, 40), dict(K1=0.0, K2=0.0)),
    ((9, 35), dict(window="uniform", win_size=9)),
    ((58, 60), dict(sigma=8.0)),  # r = 28: the 8-row tile (float64)
]


@pytest.mark.parametrize("shape,kw", CASES, ids=[f"{s}-{k}" for s, k in CASES])
@pytest.mark.parametrize("gradient", [None, "both"])
def test_ssim_float64_matches_cpu(emulated, shape, kw, gradient):
    x, y = pair(shape, seed=len(shape) * 7 + shape[-1])
    cpu = fastssim.ssim(x, y, data_range=1.0, full=True, gradient=gradient, **kw)
    gpu = _driver.ssim(x, y, data_range=1.0, full=True, gradient=gradient, **kw)
    _close(gpu.value, cpu.value, "value")
    _close(gpu.map, cpu.map, "map")
    assert gpu.map.dtype == cpu.map.dtype
    for a, b in ((gpu.grad_x, cpu.grad_x), (gpu.grad_y, cpu.grad_y)):
        assert (a is None) == (b is None)
        if b is not None:
            _close(a, b, "gradient")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_integer_inputs(emulated, dtype):
    x, y = pair((25, 38), dtype=dtype, seed=5)
    cpu = fastssim.ssim(x, y, gradient="y")
    gpu = _driver.ssim(x, y, gradient="y")
    _close(gpu.value, cpu.value, "value")
    _close(gpu.grad_y, cpu.grad_y, "gradient")


def test_broadcast_batch(emulated):
    x, _ = pair((1, 20, 21), seed=8)
    _, y = pair((3, 20, 21), seed=9)
    cpu = fastssim.ssim(x, y, data_range=1.0, gradient="both")
    gpu = _driver.ssim(x, y, data_range=1.0, gradient="both")
    _close(gpu.value, cpu.value, "value")
    _close(gpu.grad_x, cpu.grad_x, "gradient")
    _close(gpu.grad_y, cpu.grad_y, "gradient")


@pytest.mark.parametrize("shape,kw", [((25, 27), {}), ((2, 17, 19, 3), dict(channel_axis=-1)),
                                      ((21, 22), dict(border="valid", window="uniform",
                                                      win_size=5))])
@pytest.mark.parametrize("wrt", ["x", "y", "both"])
def test_vjp_matches_cpu(emulated, shape, kw, wrt):
    x, y = pair(shape, seed=11)
    m = fastssim.ssim(x, y, data_range=1.0, full=True, **kw).map
    w = np.random.default_rng(3).standard_normal(m.shape)
    cpu = fastssim.ssim_vjp(x, y, w, wrt=wrt, data_range=1.0, **kw)
    gpu = _driver.ssim_vjp(x, y, w, wrt=wrt, data_range=1.0, **kw)
    for a, b in zip(gpu if wrt == "both" else (gpu,), cpu if wrt == "both" else (cpu,)):
        _close(a, b, "gradient")


@pytest.mark.parametrize("kw", [{}, dict(window="uniform", win_size=5)])
def test_float32_within_the_stated_tolerance(emulated, kw):
    x, y = pair((2, 27, 31), seed=13)
    ref = fastssim.ssim(x, y, data_range=1.0, full=True, **kw)
    gpu = _driver.ssim(x.astype(np.float32), y.astype(np.float32), data_range=1.0, full=True, **kw)
    assert gpu.map.dtype == np.float32
    _close(gpu.value, ref.value, "value", 2e-6)
    _close(gpu.map, ref.map, "map", 2e-5)


def test_loss_ssim(emulated):
    x, y = pair((2, 23, 24), seed=23)
    cpu = fastssim.losses.ssim(x, y, data_range=1.0, gradient=True, full=True)
    gpu = _driver.loss_ssim(x, y, data_range=1.0, gradient=True, full=True)
    _close(gpu.value, cpu.value, "value")
    _close(gpu.grad, cpu.grad, "gradient")
    _close(gpu.map, cpu.map, "map")


def test_nan_propagates_like_the_cpu(emulated):
    x, y = pair((24, 25), seed=29)
    x[3, 20] = np.nan
    cpu = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="x")
    gpu = _driver.ssim(x, y, data_range=1.0, full=True, gradient="x")
    np.testing.assert_array_equal(np.isnan(gpu.map), np.isnan(cpu.map))
    np.testing.assert_array_equal(np.isnan(gpu.grad_x), np.isnan(cpu.grad_x))
    assert np.isnan(gpu.value) and np.isnan(cpu.value)


def test_identical_inputs_give_exactly_one(emulated):
    x, _ = pair((26, 27), seed=31)
    r = _driver.ssim(x, x.copy(), data_range=1.0, full=True, gradient="x")
    assert float(r.value) == 1.0 and np.all(r.map == 1.0) and np.all(r.grad_x == 0.0)



@pytest.mark.parametrize("shape,dtype,kw", [
    ((3, 70, 90), np.float64, {}),
    ((2, 33, 40, 3), np.float32, dict(channel_axis=-1)),
    ((2, 40, 41), np.uint16, {}),
])
def test_plane_shifts_match_the_cpu_engine(emulated, shape, dtype, kw):
    """The shift kernel against the CPU engine's (fastssim._engine.shifts) on
    planes given distinct offsets (a wrong plane or channel stride is off by
    >= 100): equal, or one rounding quantum (<= the plane's spread, 0.3 here)
    apart where the sampled mean ties (the GPU sums in another order)."""
    from fastssim import _engine

    x, y = pair(shape, dtype=np.float64, seed=37)
    nch = shape[-1] if kw else 1
    off = 100.0 * np.arange(np.prod(shape[:1]) * nch).reshape(
        (shape[0],) + (1,) * (len(shape) - 1 - bool(kw)) + ((nch,) if kw else ()))
    if dtype == np.uint16:
        x, y = ((a * 1000 + off * 50).astype(np.uint16) for a in (x, y))
    else:
        x, y = ((a + 1000 + off).astype(dtype) for a in (x, y))
    full = dict(_driver._DEFAULTS, data_range=1.0 if dtype != np.uint16 else None, **kw)
    q = _driver._params(x, y, **full)
    lay = _driver._Layout(x, y, q)
    got = _driver.plane_shifts(lay)
    dims = (q["spatial"][0], 1, q["spatial"][1])
    in_type = 0 if lay.element == np.dtype(q["ftype"]).name else {
        "uint8": 1, "uint16": 2, "int8": 3, "int16": 4, "float32": 5}[lay.element]
    spread = 0.3 * (1000 if dtype == np.uint16 else 1)
    for side, a in enumerate((lay.xe, lay.ye)):
        ref, _ = _engine.shifts(a, a, lay.P, dims, lay.nci, in_type, q["ftype"] == np.float64)
        assert got[side].shape == ref.shape == (lay.P,)
        assert np.all(np.abs(got[side] - ref) <= spread), (got[side], ref)


PIXELWISE = [
    ((58, 60), {}),  # the paper's five sigmas, r = 2 .. 28
    ((2, 30, 31), dict(sigmas=(0.5, 1.5), border="valid")),
    ((1, 24, 26, 3), dict(sigmas=(1.0, 2.0, 3.0), channel_axis=-1, covariance="sample")),
]


@pytest.mark.parametrize("shape,kw", PIXELWISE)
@pytest.mark.parametrize("gradient", [None, "both"])
def test_pixelwise_ms_ssim_matches_cpu(emulated, shape, kw, gradient):
    x, y = pair(shape, seed=41)
    cpu = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, full=True, gradient=gradient, **kw)
    gpu = _driver.pixelwise_ms_ssim(x, y, data_range=1.0, full=True, gradient=gradient, **kw)
    _close(gpu.value, cpu.value, "value")
    _close(gpu.map, cpu.map, "map")
    for a, b in ((gpu.grad_x, cpu.grad_x), (gpu.grad_y, cpu.grad_y)):
        assert (a is None) == (b is None)
        if b is not None:
            _close(a, b, "gradient")


@pytest.mark.parametrize("wrt", ["x", "both"])
def test_pixelwise_vjp_matches_cpu(emulated, wrt):
    x, y = pair((2, 27, 29), seed=43)
    kw = dict(data_range=1.0, sigmas=(0.5, 1.0, 2.0))
    w = np.random.default_rng(5).standard_normal(x.shape)
    cpu = fastssim.pixelwise_ms_ssim_vjp(x, y, w, wrt=wrt, **kw)
    gpu = _driver.pixelwise_ms_ssim_vjp(x, y, w, wrt=wrt, **kw)
    for a, b in zip(gpu if wrt == "both" else (gpu,), cpu if wrt == "both" else (cpu,)):
        _close(a, b, "gradient")


@pytest.mark.parametrize("kw", [dict(sigmas=(0.5, 1.0, 2.0)),
                                dict(sigmas=(1.0, 2.0), channel_axis=-1, alpha=0.5)])
def test_losses_pixelwise_and_mix_match_cpu(emulated, kw):
    shape = (2, 25, 26, 3) if "channel_axis" in kw else (2, 25, 26)
    x, y = pair(shape, seed=47)
    pw_kw = {k: v for k, v in kw.items() if k != "alpha"}
    cpu = fastssim.losses.pixelwise_ms_ssim(x, y, data_range=1.0, gradient=True, full=True, **pw_kw)
    gpu = _driver.loss_pixelwise_ms_ssim(x, y, data_range=1.0, gradient=True, full=True, **pw_kw)
    _close(gpu.value, cpu.value, "value")
    _close(gpu.grad, cpu.grad, "gradient")
    _close(gpu.map, cpu.map, "map")
    cpu = fastssim.losses.mix(x, y, data_range=1.0, gradient=True, full=True, **kw)
    gpu = _driver.loss_mix(x, y, data_range=1.0, gradient=True, full=True, **kw)
    _close(gpu.value, cpu.value, "value")
    _close(gpu.grad, cpu.grad, "gradient")
    _close(gpu.map, cpu.map, "map")
    v = _driver.loss_mix(x, y, data_range=1.0, **kw)
    _close(v, cpu.value, "value")


@pytest.mark.parametrize("kind", ["l1", "l2"])
@pytest.mark.parametrize("shapes,kw", [(((2, 9, 10), (2, 9, 10)), {}),
                                       (((1, 9, 10, 3), (4, 9, 10, 3)), dict(channel_axis=-1)),
                                       (((9, 10), (3, 9, 10)), {})])
def test_pointwise_losses_match_cpu(kind, shapes, kw):
    """l1/l2 need no kernel: the GPU functions' array code, run by NumPy,
    against the CPU functions (bitwise: the same operations)."""
    rng = np.random.default_rng(59)
    x, y = (rng.random(s) for s in shapes)
    x[..., 0, 0] = y[..., 0, 0] if x.shape == y.shape else x[..., 0, 0]  # sign(0) = 0
    cpu = getattr(fastssim.losses, kind)(x, y, gradient=True, full=True, **kw)
    gpu = getattr(_driver, f"loss_{kind}")(x, y, gradient=True, full=True, **kw)
    for a, b in zip(gpu, cpu):
        np.testing.assert_array_equal(a, b)


MSSSIM = [
    ((37, 41), dict(weights=(0.3, 0.3, 0.4), window="uniform", win_size=5)),
    ((2, 30, 33), dict(weights=(0.5, 0.5, 1.0), window="uniform", win_size=3,
                       downsample="zero", negative="simple")),
    ((1, 31, 29, 3), dict(weights=(0.2, 0.8), sigma=1.0, channel_axis=-1, downsample="drop")),
    ((2, 35, 34), dict(weights=(0.2, 0.3, 0.5), window="uniform", win_size=5,
                       downsample="replicate", negative="none", covariance="sample")),
    ((12, 40), dict(weights=(0.5, 0.5, 0.5), window="uniform", win_size=5, fit_scales=True)),
    ((161, 165), {}),  # Wang's defaults: 5 scales, 11-tap Gaussian
    # volumes (spatial_dims=3): the pyramid's two-pass downsampling and its adjoint
    ((13, 15, 14), dict(weights=(0.4, 0.6), window="uniform", win_size=3, spatial_dims=3)),
    ((2, 11, 13, 12), dict(weights=(0.3, 0.3, 0.4), window="uniform", win_size=3,
                           spatial_dims=3, downsample="replicate", covariance="sample")),
    ((1, 12, 11, 14, 2), dict(weights=(0.5, 0.5), window="uniform", win_size=3, spatial_dims=3,
                              channel_axis=-1, downsample="zero", negative="simple")),
    ((16, 17, 15), dict(weights=(0.5, 0.5), sigma=0.8, spatial_dims=3, downsample="drop")),
]


@pytest.mark.parametrize("shape,kw", MSSSIM)
@pytest.mark.parametrize("gradient", [None, "both"])
def test_ms_ssim_matches_cpu(emulated, shape, kw, gradient):
    x, y = pair(shape, seed=67)
    cpu = fastssim.ms_ssim(x, y, data_range=1.0, gradient=gradient, return_scales=True, **kw)
    gpu = _driver.ms_ssim(x, y, data_range=1.0, gradient=gradient, return_scales=True, **kw)
    _close(gpu.value, cpu.value, "value")
    _close(gpu.scales, cpu.scales, "value")
    for a, b in ((gpu.grad_x, cpu.grad_x), (gpu.grad_y, cpu.grad_y)):
        assert (a is None) == (b is None)
        if b is not None:
            _close(a, b, "gradient")


def test_ms_ssim_loss_and_errors(emulated):
    x, y = pair((2, 30, 31), seed=71)
    kw = dict(weights=(0.5, 0.5), window="uniform", win_size=5)
    cpu = fastssim.losses.ms_ssim(x, y, data_range=1.0, gradient=True, **kw)
    gpu = _driver.loss_ms_ssim(x, y, data_range=1.0, gradient=True, **kw)
    _close(gpu.value, cpu.value, "value")
    _close(gpu.grad, cpu.grad, "gradient")
    assert gpu.map is None
    for bad in (dict(downsample="bogus"), dict(negative="bogus"), dict(weights=(0.5,) * 6)):
        with pytest.raises(ValueError) as e:
            fastssim.ms_ssim(x, y, data_range=1.0, **dict(kw, **bad))
        with pytest.raises(ValueError, match=re.escape(str(e.value))):
            _driver.ms_ssim(x, y, data_range=1.0, **dict(kw, **bad))


def test_multiscale_structural_similarity_matches_cpu(emulated):
    x, y = pair((30, 33, 3), dtype=np.uint8, seed=73)
    kw = dict(channel_axis=-1, weights=(0.5, 0.5), sigma=1.0, gradient=True)
    v_cpu, g_cpu = fastssim.multiscale_structural_similarity(x, y, **kw)
    v_gpu, g_gpu = _driver.multiscale_structural_similarity(x, y, **kw)
    _close(v_gpu, v_cpu, "value")
    _close(g_gpu, g_cpu, "gradient")
    with pytest.raises(ValueError, match="supports 2-D and 3-D images, got 1 spatial"):
        _driver.multiscale_structural_similarity(x[0], y[0], channel_axis=-1)


@pytest.mark.parametrize("gradient", ["x", "y", "both"])
def test_ssim_writes_into_the_callers_buffers(emulated, gradient):
    """map_out / grad_out on the GPU path: the very buffers come back, holding
    the CPU's map and gradients (broadcast batch: the summed gradient)."""
    x, y = pair((3, 2, 20, 23), seed=101)
    y = y[:1]  # broadcast along the first batch axis
    kw = dict(data_range=1.0, full=True, gradient=gradient)
    cpu = fastssim.ssim(x, y, **kw)
    m = np.full(cpu.map.shape, np.nan)
    gx, gy = np.full(x.shape, np.nan), np.full(y.shape, np.nan)
    gout = (gx, gy) if gradient == "both" else gx if gradient == "x" else gy
    res = _driver.ssim(x, y, map_out=m, grad_out=gout, **kw)
    assert res.map is m
    _close(m, cpu.map, "map")
    for got, want, buf in ((res.grad_x, cpu.grad_x, gx), (res.grad_y, cpu.grad_y, gy)):
        if want is not None:
            assert got is buf
            _close(buf, want, "gradient")


def test_ssim_buffer_errors_as_on_the_cpu(emulated):
    x, y = pair((20, 21), seed=103)
    good = np.empty((20, 21))
    for bad in (dict(map_out=good), dict(full=True, map_out=np.empty((20, 20))),
                dict(full=True, map_out=np.empty((20, 21), np.float32)),
                dict(full=True, map_out=np.empty((21, 20)).T),
                dict(full=True, map_out=x), dict(gradient="both", grad_out=good),
                dict(gradient="y", grad_out=[1.0]), dict(grad_out=good)):
        with pytest.raises((ValueError, TypeError)) as e:
            fastssim.ssim(x, y, data_range=1.0, **bad)
        with pytest.raises(type(e.value), match=re.escape(str(e.value))):
            _driver.ssim(x, y, data_range=1.0, **bad)


SKIMAGE_CASES = [
    ((37, 41), np.uint8, {}),
    ((30, 33, 3), np.uint8, dict(channel_axis=-1, gaussian_weights=True)),
    ((3, 26, 29), np.float64, dict(channel_axis=0, data_range=1.0, win_size=5,
                                    use_sample_covariance=False)),
    ((31, 30), np.float64, dict(data_range=1.0, gaussian_weights=True, sigma=1.0,
                                win_size=3)),  # the crop (3) narrower than the window (9)
    ((11, 12, 13), np.float64, dict(data_range=2.0, win_size=3)),  # a volume
    ((25, 27), np.float32, dict(data_range=1.0, gaussian_weights=True)),
]


@pytest.mark.parametrize("shape,dtype,kw", SKIMAGE_CASES,
                         ids=[f"{s}-{d.__name__}-{k}" for s, d, k in SKIMAGE_CASES])
def test_structural_similarity_matches_cpu(emulated, shape, dtype, kw):
    """The drop-in on the GPU path against the CPU drop-in (itself checked
    against scikit-image in test_drop_in.py): value, gradient w.r.t. im2 and
    the same-size map, in the order scikit-image returns them."""
    x, y = pair(shape, dtype=dtype, seed=83)
    v_cpu, g_cpu, s_cpu = fastssim.structural_similarity(x, y, gradient=True, full=True, **kw)
    v_gpu, g_gpu, s_gpu = _driver.structural_similarity(x, y, gradient=True, full=True, **kw)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    _close(v_gpu, v_cpu, "value", tol)
    _close(s_gpu, s_cpu, "map", 2e-5 if dtype == np.float32 else 1e-12)
    _close(g_gpu, g_cpu, "gradient", 2e-5 if dtype == np.float32 else 1e-12)
    assert g_gpu.dtype == g_cpu.dtype and s_gpu.dtype == s_cpu.dtype
    assert float(_driver.structural_similarity(x, y, **kw)) == float(v_gpu)


def test_structural_similarity_errors_and_warnings_as_on_the_cpu(emulated):
    def dispatched(*a, **k):  # the frame fastssim._dispatch.gpu_dispatch adds on a GPU
        return _driver.structural_similarity(*a, **k)

    x, y = pair((20, 20), dtype=np.uint16, seed=89)
    for bad in (dict(win_size=4), dict(win_size=31), dict(K1=-1.0), dict(gradient=1),
                dict(data_range=0.0)):
        with pytest.raises((ValueError, TypeError)) as e:
            fastssim.structural_similarity(x, y, **bad)
        with pytest.raises(type(e.value), match=re.escape(str(e.value))):
            dispatched(x, y, **bad)
    with pytest.warns(UserWarning, match="Setting data_range based on im1.dtype") as rec:
        dispatched(x, y)
    assert rec[0].filename == __file__  # attributed to the caller's line
    with pytest.raises(NotImplementedError, match="1-D images"):
        dispatched(x[0], y[0], win_size=3, data_range=65535)


VOLUMES = [
    ((13, 14, 15), {}),
    ((2, 9, 12, 11), dict(window="uniform", win_size=3, border="valid")),
    ((1, 8, 9, 10, 3), dict(window="uniform", win_size=5, channel_axis=-1,
                            covariance="sample")),
    ((2, 2, 7, 8, 9), dict(window="uniform", win_size=3, channel_axis=1)),
]


@pytest.mark.parametrize("shape,kw", VOLUMES)
@pytest.mark.parametrize("gradient", [None, "both"])
def test_volumes_match_cpu(emulated, shape, kw, gradient):
    x, y = pair(shape, seed=79)
    cpu = fastssim.ssim(x, y, data_range=1.0, full=True, gradient=gradient, spatial_dims=3, **kw)
    gpu = _driver.ssim(x, y, data_range=1.0, full=True, gradient=gradient, spatial_dims=3, **kw)
    _close(gpu.value, cpu.value, "value")
    _close(gpu.map, cpu.map, "map")
    for a, b in ((gpu.grad_x, cpu.grad_x), (gpu.grad_y, cpu.grad_y)):
        assert (a is None) == (b is None)
        if b is not None:
            _close(a, b, "gradient")


def test_volume_vjp_and_pixelwise_match_cpu(emulated):
    x, y = pair((2, 10, 11, 12), seed=83)
    kw = dict(data_range=1.0, spatial_dims=3)
    w = np.random.default_rng(7).standard_normal(x.shape)
    _close(_driver.ssim_vjp(x, y, w, wrt="y", window="uniform", win_size=3, **kw),
           fastssim.ssim_vjp(x, y, w, wrt="y", window="uniform", win_size=3, **kw), "gradient")
    pw = dict(kw, sigmas=(0.5, 1.0))
    cpu = fastssim.pixelwise_ms_ssim(x, y, full=True, gradient="x", **pw)
    gpu = _driver.pixelwise_ms_ssim(x, y, full=True, gradient="x", **pw)
    _close(gpu.value, cpu.value, "value")
    _close(gpu.map, cpu.map, "map")
    _close(gpu.grad_x, cpu.grad_x, "gradient")


@pytest.mark.parametrize("kw", [{}, dict(channel_axis=-1)])
def test_float16_inputs_read_in_kernel(emulated, kw):
    """float16 read as its bits and converted in the kernel: the CPU converts
    to float32 planes first, the same values, so float32 agreement to the
    float32 accuracy (reference: the CPU's float64 result of the same values)."""
    shape = (2, 30, 31, 3) if kw else (2, 30, 31)
    x, y = pair(shape, dtype=np.float16, seed=97)
    x[0, 3, 4] = np.float16(6e-6)  # a subnormal half
    ref = fastssim.ssim(x.astype(np.float64), y.astype(np.float64), data_range=1.0, full=True,
                        gradient="x", **kw)
    gpu = _driver.ssim(x, y, data_range=1.0, full=True, gradient="x", **kw)
    assert gpu.map.dtype == np.float32
    _close(gpu.value, ref.value, "value", 2e-6)
    _close(gpu.map, ref.map, "map", 2e-5)
    _close(gpu.grad_x, ref.grad_x, "gradient", 1e-4)
    cpu32 = fastssim.ssim(x, y, data_range=1.0, full=True, **kw)
    _close(gpu.value, cpu32.value, "value", 2e-6)
