"""Where a Plan runs: the backend seam.

A public function builds a :class:`fastssim._plan.Plan` (what to compute,
frozen, backend-independent) and makes **one call** into a backend::

    res = _backends.execute(plan, x, y, cotangent=None, out=None)

``execute`` picks the backend from the arrays' type (NumPy: :mod:`cpu`, the
Cython/C engine of ``fastssim._core``; a ``cupy`` backend is planned) and
returns what that backend's ``execute`` returns.  A backend is a module
``fastssim._backends.<name>`` with one function ``execute(plan, x, y,
cotangent=None, out=None) -> Result``; it may keep any execution state it
likes (in-place views, converted copies, broadcasting selections, pooled
scratch, device buffers) but none of it survives the call and none of it
goes into the Plan.  The public functions never look inside a backend.

What a backend receives
-----------------------
``plan``
    A :class:`~fastssim._plan.Plan`, already validated: every shape, region
    and constant in it is consistent with ``x`` and ``y`` (read the
    ``_plan`` module docstring for its fields).  ``plan.layout.dtype`` is the
    compute type (float32 or float64).
``x``, ``y``
    The caller's arrays as validated (``plan.layout.xshape`` / ``yshape``,
    ``xdtype`` / ``ydtype``: any real dtype -- bool, integers, float16/32/64,
    either byte order), in any memory order, possibly non-contiguous.  Their
    batch axes may broadcast (``plan.layout.broadcasts``).  A backend never
    writes to them and never keeps a reference after returning; converting
    them to the compute type is its job (the CPU engine reads uint8, uint16,
    int8, int16 and float32-into-float64 itself, without a copy).
``cotangent``
    With ``plan.cotangent``: the cotangent map w, an array of
    ``plan.map_shape`` (caller layout) of any real dtype, validated; the
    gradient is of ``sum_p w(p) map(p)``.  Otherwise None, and the gradient
    is of ``plan.wscal * sum(map over plan.sum_region)``, per plane.
``out``
    None, or a triple ``(map_out, grad_x_out, grad_y_out)`` of caller
    buffers or None each, validated by the caller (``_plan.check_outs``):
    ``plan.map_shape`` / ``xshape`` / ``yshape``, the compute dtype,
    C-contiguous, writeable, overlapping neither the inputs nor each other.
    A backend writes its result into a given buffer (directly or by a final
    copy) and returns that very buffer.

What a backend returns
----------------------
A :class:`Result` ``(sums, map, grad_x, grad_y, scales)``, every array
allocated by the backend unless the caller gave a buffer (``out``), on the
backend's device:

``sums``
    float64, shape ``(P,)``, planes in C order of (batch items, channel):
    ``kind`` 'window' / 'product': the sum of each plane's map over
    ``plan.sum_region``; 'pyramid': each plane's MS-SSIM, prod_j f(m_j)^w_j
    (f the negative policy, ``plan.pyramid.negative``).
``map``
    With ``plan.want_map``: the map over ``plan.map_region``, in the caller's
    layout (``plan.map_shape``), compute dtype; else None.
``grad_x``, ``grad_y``
    With ``plan.grad`` & 1 / & 2: the gradient w.r.t. x / y, compute dtype,
    of ``xshape`` / ``yshape`` when ``plan.reduce_grad`` (summed over the
    batch axes along which that input broadcasts), else of the broadcast
    shape ``plan.layout.shape``; else None.  For a pyramid, the gradient of
    the per-item value (MS-SSIM averaged over the channels).
``scales``
    'pyramid' only: float64 ``(P, M)``, the per-level means m_j (before the
    negative policy); else None.

The front end turns ``sums`` into values (``_plan.values``: the mean over the
sum region, then over the channels) with array methods a GPU array has too.

Requirements
------------
* **Determinism**: the results do not depend on the thread count, block size
  or scheduling: reductions are per line/tile partials summed in a fixed
  order, never a floating ``+=`` shared across threads or an atomic add.
* **Layout independence**: a backend may read channels interleaved or as
  planes, in place or copied; the results must not depend on that choice.
* **Exactness**: the gradients are the exact gradients of the values (or of
  ``sum_p w(p) map(p)``) it returns, borders and the covariance factor
  included: value and gradient come from the same arithmetic.
* **NaN/Inf propagate** to every map value whose window touches one; a
  backend raises no error for them (``finite_or_promote`` retries float32
  in float64 when finite inputs gave a non-finite result).
* Results need not match the CPU backend's bit for bit (FMA contraction and
  reduction order differ between devices), only to the tolerances the test
  suite states per dtype; they must be the same from run to run.
* Errors about the *arguments* are the front end's (the Plan builders); a
  backend raises only for resources (MemoryError) or for what it cannot
  run (``NotImplementedError`` naming the Plan's ``kind`` or dimension).
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple, Optional

import numpy as np

__all__ = ["Result", "execute", "get", "for_arrays"]


class Result(NamedTuple):
    """What a backend returns (see the module docstring)."""

    sums: Any
    map: Optional[Any] = None
    grad_x: Optional[Any] = None
    grad_y: Optional[Any] = None
    scales: Optional[Any] = None


from . import cpu  # noqa: E402  (after Result: cpu imports it)

# top-level module of an array type -> backend module name
_BY_ARRAY_MODULE = {"numpy": "cpu", "cupy": "cupy"}


def get(name):
    """The backend module ``fastssim._backends.<name>`` (imported on first use)."""
    if name == "cpu":
        return cpu
    return importlib.import_module(f"{__name__}.{name}")


def _name(a):
    if isinstance(a, np.ndarray):  # subclasses too (memmap, masked, third-party)
        return "cpu"
    mod = type(a).__module__.partition(".")[0]
    name = _BY_ARRAY_MODULE.get(mod)
    if name is None:
        raise TypeError(f"fastssim: no backend for arrays of type {type(a).__module__}."
                        f"{type(a).__name__}")
    return name


def for_arrays(x, y=None):
    """The backend of the arrays' type (NumPy arrays: :mod:`cpu`); arrays of
    two backends (host and device) are a TypeError: nothing moves silently."""
    name = _name(x)
    if y is not None and _name(y) != name:
        raise TypeError(f"fastssim: x and y live on different backends ({type(x).__module__}."
                        f"{type(x).__name__} and {type(y).__module__}.{type(y).__name__}); "
                        "convert one explicitly")
    return get(name)


def execute(plan, x, y, cotangent=None, out=None):
    """Run ``plan`` on ``x``, ``y`` with the backend of their type (see the
    module docstring); returns a :class:`Result`."""
    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
        return cpu.execute(plan, x, y, cotangent, out)
    return for_arrays(x, y).execute(plan, x, y, cotangent, out)
