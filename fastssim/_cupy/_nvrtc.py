"""NVRTC without a GPU: compile the kernels to PTX through ctypes.

NVRTC is a pure compiler library: it needs neither a GPU nor a driver, so the
kernels of every specialisation can be compile-checked on any machine that has
``libnvrtc`` (the ``nvidia-cuda-nvrtc-cu12`` wheel, or a CUDA toolkit).  CuPy's
own ``compile_using_nvrtc`` asks the driver for the device's architecture, and
fails without one; this module does not.  Used by the tests and by
``fastssim.show_config``; never by the GPU path itself (that is
``cupy.RawModule``).
"""

from __future__ import annotations

import ctypes
import glob
import os

__all__ = ["find_nvrtc", "compile_ptx", "NVRTCError"]


class NVRTCError(RuntimeError):
    """NVRTC rejected a source; the message holds its log."""


def _candidates():
    names = ["libnvrtc.so.12", "libnvrtc.so.13", "libnvrtc.so"]
    try:  # the nvidia-cuda-nvrtc-cu12 wheel (a namespace package)
        import nvidia.cuda_nvrtc as pkg  # noqa: F401

        for root in list(getattr(pkg, "__path__", [])):
            for n in names:
                yield os.path.join(root, "lib", n)
    except ImportError:
        pass
    for env in ("CUDA_PATH", "CUDA_HOME"):
        if os.environ.get(env):
            for n in names:
                yield os.path.join(os.environ[env], "lib64", n)
    for n in names:
        yield n  # the loader's search path
    yield from sorted(glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*"))


_LIB = None


def find_nvrtc():
    """The loaded NVRTC library (ctypes.CDLL), or None where none is installed."""
    global _LIB
    if _LIB is not None:
        return _LIB
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            lib.nvrtcVersion  # noqa: B018 - the symbol must exist
        except (OSError, AttributeError):
            continue
        _LIB = lib
        return lib
    return None


def version():
    """(major, minor) of the NVRTC found, or None."""
    lib = find_nvrtc()
    if lib is None:
        return None
    a, b = ctypes.c_int(), ctypes.c_int()
    if lib.nvrtcVersion(ctypes.byref(a), ctypes.byref(b)) != 0:
        return None
    return a.value, b.value


def compile_ptx(source: str, options=(), arch: str = "compute_90", name: str = "fastssim.cu") -> str:
    """PTX of ``source`` compiled for the virtual architecture ``arch``;
    raises NVRTCError with the compiler log on any error."""
    lib = find_nvrtc()
    if lib is None:
        raise NVRTCError("NVRTC (libnvrtc) is not installed: pip install nvidia-cuda-nvrtc-cu12")
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None)
    if rc != 0:
        raise NVRTCError(f"nvrtcCreateProgram failed ({rc})")
    try:
        opts = [f"--gpu-architecture={arch}", *options]
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        n = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
        log = ctypes.create_string_buffer(n.value)
        lib.nvrtcGetProgramLog(prog, log)
        if rc != 0:
            raise NVRTCError(f"NVRTC error {rc} ({' '.join(options)}):\n"
                             + log.value.decode(errors="replace"))
        lib.nvrtcGetPTXSize(prog, ctypes.byref(n))
        ptx = ctypes.create_string_buffer(n.value)
        lib.nvrtcGetPTX(prog, ptx)
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
