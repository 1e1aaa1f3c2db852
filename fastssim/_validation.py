"""Validation and normalisation shared by every public function.

Everything a user can get wrong is checked here, before any native code runs,
and each message names the argument, what was received and what is expected.
"""

from __future__ import annotations

import functools
import math
import numbers
import os

import numpy as np

__all__ = [
    "float_type",
    "check_pair",
    "check_layout",
    "as_planes",
    "check_out",
    "resolve_workers",
    "check_data_range",
    "check_positive",
    "check_channel_axis",
    "check_bool",
    "check_int",
    "check_real",
    "check_constants",
    "check_spatial_dims",
    "dtype_range",
    "dtype_limits",
]


def dtype_limits(dtype) -> tuple:
    """(min, max) of the values a dtype represents, as scikit-image's
    ``dtype_range``: the integer limits, (-1, 1) for floats, (False, True)
    for bool.  Looked up by kind and size, not by type: ``np.longlong`` and
    ``np.ulonglong`` are types distinct from int64/uint64 (and NumPy has
    more such aliases), so a table keyed by type misses them."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return (False, True)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return (int(info.min), int(info.max))
    if dt.kind == "f":
        return (-1, 1)
    raise TypeError(f"expected a real numeric dtype (bool, integer or float), got {dt}")


class _DtypeRange(dict):
    """``{type: (min, max)}`` (scikit-image's ``dtype_range``) that answers any
    NumPy integer, float or bool type, by kind and size (:func:`dtype_limits`)."""

    def __missing__(self, key):
        try:
            lim = dtype_limits(key)
        except TypeError:
            raise KeyError(key) from None
        self[key] = lim
        return lim


# Value range per dtype, as scikit-image's ``skimage.util.dtype.dtype_range``.
dtype_range = _DtypeRange()


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


def check_spatial_dims(spatial_dims) -> int:
    """2 (images) or 3 (volumes), as a Python int."""
    if isinstance(spatial_dims, bool) or not isinstance(spatial_dims, numbers.Integral):
        raise TypeError(f"spatial_dims: expected the int 2 (images) or 3 (volumes), "
                        f"got {spatial_dims!r}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims: expected 2 (images) or 3 (volumes), got {spatial_dims!r}")
    return int(spatial_dims)


def check_layout(x, y, channel_axis, spatial_dims, names=("x", "y"), broadcast=False):
    """The pair as arrays of one shape, with enough axes for ``spatial_dims`` spatial
    axes (2 or 3) plus the channel axis; returns (x, y, normalised channel axis).

    With ``broadcast``, x and y may differ in their batch axes (see
    :func:`broadcast_batch`); the channel axis is then counted on the
    broadcast shape."""
    spatial_dims = check_spatial_dims(spatial_dims)
    if broadcast:
        x = _check_array(x, names[0])
        y = _check_array(y, names[1])
        cax = check_channel_axis(channel_axis, max(x.ndim, y.ndim))
        broadcast_batch(x.shape, y.shape, cax, spatial_dims, names)
    else:
        x, y = check_pair(x, y, names)
        cax = check_channel_axis(channel_axis, x.ndim)
    need = spatial_dims + (cax is not None)
    for name, a in zip(names, (x, y)):
        if a.ndim < need:
            raise ValueError(
                f"{name} has shape {a.shape}: expected at least {spatial_dims} spatial dimensions"
                + (" plus the channel axis" if cax is not None else "")
                + "; for a single 1-D signal add an axis, for volumes set spatial_dims=3"
            )
    return x, y, cax


def broadcast_batch(xshape, yshape, cax, spatial_dims, names=("x", "y")):
    """The broadcast shape of two inputs that may differ in their batch axes only.

    The core axes (the trailing ``spatial_dims`` axes and, with ``cax``, the
    channel axis of the broadcast shape, given non-negative) must be equal;
    the batch axes broadcast as NumPy's do (a missing or length-1 axis
    stretches).  Returns the broadcast shape."""
    nd = max(len(xshape), len(yshape))
    core = set(range(nd - spatial_dims, nd))
    if cax is not None:
        core.add(cax)

    def fail(why):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(xshape)} and "
            f"{tuple(yshape)}: {why} (only batch axes may differ, where they broadcast: "
            "equal, 1 or missing)")

    out = []
    for ax in range(nd):
        i, j = ax - (nd - len(xshape)), ax - (nd - len(yshape))
        a = xshape[i] if i >= 0 else None
        b = yshape[j] if j >= 0 else None
        if ax in core:
            if a != b:
                what = "channel" if ax == cax else "spatial"
                fail(f"the {what} axis {ax - nd} differs ({a} and {b})")
            out.append(a)
        elif a is None or b is None or a == b or a == 1 or b == 1:
            out.append(max(n for n in (a, b) if n is not None))
        else:
            fail(f"the batch axis {ax - nd} has {a} and {b} items")
    return tuple(out)


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
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, np.ndarray):  # a 0-d array is a number (scikit-image takes it)
        return v.ndim == 0 and v.dtype.kind in "iuf"
    return isinstance(v, (numbers.Real, np.integer, np.floating))


def check_real(value, name: str, *, expect: str = "a finite number", lo=None,
               lo_open: bool = False, hi=None, prefix: str = "",
               type_expect: str = "a finite number") -> float:
    """A finite real (Python or NumPy scalar, or a 0-d array) as a Python float.

    Not a real number (None, a string, a list, an array, a bool) ->
    TypeError; NaN, an infinity or a value outside [lo, hi] (``lo_open``:
    (lo, hi]) -> ValueError.  Both name the argument and show the value;
    ``prefix`` puts a fixed wording first (scikit-image's messages)."""
    if not _is_real(value):
        raise TypeError(f"{prefix}{name}: expected {type_expect}, got {value!r} "
                        f"({type(value).__name__})")
    v = float(value)
    if (not math.isfinite(v) or (lo is not None and (v < lo or (lo_open and v == lo)))
            or (hi is not None and v > hi)):
        raise ValueError(f"{prefix}{name}: expected {expect}, got {value!r}")
    return v


def check_data_range(data_range, name: str = "data_range") -> float:
    return check_real(data_range, name, expect="a positive finite number", lo=0.0, lo_open=True,
                      type_expect="a positive finite number")


def check_positive(value, name: str, allow_zero: bool = False) -> float:
    expect = "a non-negative finite number" if allow_zero else "a positive finite number"
    return check_real(value, name, expect=expect, lo=0.0, lo_open=not allow_zero)


def check_bool(value, name: str) -> bool:
    """A flag: a Python or NumPy bool (not 0/1, not an array: ``np.array([1, 0])``
    has no truth value)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind == "b":
        return bool(value)
    raise TypeError(f"{name}: expected a bool, got {value!r} ({type(value).__name__})")


def check_int(value, name: str, *, expect: str = "an int", lo=None, hi=None) -> int:
    """An integer (Python or NumPy, not a bool, not a float) as a Python int,
    so that size arithmetic on it never overflows (an np.int64 doubled
    wraps around)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name}: expected {expect}, got {value!r} ({type(value).__name__})")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name}: expected {expect}, got {v}")
    return v


