"""The GPU backend's checks that need no GPU (issue 12): they run in CI.

* NVRTC compiles every kernel of every specialisation the library requests
  (fastssim._cupy._source.specialisations(): each compute type x input
  element type, radii 0..16, the per-pixel MS-SSIM radii and the widest that
  fits a tile) to PTX for compute_90 (H100/H200), and a subset for compute_80
  (A100).  NVRTC needs neither a GPU nor a driver; a syntax or template
  error fails here.  Skips only where libnvrtc is not installed (CI installs
  nvidia-cuda-nvrtc-cu12, see .ci/run).
* ``import fastssim`` imports neither CuPy nor the GPU backend.
* The dispatch: CuPy inputs (recognised by their type's module, here a fake
  class: no CuPy needed) go to fastssim._cupy, a host/device mix is a
  TypeError naming both arguments, uncovered functions say so.
* The GPU driver's argument validation (on the host) agrees with the CPU
  path's (fastssim._ssim.plan): same taps, constants and compute type, and
  the same error messages; needs CuPy importable (not a GPU).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fastssim
from fastssim import _dispatch
from fastssim._cupy import _nvrtc, _source

from conftest import pair

needs_nvrtc = pytest.mark.skipif(_nvrtc.find_nvrtc() is None,
                                 reason="NVRTC (libnvrtc) is not installed: "
                                        "pip install nvidia-cuda-nvrtc-cu12")

SPECS = _source.specialisations()
# A100 (compute_80): both compute types at the default radii and the widest
SPECS_80 = [s for s in SPECS if s[1] == s[0] and s[2] in (3, 5, _source.max_radius(s[0]))]


def _check_ptx(ptx, spec):
    entries = re.findall(r"\.visible \.entry (\w+)\(", ptx)
    assert sorted(entries) == sorted(_source.KERNELS), (spec, entries)
    real = "f64" if spec[0] == "float64" else "f32"
    # the formula's reciprocals are IEEE round-to-nearest in the compute type
    # (no fast-math approximations, which would break the 1e-12 agreement)
    assert re.search(rf"(div|rcp)\.rn\.{real}", ptx), spec
    # no approximate or flush-to-zero arithmetic (what --use_fast_math makes
    # of float32: rcp.approx.ftz.f32, fma.rn.ftz.f32); rcp.approx.ftz.f64
    # alone is allowed: libdevice seeds the IEEE double division with it
    assert not _fast_math(ptx), (spec, _fast_math(ptx))


def _fast_math(ptx):
    ops = set(re.findall(r"\b[a-z0-9]+(?:\.[a-z0-9]+)*\.f(?:32|64)\b", ptx))
    return sorted(o for o in ops if (".approx" in o or ".ftz" in o or ".full" in o)
                  and o != "rcp.approx.ftz.f64")


@needs_nvrtc
def test_fast_math_would_be_caught():
    """The PTX check above fails on a --use_fast_math build (so it can fail)."""
    ptx = _nvrtc.compile_ptx(_source.SOURCE, ("--std=c++14", "--use_fast_math")
                             + _source.options("float32", "float32", 5, 32), "compute_90")
    assert "rcp.approx.ftz.f32" in _fast_math(ptx)


def _ptx(spec, arch):
    """NVRTC's PTX of one specialisation, cached on disk by the hash of the
    source, options, architecture and NVRTC version (CI runs the suite
    several times on the same source: each specialisation compiles once)."""
    opts = ("--std=c++14",) + _source.options(*spec)
    key = hashlib.sha1(repr((_source.SOURCE, opts, arch, _nvrtc.version())).encode()).hexdigest()
    cache = Path(tempfile.gettempdir()) / f"fastssim-nvrtc-{os.getuid()}" / f"{key}.ptx"
    if cache.exists():
        return cache.read_text()
    ptx = _nvrtc.compile_ptx(_source.SOURCE, opts, arch)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(ptx)
    os.replace(tmp, cache)
    return ptx


@needs_nvrtc
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(map(str, s)))
def test_kernels_compile_sm90(spec):
    compute, element, radius, rows = spec
    assert rows > 0
    _check_ptx(_ptx(spec, "compute_90"), spec)


@needs_nvrtc
@pytest.mark.parametrize("spec", SPECS_80, ids=lambda s: "-".join(map(str, s)))
def test_kernels_compile_sm80(spec):
    _check_ptx(_ptx(spec, "compute_80"), spec)


@needs_nvrtc
def test_compile_error_is_reported():
    """A broken specialisation fails with NVRTC's log (the check can fail)."""
    with pytest.raises(_nvrtc.NVRTCError, match="FS_R|identifier"):
        _nvrtc.compile_ptx(_source.SOURCE, ("-DFS_REAL=double", "-DFS_XT=double"), "compute_90")


