"""Finite inputs give finite results: the float32 range policy and its fallback.

float32 holds values up to 3.4e38 and normal numbers down to 1.2e-38.  The
engine squares shifted samples and the constants C1 = (K1 L)^2, C2 = (K2 L)^2
are squares too, so float32 runs out of range long before the data do:
``data_range=1e30`` makes C1 overflow, samples of |x - shift| near 1e19 make
their squares overflow, and a tiny data range makes C1 underflow.  Two rules
keep every finite input finite (or make it a clear error):

1. ``compute_type``: float32 input is computed in float64 when a non-zero C1 or
   C2 lies outside [1e-30, 1e30] (data ranges beyond about 1e-28..1e32 with
   the default K), decided from the arguments before anything runs.
2. ``finite_or_promote``: a public function whose result is not finite although
   both inputs are finite is run again in float64 (its maps and gradients are
   returned in float32, as the input asked); a float64 computation that still
   overflows (samples beyond about 1e154) raises a ``ValueError`` that says
   so.  Inputs that hold NaN or Inf keep the documented propagation.  The
   check costs nothing when the result is finite.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["compute_type", "finite_or_promote"]

# Constants inside this range keep float32's B1 = mu_x^2 + mu_y^2 + C1 and
# B2 = var x + var y + C2, their reciprocals and the squared samples of data
# of that scale away from overflow and underflow.
F32_C_RANGE = (1e-30, 1e30)


def compute_type(ftype, C1: float, C2: float) -> np.dtype:
    """The type the engine computes in: ``ftype``, or float64 where float32's
    range cannot hold the constants (see the module docstring)."""
    ftype = np.dtype(ftype)
    if ftype == np.float32:
        lo, hi = F32_C_RANGE
        for c in (C1, C2):
            if c != 0 and not (lo <= c <= hi):
                return np.dtype(np.float64)
    return ftype


def _all_finite(a) -> bool:
    a = np.asarray(a)
    return a.dtype.kind in "biu" or bool(np.isfinite(a).all())


def _cast_outputs(out, keep_first: bool):
    """float64 arrays of a result (maps, gradients) back to float32; the
    values (first field) stay float64, as they always are."""
    def cast(a):
        if isinstance(a, np.ndarray) and a.dtype == np.float64:
            return a.astype(np.float32)
        return a

    if isinstance(out, tuple) and hasattr(out, "_fields"):
        fields = {f: getattr(out, f) for f in out._fields}
        for f in fields:
            if f not in ("value", "scales"):
                fields[f] = cast(fields[f])
        return type(out)(**fields)
    if isinstance(out, tuple):
        return tuple(v if (keep_first and i == 0) else cast(v) for i, v in enumerate(out))
    return out if keep_first else cast(out)


def _user_type(out, x, y, value_first):
    """Maps and gradients in float32 for float32 input also where
    compute_type ran the engine in float64 (a cheap dtype check otherwise)."""
    dts = [getattr(a, "dtype", None) for a in (x, y)]
    if not any(d is not None and d.kind == "f" and d.itemsize <= 4 for d in dts):
        return out
    if any(d is not None and d.kind == "f" and d.itemsize > 4 for d in dts):
        return out  # mixed float32/float64 input: float64 is the asked-for type
    arrays = out[1:] if (value_first and isinstance(out, tuple)) else (
        out if isinstance(out, tuple) else (out,))
    if any(isinstance(a, np.ndarray) and a.dtype == np.float64 for a in arrays):
        return _cast_outputs(out, keep_first=value_first)
    return out


def _result_arrays(out, value_only: bool):
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return [out.value] if value_only else [v for v in out if v is not None]
    if isinstance(out, tuple):
        return [out[0]] if value_only else [v for v in out if v is not None]
    return [out]


def finite_or_promote(value_first: bool = True, exempt=None):
    """Decorator of a public function ``f(x, y, ...)`` (see the module
    docstring).  ``value_first``: the result is a value (or a result whose
    first field is one); False: it is a gradient (the VJP functions).
    ``exempt(kwargs)``: true where a NaN is the documented answer (MS-SSIM's
    ``negative='none'``)."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(x, y, *args, **kwargs):
            out = fn(x, y, *args, **kwargs)
            if exempt is not None and exempt(kwargs):
                return out
            arrays = _result_arrays(out, value_first)
            if all(_all_finite(a) for a in arrays):
                return _user_type(out, x, y, value_first)
            xa, ya = np.asarray(x), np.asarray(y)
            if not (_all_finite(xa) and _all_finite(ya)):
                return out  # NaN / Inf in an input: propagated, as documented
            promotable = any(a.dtype.kind == "f" and a.dtype.itemsize <= 4 for a in (xa, ya))
            if promotable and not any(kwargs.get(k) is not None for k in ("map_out", "grad_out")):
                out = fn(xa.astype(np.float64), ya.astype(np.float64), *args, **kwargs)
                if all(_all_finite(a) for a in _result_arrays(out, value_first)):
                    return _cast_outputs(out, keep_first=value_first)
            big = max(float(np.max(np.abs(xa), initial=0)), float(np.max(np.abs(ya), initial=0)))
            raise ValueError(
                f"{fn.__name__}: the result overflowed although x and y are finite "
                f"(largest |value| {big:.3g}): their squares and the constants (K * data_range)^2 "
                "must fit the compute type (float64 up to about 1e154, float32 inputs are "
                "recomputed in float64"
                + (", which is not done when map_out/grad_out buffers are given" if promotable else "")
                + "). SSIM does not change when both images and data_range are scaled together: "
                "rescale them"
            )
        return wrapper
    return deco