def check_constants(K1: float, K2: float, R: float, names=("K1", "K2", "data_range")) -> tuple:
    """C1 = (K1 R)^2 and C2 = (K2 R)^2, finite (Python's ``**`` on floats
    raises OverflowError where these products pass 1e154)."""
    out = []
    for K, kname in ((K1, names[0]), (K2, names[1])):
        c = K * R
        c = c * c
        if not math.isfinite(c):
            raise ValueError(
                f"{kname}, {names[2]}: the constant ({kname} * {names[2]})**2 = "
                f"({K!r} * {R!r})**2 overflows float64; pass a smaller {names[2]} or {kname}")
        out.append(c)
    return tuple(out)


def resolve_workers(workers) -> int:
    """Thread count: None -> all cores (OMP_NUM_THREADS honoured), -1 all, -2 all but one...

    A count above :func:`max_workers` (``WORKERS_PER_CPU`` threads per CPU)
    runs with that many (above ``MAX_WORKERS`` it is an error): more threads than that cannot be faster, each one
    costs a thread stack, and where the OpenMP runtime cannot create a
    thread (a memory limit, ``RLIMIT_AS``) it ends the process ("libgomp:
    Thread creation failed"), which no caller can catch.  The result does not
    depend on the thread count."""
    from . import _core

    if workers is None:
        return _fit_address_space(max(1, min(_core.omp_max_threads(), max_workers())))
    if isinstance(workers, (bool, np.bool_)) or not isinstance(workers, (numbers.Integral, np.integer)):
        raise TypeError(f"workers: expected an int or None, got {workers!r}")
    workers = int(workers)
    if workers == 0:
        raise ValueError("workers: 0 is not a thread count; use None for all cores, 1 for one, -1 for all")
    if workers < 0:
        ncpu = _cpu_count()
        workers = max(1, ncpu + 1 + workers)
    if workers > MAX_WORKERS:  # surely a mistake (a byte count, say): say so
        raise ValueError(f"workers: expected at most {MAX_WORKERS} threads, got {workers}")
    return _fit_address_space(min(workers, max_workers()))