def test_tiles_fit_shared_memory():
    """Every specialisation's kernels fit the opt-in shared memory of an sm_90
    GPU (227 KiB); the forward tile of the default windows stays <= 96 KiB
    (two blocks per SM)."""
    for compute, _, radius, rows in SPECS:
        sm = _source.smem_bytes(compute, radius, rows)
        assert max(sm.values()) <= _source.MAX_SMEM
    for compute in ("float32", "float64"):
        for r in (3, 5):
            rows = _source.tile_rows(compute, r)
            assert rows == 32 and _source.smem_bytes(compute, r, rows)["fs_fwd"] <= 96 * 1024
    assert _source.tile_rows("float64", _source.max_radius("float64") + 1) == 0


def test_import_fastssim_does_not_import_cupy_or_the_gpu_backend():
    code = ("import sys, fastssim, numpy as np; "
            "fastssim.ssim(np.ones((16, 16)), np.ones((16, 16)), data_range=1.0); "
            "fastssim.losses.ssim(np.ones((16, 16)), np.ones((16, 16)), data_range=1.0); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cupy', 'cupyx', "
            "'cupy_backends') or m.startswith('fastssim._cupy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_importing_the_gpu_package_does_not_import_cupy():
    code = ("import sys, fastssim._cupy, fastssim._cupy._source, fastssim._cupy._nvrtc; "
            "print([m for m in sys.modules if m.split('.')[0] == 'cupy'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------- dispatch

class _Fake:
    """Claims to be a CuPy array (its type's module is cupy's): no CuPy needed."""
    __module__ = "cupy._core.core"

    def __init__(self, name="a"):
        self.name = name


_Fake.__name__ = _Fake.__qualname__ = "ndarray"


def test_is_cupy():
    assert _dispatch.is_cupy(_Fake())
    assert not _dispatch.is_cupy(np.zeros(2))
    assert not _dispatch.is_cupy([1.0])


PUBLIC = [
    (fastssim.ssim, "ssim", ("x", "y")),
    (fastssim.ssim_vjp, "ssim_vjp", ("x", "y")),
    (fastssim.ms_ssim, "ms_ssim", ("x", "y")),
    (fastssim.multiscale_structural_similarity, "multiscale_structural_similarity", ("im1", "im2")),
    (fastssim.pixelwise_ms_ssim, "pixelwise_ms_ssim", ("x", "y")),
    (fastssim.pixelwise_ms_ssim_vjp, "pixelwise_ms_ssim_vjp", ("x", "y")),
    (fastssim.structural_similarity, "structural_similarity", ("im1", "im2")),
    (fastssim.losses.l1, "losses.l1", ("prediction", "target")),
    (fastssim.losses.l2, "losses.l2", ("prediction", "target")),
    (fastssim.losses.ssim, "losses.ssim", ("prediction", "target")),
    (fastssim.losses.ms_ssim, "losses.ms_ssim", ("prediction", "target")),
    (fastssim.losses.pixelwise_ms_ssim, "losses.pixelwise_ms_ssim", ("prediction", "target")),
    (fastssim.losses.mix, "losses.mix", ("prediction", "target")),
]


@pytest.mark.parametrize("fn,name,names", PUBLIC, ids=[p[1] for p in PUBLIC])
def test_mixed_host_device_is_a_type_error_naming_both(fn, name, names):
    x, _ = pair((16, 16))
    a, b = names
    with pytest.raises(TypeError, match=re.escape(
            f"{a}: expected a NumPy array, got cupy._core.core.ndarray; fastssim never moves "
            f"data between host and device silently: {a} is a CuPy array (GPU) and {b} a "
            f"numpy.ndarray ({name})")):
        fn(_Fake(), x, data_range=1.0)
    with pytest.raises(TypeError, match=re.escape(f"{b} is a CuPy array (GPU) and {a} a numpy.ndarray")):
        fn(x, _Fake())
    with pytest.raises(TypeError, match=re.escape(f"{b} is a CuPy array (GPU) and {a} a numpy.ndarray")):
        fn(**{a: x, b: _Fake()})


@pytest.mark.parametrize("fn,name,names", PUBLIC, ids=[p[1] for p in PUBLIC])
def test_cupy_inputs_go_to_the_gpu_backend(fn, name, names, monkeypatch):
    """Both inputs on the device: the GPU implementation gets the call as made
    (positional or keyword pair), the CPU function is not run."""
    import fastssim._cupy as gpu

    seen = []

    def impl(n):
        def run(a, b, *args, **kw):
            seen.append((n, a.name, b.name, args, kw))
            return "gpu"
        return run

    monkeypatch.setattr(gpu, "implementation", impl)
    assert fn(_Fake("p"), _Fake("q"), "c", data_range=2.0) == "gpu"
    assert fn(**{names[0]: _Fake("p"), names[1]: _Fake("q")}, sigma=1.0) == "gpu"
    assert seen == [(name, "p", "q", ("c",), {"data_range": 2.0}),
                    (name, "p", "q", (), {"sigma": 1.0})]


def test_every_public_function_is_covered_and_others_say_so():
    from fastssim._cupy import COVERED, implementation

    assert set(COVERED) == {p[1] for p in PUBLIC}
    with pytest.raises(NotImplementedError, match=re.escape(
            "fastssim.no_such_function does not run on CuPy arrays yet")):
        implementation("no_such_function")


def test_covered_functions_exist():
    """Every covered name is a public function's dispatch name and resolves
    to a driver function (imports CuPy: skips without it)."""
    pytest.importorskip("cupy")
    from fastssim._cupy import COVERED, implementation

    names = {p[1] for p in PUBLIC}
    for n in COVERED:
        assert n in names
        assert callable(implementation(n))


def test_numpy_path_is_the_undecorated_function():
    x, y = pair((3, 20, 21), seed=4)
    inner = fastssim.ssim.__wrapped__
    a = fastssim.ssim(x, y, data_range=1.0, gradient="both")
    b = inner(x, y, data_range=1.0, gradient="both")
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


# ------------------------------------------------- the driver's validation

ARGS = [
    dict(shape=(40, 41)),
    dict(shape=(2, 3, 40, 41), channel_axis=1),
    dict(shape=(2, 40, 41, 3), channel_axis=-1, covariance="sample"),
    dict(shape=(40, 41), window="uniform", win_size=9, border="valid"),
    dict(shape=(40, 41), sigma=0.1),
    dict(shape=(40, 41), dtype=np.float32, K1=0.0),
    dict(shape=(40, 41), dtype=np.float32, data_range=1e20),  # float32 -> float64 constants
    dict(shape=(40, 41), dtype=np.uint8),
]


@pytest.mark.parametrize("kw", ARGS)
def test_driver_parameters_match_the_cpu_plan(kw):
    pytest.importorskip("cupy")
    from fastssim._cupy import _driver
    from fastssim import _plan

    kw = dict(kw)
    shape, dt = kw.pop("shape"), kw.pop("dtype", np.float64)
    x, y = pair(shape, dtype=dt, seed=1)
    full = dict(_driver._DEFAULTS, data_range=None if dt == np.uint8 else 1.0)
    full.update(kw)
    q = _driver._params(x, y, **full)
    p = _plan.ssim(x, y, full=True, grad=0, workers=1, **full)[0]
    (s,) = p.scales
    assert (tuple(q["taps"]), q["r"], q["C1"], q["C2"], q["cov"], q["spatial"],
            q["batch_shape"], q["nchan"], q["ftype"]) == (
        tuple(s.taps), (len(s.taps) - 1) // 2, p.C1, p.C2, s.cov, p.layout.spatial,
        p.layout.batch_shape, p.layout.nchan, p.layout.dtype)


BAD = [
    dict(data_range=None), dict(data_range=-1.0), dict(sigma=0.0), dict(window="box"),
    dict(win_size=7), dict(covariance="unbiased"), dict(border="same"), dict(K1=-0.1),
    dict(channel_axis=5), dict(sigma=4.0),
]


@pytest.mark.parametrize("kw", BAD)
def test_driver_errors_match_the_cpu_path(kw):
    pytest.importorskip("cupy")
    from fastssim._cupy import _driver

    x, y = pair((20, 21))
    full = dict(_driver._DEFAULTS, data_range=1.0)
    full.update(kw)
    with pytest.raises((ValueError, TypeError)) as cpu:
        fastssim.ssim(x, y, **full)
    with pytest.raises(cpu.type, match=re.escape(str(cpu.value))):
        _driver._params(x, y, **full)
