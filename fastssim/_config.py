"""Build and runtime configuration report."""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["show_config", "config"]


def config() -> dict:
    """The facts :func:`show_config` prints, as a dict."""
    from . import __version__, _core

    openmp, threads, simd = _core.engine_info()
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "openmp": openmp,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        # the GPU backend (issue 12): CuPy version, device, NVRTC (CuPy is
        # imported here only if installed; never by `import fastssim`)
        "gpu": _gpu_info(),
        "simd": simd,
    }


def _gpu_info() -> dict:
    from ._cupy import info

    return info()


def show_config(file=None) -> None:
    """Print the version, OpenMP status, default thread count and SIMD path."""
    c = config()
    lines = [
        f"fastssim {c['version']} (Python {c['python']}, {c['platform']})",
        f"  OpenMP:    {'enabled' if c['openmp'] else 'DISABLED (serial build)'}",
        f"  threads:   {c['threads']} (default for workers=None; {c['cpu_count']} CPUs)",
        f"  SIMD path: {c['simd']}",
        _gpu_line(c["gpu"]),
    ]
    print("\n".join(lines), file=file or sys.stdout)


def _gpu_line(g: dict) -> str:
    """The GPU backend's line of show_config."""
    if g["cupy"] is None:
        state = "unavailable (CuPy not installed: pip install \"fastssim[cupy]\")"
    else:
        state = f"CuPy {g['cupy']}, device {g['device']}"
    nvrtc = g["nvrtc"] or "not found"
    return (f"  GPU:       {state}; NVRTC {nvrtc} "
            "(kernels compile-checked; results not yet validated on a GPU)")
