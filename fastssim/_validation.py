"""Validation and normalisation shared by every public function.

Everything a user can get wrong is checked here, before any native code runs,
and each message names the argument, what was received and what is expected.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

__all__ = [
    "float_type",
    "check_pair",
    "check_layout",
    "as_planes",
    "resolve_workers",
    "check_data_range",
    "check_positive",
    "check_channel_axis",
    "dtype_range",
]

# Value range per dtype, as scikit-image's ``skimage.util.dtype.dtype_range``.
dtype_range = {
    np.bool_: (False, True),
    np.float16: (-1, 1),
    np.float32: (-1, 1),
    np.float64: (-1, 1),
}
for _t in (np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64):
    _info = np.iinfo(_t)
    dtype_range[_t] = (_info.min, _info.max)


def float_type(dtype: np.dtype) -> np.dtype:
    """scikit-image's dtype policy: float16/float32 -> float32, anything else -> float64."""
    dtype = np.dtype(dtype)
    # by kind and size, not equality: dtype('>f4') != float32 (byte order)
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _check_array(a, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        mod = type(a).__module__.split(".")[0]
        if mod in ("cupy", "torch", "jax", "jaxlib", "dask", "tensorflow"):
            raise TypeError(
                f"{name}: expected a NumPy array, got {type(a).__module__}.{type(a).__name__}; "
                "fastssim never moves data between devices or frameworks silently: "
                "convert it explicitly (e.g. .get(), .numpy(), np.asarray())"
            )
        try:
            a = np.asarray(a)
        except Exception as exc:  # pragma: no cover - exotic objects
            raise TypeError(f"{name}: expected an array-like of numbers, got {type(a).__name__}") from exc
    if a.dtype.kind not in "biuf":
        raise TypeError(
            f"{name}: expected a real numeric array (bool, integer or float), got dtype {a.dtype}"
        )
    if a.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {a.shape}")
    return a


def check_pair(x, y, names=("x", "y")):
    """Both inputs as NumPy arrays of real numbers with the same shape."""
    x = _check_array(x, names[0])
    y = _check_array(y, names[1])
    if x.shape != y.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {x.shape} and {y.shape}"
        )
    return x, y


def check_layout(x, y, channel_axis, spatial_dims, names=("x", "y")):
    """The pair as arrays of one shape, with enough axes for ``spatial_dims`` spatial
    axes (2 or 3) plus the channel axis; returns (x, y, normalised channel axis)."""
    x, y = check_pair(x, y, names)
    if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
        raise ValueError(f"spatial_dims: expected 2 (images) or 3 (volumes), got {spatial_dims!r}")
    cax = check_channel_axis(channel_axis, x.ndim)
    need = spatial_dims + (cax is not None)
    if x.ndim < need:
        raise ValueError(
            f"{names[0]} has shape {x.shape}: expected at least {spatial_dims} spatial dimensions"
            + (" plus the channel axis" if cax is not None else "")
            + "; for a single 1-D signal add an axis, for volumes set spatial_dims=3"
        )
    return x, y, cax


def check_channel_axis(channel_axis, ndim: int, name: str = "channel_axis"):
    """Normalised channel axis (non-negative), or None."""
    if channel_axis is None:
        return None
    if not isinstance(channel_axis, numbers.Integral) or isinstance(channel_axis, bool):
        raise TypeError(f"{name}: expected an int or None, got {channel_axis!r}")
    if not -ndim <= channel_axis < ndim:
        raise ValueError(
            f"{name}={channel_axis} is out of range for an array with {ndim} dimensions"
        )
    return int(channel_axis) % ndim


def _is_real(v) -> bool:
    # float/int first: the abstract-class check costs microseconds per call
    t = type(v)
    if t is float or t is int:
        return True
    return not isinstance(v, bool) and isinstance(v, (numbers.Real, np.generic))


def check_data_range(data_range, name: str = "data_range") -> float:
    if not _is_real(data_range):
        raise TypeError(f"{name}: expected a positive finite number, got {data_range!r}")
    v = float(data_range)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: expected a positive finite number, got {data_range!r}")
    return v


def check_positive(value, name: str, allow_zero: bool = False) -> float:
    if not _is_real(value):
        raise TypeError(f"{name}: expected a finite number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        expect = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name}: expected a {expect} finite number, got {value!r}")
    return v


def resolve_workers(workers) -> int:
    """Thread count: None -> all cores (OMP_NUM_THREADS honoured), -1 all, -2 all but one..."""
    from . import _engine

    if workers is None:
        return max(1, _engine.omp_max_threads())
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral):
        raise TypeError(f"workers: expected an int or None, got {workers!r}")
    workers = int(workers)
    if workers == 0:
        raise ValueError("workers: 0 is not a thread count; use None for all cores, 1 for one, -1 for all")
    if workers < 0:
        ncpu = os.cpu_count() or 1
        workers = max(1, ncpu + 1 + workers)
    if workers > MAX_WORKERS:  # each thread gets its own scratch and an OpenMP thread
        raise ValueError(f"workers: expected at most {MAX_WORKERS} threads, got {workers}")
    return workers


MAX_WORKERS = 1024


def as_planes(a: np.ndarray, ftype: np.dtype) -> np.ndarray:
    """C-contiguous, native-endian copy-if-needed in the compute type. Never writes to ``a``."""
    return np.ascontiguousarray(a, dtype=ftype)
