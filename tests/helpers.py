"""Shared helpers of the fastssim test suite (import them: ``from helpers import pair``).

* test images: :func:`pair` (seeded, correlated pairs in any dtype);
* finite differences, the reference of every gradient test: :func:`central_fd`
  (any function, one element at a time), :func:`batch_fd` (a batch-native
  function, many perturbed copies per call) and :func:`fd_grad` (``fn(x, y)``
  with respect to x or y, batched and cached), with :func:`assert_grad_matches_fd`
  and its tolerance ``FD_REL``, and :func:`border_mask`;
* :func:`assert_bitwise` (nested results, the same bits and dtypes);
* the command line: :func:`run_cli`, :func:`run_sub`, :func:`write_png16_rgb`, :func:`noisy`.

The table of public entry points that the input-safety, thread-determinism and
error tests iterate is in ``entry_points.py``.

Test images are seeded random pairs: ``y`` is correlated with ``x`` but not
equal to it, so the SSIM map takes values across (-1, 1) — near 1, near 0 and
negative — rather than sitting at the trivial value 1.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import zlib

import numpy as np


def pair(shape, dtype=np.float64, seed=0, corr=0.4):
    """A correlated image pair of ``shape`` in ``dtype``.

    Floats lie in [0, 1] (use ``data_range=1``); integers span their dtype's
    whole range (scikit-image's default ``data_range``); bools are thresholds.
    """
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    y = corr * x + (1.0 - corr) * rng.random(shape)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return x.astype(dtype), y.astype(dtype)
    if dtype.kind == "b":
        return x > 0.5, y > 0.5
    info = np.iinfo(dtype)
    span = float(info.max) - float(info.min)

    def to_int(a):
        return np.round(a * span + float(info.min)).astype(dtype)

    return to_int(x), to_int(y)


def central_fd(f, a, h=1e-6):
    """Central finite differences of ``f`` with respect to every element of ``a``.

    ``f`` returns a scalar or an array (e.g. one value per batch item); the
    result has shape ``a.shape + shape_of_f``.  ``a`` is float64; it is copied,
    so the caller's array is untouched.
    """
    a = np.array(a, dtype=np.float64, copy=True)
    out = None
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + h
        fp = np.array(f(a), dtype=np.float64)
        a[idx] = old - h
        fm = np.array(f(a), dtype=np.float64)
        a[idx] = old
        d = (fp - fm) / (2.0 * h)
        if out is None:
            out = np.empty(a.shape + d.shape)
        out[idx] = d
    return out


def batch_fd(f, a, h=1e-6, chunk=1024):
    """Central differences of ``f`` w.r.t. every element of ``a``, in batches.

    ``f`` maps a stack ``(K, *a.shape)`` to values ``(K, *vshape)``; returns
    ``a.shape + vshape``.  Each stacked image differs from ``a`` in one element.
    """
    n = a.size
    parts = []
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        step = np.zeros((k, n))
        step[np.arange(k), s + np.arange(k)] = h
        step = step.reshape((k,) + a.shape)
        vp = np.asarray(f(a + step))
        vm = np.asarray(f(a - step))
        parts.append((vp - vm) / (2.0 * h))
    d = np.concatenate(parts)
    return d.reshape(a.shape + d.shape[1:])


# Central differences with h = 1e-6 on O(1) SSIM values carry a truncation
# error ~h^2 and a rounding error ~eps/h ~ 1e-10; the measured gap to the
# analytic gradients is ~1e-9 of max|grad|.  A dropped covariance factor
# changes the gradient by ~1e-4 of max|grad| (81-sample window; 2e-3 for 9
# samples), a missed border fold or a wrong crop by O(1).
FD_REL = 1e-6


def assert_grad_matches_fd(analytic, numeric, rel=FD_REL):
    """Elementwise |analytic - numeric| <= rel * max|numeric|, at every pixel."""
    assert analytic.shape == numeric.shape
    scale = np.abs(numeric).max()
    assert scale > 0, "degenerate test: the numerical gradient is identically zero"
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=rel * scale)


def border_mask(shape, width):
    """True on the pixels within ``width`` of any border (where reflection or the
    crop's edge windows matter), so gradient tests can assert there explicitly."""
    m = np.zeros(shape, dtype=bool)
    for ax, n in enumerate(shape):
        idx = [slice(None)] * len(shape)
        idx[ax] = np.r_[0:width, n - width:n]
        m[tuple(idx)] = True
    return m


# ----------------------------------------------------- batched, cached FD

_FD_CACHE: dict = {}


def _digest(a):
    a = np.ascontiguousarray(a)
    return (a.shape, a.dtype.str, hashlib.sha1(a.tobytes()).hexdigest())


def fd_grad(fn, x, y, wrt="x", h=1e-6, chunk=1024, **kw):
    """Central differences (float64, step ``h``) of ``fn(x, y, **kw)`` with respect
    to every element of ``x`` (``wrt='x'``) or ``y``: shape ``a.shape + vshape``.

    ``fn`` must be batch-native (fastssim's functions and losses are: each item of
    a leading batch axis is computed on its own), so the perturbed copies are
    stacked on a new leading axis and evaluated ``chunk`` at a time, the other
    image broadcast against them (:func:`batch_fd`).  The same differences equal
    :func:`central_fd`'s to rounding.  Results are cached on (fn, wrt, h, kw, the
    bytes of x and y), so tests that check several gradients of one call (x and
    y, map and value, with and without workers) share one finite-difference pass.
    Do not use with a ``channel_axis`` counted from the front (it moves with the
    stacked axis).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    key = (getattr(fn, "__module__", None), getattr(fn, "__qualname__", repr(fn)), wrt, h,
           repr(sorted(kw.items())), _digest(x), _digest(y))
    if key in _FD_CACHE:
        return _FD_CACHE[key]
    if wrt == "x":
        def f(s):
            return fn(s, np.broadcast_to(y, s.shape), **kw)
        a = x
    elif wrt == "y":
        def f(s):
            return fn(np.broadcast_to(x, s.shape), s, **kw)
        a = y
    else:
        raise ValueError(f"wrt: expected 'x' or 'y', got {wrt!r}")
    d = batch_fd(f, a, h=h, chunk=chunk)
    d.setflags(write=False)  # shared between tests: nobody may change it
    _FD_CACHE[key] = d
    return d


# ------------------------------------------------------------- bitwise

def assert_bitwise(a, b, what="result depends on the thread count"):
    """``a`` and ``b`` are the same bits, recursively through tuples (named or
    not) and lists; ``None`` matches ``None``; dtypes agree; NaNs match NaNs."""
    if isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), what
        for u, v in zip(a, b):
            assert_bitwise(u, v, what)
    elif a is None:
        assert b is None, what
    else:
        assert np.array_equal(a, b, equal_nan=True), what
        assert np.asarray(a).dtype == np.asarray(b).dtype, what


# --------------------------------------------------------- command line

def run_cli(capsys, *argv):
    """Run ``fastssim *argv`` in this process: (exit status, stdout, stderr)."""
    from fastssim.__main__ import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's exits
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def run_sub(*argv, cwd, env=None, **kw):
    """Run ``python -m fastssim *argv`` in a subprocess (from ``cwd``, never the
    repository root, whose source folder has no compiled engine)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "fastssim", *map(str, argv)], cwd=cwd, env=e,
                          capture_output=True, text=True, **kw)


