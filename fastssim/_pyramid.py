"""2x mean downsampling for MS-SSIM pyramids, in the conventions of the libraries.

Every convention is a 2-tap mean along each axis (the 2x2 or 2x2x2 block mean
is their product); they differ only in what happens to an odd extent:

``'symmetric'``
    Wang's ``msssim.m`` (``imfilter(ones(2)/4, 'symmetric')``, every second
    sample) and TensorFlow (symmetric pad, then average pool): the last sample
    of an odd extent is repeated, ``ceil(n/2)`` outputs.
``'zero'``
    pytorch_msssim (``avg_pool2d(padding=n % 2)``, padding counted): a zero is
    put before the first sample of an odd extent, so its first output is
    ``x[0] / 2``; ``ceil(n/2)`` outputs.
``'drop'``
    torchmetrics (``avg_pool2d`` without padding): the last sample of an odd
    extent is dropped, ``floor(n/2)`` outputs.
``'replicate'``
    piq: if *any* spatial extent is odd, the first sample of *every* axis is
    replicated once, then pooled without padding: ``floor((n + P)/2)`` outputs,
    ``P = max(n_k % 2)``.

Each operator is stored per axis as two taps per output (and, for the
adjoint, one tap per input: in all four conventions each input sample feeds
at most one output), with the regular interior marked for the fast path.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ._bands import longest_run


CONVENTIONS = ("symmetric", "zero", "drop", "replicate")


def out_size(n: int, convention: str, P: int = 0) -> int:
    if convention == "symmetric":
        return (n + 1) // 2
    if convention == "zero":
        p = n % 2
        return (n + 2 * p - 2) // 2 + 1
    if convention == "drop":
        return n // 2
    if convention == "replicate":
        return (n + P) // 2
    raise ValueError(convention)


def pyramid_shapes(shape, convention: str, scales: int):
    """Spatial shapes of the scales 1..scales."""
    shapes = [tuple(shape)]
    for _ in range(scales - 1):
        s = shapes[-1]
        P = max(n % 2 for n in s)
        shapes.append(tuple(out_size(n, convention, P) for n in s))
    return shapes


def axis_matrix(n: int, convention: str, P: int = 0) -> np.ndarray:
    """Dense (n_out, n) matrix of the 1-D operator (reference and tests)."""
    n_out = out_size(n, convention, P)
    m = np.zeros((n_out, n))
    for o in range(n_out):
        if convention == "symmetric":
            idx = (2 * o, min(2 * o + 1, n - 1))
        elif convention == "drop":
            idx = (2 * o, 2 * o + 1)
        elif convention == "zero":
            p = n % 2
            idx = tuple(i for i in (2 * o - p, 2 * o - p + 1) if 0 <= i < n)
        else:  # replicate at the start
            idx = (max(2 * o - P, 0), max(2 * o - P + 1, 0))
        for i in idx:
            m[o, i] += 0.5
    return m


@dataclass(frozen=True)
class Down:
    """One axis of the 2x downsampling (see the module docstring).

    ``last[i]`` is the output whose later source sample is ``i`` (-1 if none):
    the engine writes that output row once it has streamed input row ``i``.
    """

    n_in: int
    n_out: int
    i0: np.ndarray
    i1: np.ndarray
    w0: np.ndarray
    w1: np.ndarray
    lo: int
    hi: int
    shift: int
    m: np.ndarray
    u: np.ndarray
    alo: int
    ahi: int
    ashift: int
    last: np.ndarray


def _pairs(n: int, convention: str, P: int):
    """The two source samples (a, b) of every output and whether each exists."""
    o = np.arange(out_size(n, convention, P), dtype=np.int64)
    if convention == "symmetric":
        a, b = 2 * o, np.minimum(2 * o + 1, n - 1)
    elif convention == "drop":
        a, b = 2 * o, 2 * o + 1
    elif convention == "zero":
        a = 2 * o - n % 2
        b = a + 1
    else:  # replicate at the start
        a, b = np.maximum(2 * o - P, 0), np.maximum(2 * o - P + 1, 0)
    return o, a, b, (a >= 0) & (a < n), (b >= 0) & (b < n)


@functools.lru_cache(maxsize=256)
def down_axis(n: int, convention: str, P: int = 0) -> Down:
    """The 1-D operator of one axis, in the engine's representation.

    Built by index arithmetic in O(n) (``axis_matrix`` is the dense reference):
    the pyramid of a gigapixel image must not cost a quadratic matrix.
    """
    if n == 1 and convention != "drop":
        o, a, b = np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64)
        va = vb = np.ones(1, bool)
    else:
        o, a, b, va, vb = _pairs(n, convention, P)
    n_out = o.size
    # a sample read twice (a == b) weighs 1, a lone existing sample 1/2
    two = va & vb & (a != b)
    i0 = np.where(va, a, b).astype(np.int32)
    w0 = np.where(va & vb & (a == b), 1.0, 0.5)
    i1 = np.where(two, b, i0).astype(np.int32)
    w1 = np.where(two, 0.5, 0.0)
    # adjoint: the output each input feeds (at most one) and its weight
    src = np.concatenate((i0, i1[two]))
    if np.bincount(src, minlength=n).max(initial=0) > 1:
        raise AssertionError("each input feeds at most one output")
    m = np.zeros(n, np.int32)
    u = np.zeros(n)
    m[src] = np.concatenate((o, o[two]))
    u[src] = np.concatenate((w0, w1[two]))
    # regular interior: outputs reading (2o + s, 2o + s + 1) with 1/2 each
    shift = {"symmetric": 0, "drop": 0, "zero": -(n % 2), "replicate": -P}[convention]
    reg = two & (i0 == 2 * o + shift) & (i1 == 2 * o + shift + 1)
    lo, hi = longest_run(reg)
    alo, ahi = 2 * lo + shift, 2 * hi + shift
    if hi <= lo:
        lo = hi = 0
        alo = ahi = max(shift, 0)
    i = np.arange(alo, ahi)  # the adjoint of the regular outputs is regular too
    if not (np.all(m[i] == (i - shift) // 2) and np.all(u[i] == 0.5)):
        raise AssertionError("irregular adjoint interior")
    last = np.full(n, -1, np.int32)
    last[np.where(two, np.maximum(i0, i1), i0)] = o
    for a in (i0, i1, w0, w1, m, u, last):
        a.flags.writeable = False  # shared through the cache
    return Down(n, n_out, i0, i1, w0, w1, lo, hi, shift, m, u, alo, ahi, shift, last)


def down_maps(spatial, convention: str):
    """Per-axis operators (axis 0, 1, 2 of the engine's (n0, n1, n2) view)."""
    P = max(n % 2 for n in spatial) if convention == "replicate" else 0
    maps = [down_axis(n, convention, P) for n in spatial]
    if len(spatial) == 2:
        maps = [maps[0], down_axis(1, "symmetric"), maps[1]]
    return tuple(maps)
