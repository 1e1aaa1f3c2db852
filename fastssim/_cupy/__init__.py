"""The GPU backend: CuPy arrays in, CuPy arrays out (issue 12).

``import fastssim`` never imports this package, and importing it never
imports CuPy: :mod:`fastssim._dispatch` imports the driver (which imports
CuPy) only when a public function receives CuPy arrays.  The kernels are CUDA
C (``_source.SOURCE``) compiled at run time by NVRTC through
``cupy.RawModule``, cached per device and specialisation.

Status: the kernels are compile-checked by NVRTC in CI (tests/test_cupy_compile.py);
their results have not yet been validated on a GPU (tests/test_cupy_device.py and
benchmarks/gpu_check.py do that where a GPU exists).
"""

from __future__ import annotations

import importlib.util

__all__ = ["implementation", "COVERED", "info"]

# public function (as _dispatch names it) -> driver function
COVERED = {
    "ssim": "ssim",
    "ssim_vjp": "ssim_vjp",
    "losses.ssim": "loss_ssim",
    "pixelwise_ms_ssim": "pixelwise_ms_ssim",
    "pixelwise_ms_ssim_vjp": "pixelwise_ms_ssim_vjp",
    "losses.pixelwise_ms_ssim": "loss_pixelwise_ms_ssim",
    "losses.mix": "loss_mix",
    "losses.l1": "loss_l1",
    "losses.l2": "loss_l2",
    "ms_ssim": "ms_ssim",
    "losses.ms_ssim": "loss_ms_ssim",
    "multiscale_structural_similarity": "multiscale_structural_similarity",
    "structural_similarity": "structural_similarity",
}


def implementation(name):
    """The GPU implementation of public function ``name``; NotImplementedError
    (naming it and what to do) for the functions the GPU backend does not
    cover yet."""
    if name not in COVERED:
        raise NotImplementedError(
            f"fastssim.{name} does not run on CuPy arrays yet (the GPU backend covers "
            f"{', '.join('fastssim.' + n for n in COVERED)}); pass NumPy arrays "
            "(cupy.asnumpy(a)) to compute it on the CPU")
    from . import _driver

    return getattr(_driver, COVERED[name])


def info() -> dict:
    """The GPU backend's availability, for show_config: CuPy version, the
    current device, NVRTC version (never raises)."""
    out = {"cupy": None, "device": None, "nvrtc": None}
    try:
        from . import _nvrtc

        v = _nvrtc.version()
        out["nvrtc"] = f"{v[0]}.{v[1]}" if v else None
    except Exception:  # pragma: no cover - a broken library
        pass
    if importlib.util.find_spec("cupy") is None:
        return out
    try:
        import cupy

        out["cupy"] = cupy.__version__
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        out["device"] = f"{dev.id}: {name.decode() if isinstance(name, bytes) else name}"
    except Exception as exc:  # no driver / no GPU
        out["device"] = f"none ({type(exc).__name__})"
    return out
