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
        "simd": simd,
    }


def show_config(file=None) -> None:
    """Print the version, OpenMP status, default thread count and SIMD path."""
    c = config()
    lines = [
        f"fastssim {c['version']} (Python {c['python']}, {c['platform']})",
        f"  OpenMP:    {'enabled' if c['openmp'] else 'DISABLED (serial build)'}",
        f"  threads:   {c['threads']} (default for workers=None; {c['cpu_count']} CPUs)",
        f"  SIMD path: {c['simd']}",
    ]
    print("\n".join(lines), file=file or sys.stdout)