def write_png16_rgb(path, a):
    """A 16-bit colour PNG written by hand (Pillow cannot write one): filter 0
    on every row, big-endian samples, as the PNG specification describes."""
    h, w, c = a.shape
    raw = b"".join(b"\x00" + a[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))


def noisy(rng, a, amount, lo=0, hi=255):
    """``a`` plus uniform integer noise of +-amount, clipped, same dtype."""
    b = a.astype(np.int64) + rng.integers(-amount, amount + 1, a.shape)
    return np.clip(b, lo, hi).astype(a.dtype)


def write_problem_pairs(rng, ref, dist):
    """Into the folders ``ref`` and ``dist`` (pathlib.Path, Pillow required): a
    16-bit pair ``g16.png`` and three pairs a folder comparison must report
    without stopping: ``size.png`` (shapes differ), ``corrupt.png`` (the
    distorted file is not a PNG) and ``lonely.png`` (no partner in ``dist``)."""
    from PIL import Image

    g = rng.integers(0, 65536, (50, 45), dtype=np.uint16)
    Image.fromarray(g).save(ref / "g16.png")
    Image.fromarray(noisy(rng, g, 3000, 0, 65535)).save(dist / "g16.png")
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(ref / "size.png")
    Image.fromarray(rng.integers(0, 256, (32, 30), dtype=np.uint8)).save(dist / "size.png")
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(ref / "corrupt.png")
    (dist / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(ref / "lonely.png")