MAX_WORKERS = 1024


def _stack_bytes() -> int:
    """The stack an OpenMP thread reserves: OMP_STACKSIZE / GOMP_STACKSIZE (a
    number, kilobytes unless it ends in B, K, M or G), else the default
    pthread stack, which glibc takes from RLIMIT_STACK (32 MiB assumed when
    that is unlimited)."""
    for var in ("GOMP_STACKSIZE", "OMP_STACKSIZE"):
        v = os.environ.get(var, "").strip().upper()
        if v:
            unit = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(v[-1])
            try:
                return int(float(v[:-1] if unit else v) * (unit or 1 << 10))
            except ValueError:
                break
    import resource

    soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    return 32 << 20 if soft == resource.RLIM_INFINITY else int(soft)


def _fit_address_space(n: int) -> int:
    """At most as many threads as the address-space limit (RLIMIT_AS) leaves
    room for: a thread the OpenMP runtime cannot create ends the process
    ("libgomp: Thread creation failed"), which no caller can catch, whereas
    fewer threads give the same result, bit for bit.  Each new thread is
    counted at its stack plus 1 MiB (guard page, TLS, its scratch); threads
    of the runtime's pool that already exist are counted as new too (their
    stacks are in the current size as well), so the estimate errs on the
    side of fewer threads.  No limit (the usual case): ``n`` unchanged."""
    if n <= 1:
        return n
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft == resource.RLIM_INFINITY:
            return n
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError, IndexError):
        return n
    fit = (soft - used) // (_stack_bytes() + (1 << 20))
    return max(1, min(n, 1 + fit))


# Threads per CPU that an explicit ``workers`` may ask for (see resolve_workers).
WORKERS_PER_CPU = 4


@functools.lru_cache(maxsize=1)
def _cpu_count() -> int:
    """``os.cpu_count()`` (1 if unknown), read once: it reads /sys on every
    call (about 18 us in a container, a third of a 64x64 SSIM)."""
    return os.cpu_count() or 1


def max_workers() -> int:
    """The most threads a call runs with: ``WORKERS_PER_CPU`` times the CPU count."""
    return WORKERS_PER_CPU * _cpu_count()


def check_out(arr, shape, dtype, name, xp=np):
    """Validate a caller-provided output buffer (``xp``: the array module of
    the inputs, NumPy or CuPy)."""
    if not isinstance(arr, xp.ndarray):
        kind = "a NumPy" if xp is np else "a CuPy"
        raise TypeError(f"{name}: expected {kind} array, got {type(arr).__name__}")
    if arr.shape != tuple(shape) or arr.dtype != dtype:
        raise ValueError(
            f"{name}: expected an array of shape {tuple(shape)} and dtype {dtype}, "
            f"got shape {arr.shape} and dtype {arr.dtype}"
        )
    if not arr.flags.c_contiguous or not getattr(arr.flags, "writeable", True):
        raise ValueError(f"{name}: expected a writeable C-contiguous array")
    return arr


def as_planes(a: np.ndarray, ftype: np.dtype) -> np.ndarray:
    """C-contiguous, native-endian copy-if-needed in the compute type. Never writes to ``a``."""
    return np.ascontiguousarray(a, dtype=ftype)
