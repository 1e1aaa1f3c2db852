"""Host/device dispatch of the public functions (issue 12).

``@gpu_dispatch("ssim")`` above a public function ``f(a, b, ...)`` sends CuPy
inputs to the GPU backend (:mod:`fastssim._cupy`) and everything else to
``f`` untouched.  A CuPy array is recognised by its type's module, so neither
``import fastssim`` nor this check imports CuPy.  Mixing a CuPy and a
non-CuPy input is a TypeError that names both: nothing moves between host
and device silently.
"""

from __future__ import annotations

import functools
import inspect

__all__ = ["gpu_dispatch", "is_cupy"]


def is_cupy(a) -> bool:
    """True for a CuPy array (without importing CuPy)."""
    return type(a).__module__.split(".")[0] == "cupy"


def _where(a):
    t = type(a)
    return f"{t.__module__}.{t.__qualname__}"


def gpu_dispatch(name):
    """Decorator: route CuPy inputs of the public function ``name`` (as in
    ``fastssim.<name>``) to the GPU backend.  The function's first two
    parameters are the image pair."""
    def deco(fn):
        params = list(inspect.signature(fn).parameters)
        na, nb = params[0], params[1]

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            a = args[0] if len(args) > 0 else kwargs.get(na)
            b = args[1] if len(args) > 1 else kwargs.get(nb)
            ga, gb = is_cupy(a), is_cupy(b)
            if not (ga or gb):
                return fn(*args, **kwargs)
            if ga != gb:
                # the CPU path's wording (fastssim._validation._check_array),
                # plus both arguments' types
                dev, host = (na, nb) if ga else (nb, na)
                dv, hv = (a, b) if ga else (b, a)
                raise TypeError(
                    f"{dev}: expected a NumPy array, got {_where(dv)}; fastssim never moves "
                    f"data between host and device silently: {dev} is a CuPy array (GPU) "
                    f"and {host} a {_where(hv)} ({name}); pass both as CuPy arrays or both "
                    "as NumPy arrays (convert one explicitly: cupy.asarray / cupy.asnumpy)")
            from ._cupy import implementation

            impl = implementation(name)
            if len(args) < 2:
                kwargs.pop(na, None)
                kwargs.pop(nb, None)
            return impl(a, b, *args[2:], **kwargs)

        return wrapper
    return deco
