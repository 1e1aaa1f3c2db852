"""The table of fastssim's public entry points, and how to call each one.

The tests of properties every entry point must have iterate this table instead of
repeating themselves per function:

* ``test_inputs.py``  — inputs (and cotangents) are never modified, results never
  alias them (``EntryPoint.safe``: the shapes and options each is checked with);
* ``test_threads.py`` — ``workers=1`` and ``workers=N`` give the same bits
  (``EntryPoint.threads``, ``modes``, ``worker_counts``);
* ``test_errors.py``  — the shared validation (the pair, dtypes, foreign arrays,
  ``data_range``, ``workers``) raises the same message, with the entry point's own
  argument names (``EntryPoint.names``).

Adding a public function: add one :class:`EntryPoint` here; its cases are what it
needs to be called with (a shape that its default window fits, the options whose
code paths differ).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import fastssim
from fastssim import losses

FLOATS = (np.float64, np.float32)
ALL_DTYPES = (np.float64, np.float32, np.uint8)
CONVENTIONS = ("symmetric", "zero", "drop", "replicate")
# 3 scales of a 5-tap Gaussian: MS-SSIM on small images (min_size 17 px, 'drop': 20)
MS_SMALL = dict(weights=(0.3, 0.3, 0.4), sigma=0.7)


@dataclass(frozen=True)
class EntryPoint:
    name: str
    fn: Callable
    # how the function names its two images in messages
    names: tuple = ("x", "y")
    # keyword arguments that request every output (map, gradients, per-scale values)
    outputs: dict = field(default_factory=dict)
    # the output requests the thread test checks separately (default: ``outputs`` only)
    modes: tuple = ()
    # a vector-Jacobian product: the third argument is a cotangent of the map's shape
    cotangent: Callable | None = None
    # float inputs need data_range; the function takes workers (False: l1 / l2 have neither)
    data_range: bool = True
    workers: bool = True
    # input safety: (shape, kw) cases and the input dtypes each runs with
    safe: tuple = ()
    safe_dtypes: tuple = FLOATS
    # thread determinism: (id, shape, kw) cases, their dtypes and the counts compared with workers=1
    threads: tuple = ()
    thread_dtypes: tuple = FLOATS
    worker_counts: tuple = (2,)
    # the message for a float pair without data_range (the drop-ins keep scikit-image's)
    no_range_message: str = "data_range is required for floating-point input"
    # False: the 1-D input message differs (checked in the function's own tests)
    plain_1d_message: bool = True

    def kwargs(self, dtype, kw=()):
        """``kw`` plus what a pair in [0, 1] of ``dtype`` needs (data_range=1 for floats)."""
        kw = dict(kw)
        if self.data_range and np.dtype(dtype).kind == "f":
            kw.setdefault("data_range", 1.0)
        return kw

    def make_cotangent(self, x, y, dtype, seed=1, **kw):
        """A seeded random cotangent of the map's shape (``x``'s float type)."""
        shape = self.cotangent(x, y, **{k: v for k, v in kw.items() if k != "workers"})
        ct = np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float64)
        return np.random.default_rng(seed).standard_normal(shape).astype(ct)

    def __call__(self, x, y, *, cotangent=None, mode=None, **kw):
        """Call with every output requested (or the output request ``mode``)."""
        kw = {**(self.outputs if mode is None else mode), **kw}
        if self.cotangent is not None:
            return self.fn(x, y, cotangent, **kw)
        return self.fn(x, y, **kw)


def _ssim_map_shape(x, y, wrt=None, **kw):
    return fastssim.ssim(x, y, full=True, **kw).map.shape


def _pixelwise_map_shape(x, y, wrt=None, **kw):
    return fastssim.pixelwise_ms_ssim(x, y, full=True, **kw).map.shape


# test_threads.py's cases for ssim (300x517: rows really split between threads)
_SSIM_THREADS = (
    ("large", (300, 517), dict()),
    ("large-box", (300, 517), dict(window="uniform", win_size=7, covariance="sample")),
    ("large-valid", (300, 517), dict(border="valid")),
    ("batch", (5, 40, 41), dict()),
    ("medium", (128, 130), dict()),
    ("channels", (64, 65, 3), dict(channel_axis=-1)),
    ("volume", (20, 30, 31), dict(spatial_dims=3, window="uniform", win_size=5)),
)
# the losses' and per-pixel cases: 400 rows make two row blocks on 2 threads (the seam is crossed)
_LOSS_THREADS = (("two-blocks", (400, 130), dict()), ("batch", (3, 64, 70), dict()))

ENTRY_POINTS = [
    EntryPoint(
        "ssim", fastssim.ssim,
        outputs=dict(full=True, gradient="both"),
        modes=(dict(), dict(full=True), dict(gradient="y"), dict(full=True, gradient="both")),
        safe=(((2, 20, 21), dict()), ((2, 20, 21), dict(border="valid", workers=2))),
        safe_dtypes=ALL_DTYPES,
        threads=_SSIM_THREADS,
        worker_counts=(2, 3, -1, None),
    ),
    EntryPoint(
        "ssim_vjp", fastssim.ssim_vjp, outputs=dict(wrt="both"), cotangent=_ssim_map_shape,
        safe=(((2, 20, 21), dict()), ((20, 21, 3), dict(channel_axis=-1, border="valid"))),
        safe_dtypes=ALL_DTYPES,
        threads=(("large", (300, 517), dict()), ("medium", (128, 130), dict())),
    ),
    EntryPoint(
        "structural_similarity", fastssim.structural_similarity, names=("im1", "im2"),
        outputs=dict(gradient=True, full=True),
        modes=(dict(), dict(full=True), dict(gradient=True, full=True, gaussian_weights=True)),
        safe=(((20, 21), dict()), ((2, 20, 21), dict(channel_axis=0))),
        safe_dtypes=ALL_DTYPES,
        threads=(("large", (300, 517), dict()), ("medium", (128, 130), dict())),
        thread_dtypes=ALL_DTYPES,
        no_range_message="Since image dtype is floating point, you must specify the data_range",
        plain_1d_message=False,
    ),
    EntryPoint(
        "ms_ssim", fastssim.ms_ssim, outputs=dict(gradient="both", return_scales=True),
        safe=tuple(((30, 33), dict(MS_SMALL, downsample=c)) for c in CONVENTIONS)
        + tuple(((2, 30, 33, 3), dict(MS_SMALL, downsample=c, channel_axis=-1)) for c in CONVENTIONS),
        safe_dtypes=ALL_DTYPES,
        # an odd height, RGB and batched, then one grayscale image, every downsampling convention
        threads=tuple((f"rgb-batch-{c}", (2, 181, 190, 3), dict(channel_axis=-1, downsample=c))
                      for c in CONVENTIONS)
        + tuple((f"gray-{c}", (181, 190), dict(downsample=c)) for c in CONVENTIONS),
        thread_dtypes=(np.float64,),
    ),
    EntryPoint(
        "multiscale_structural_similarity", fastssim.multiscale_structural_similarity,
        names=("im1", "im2"), outputs=dict(gradient=True),
        safe=(((176, 180), dict()), ((2, 176, 180), dict(channel_axis=0))),
        threads=(("gray", (181, 190), dict()),),
        plain_1d_message=False,
    ),
    EntryPoint(
        "pixelwise_ms_ssim", fastssim.pixelwise_ms_ssim, outputs=dict(full=True, gradient="both"),
        safe=(((64, 65), dict()), ((2, 64, 65, 3), dict(channel_axis=-1, border="valid"))),
        threads=(("two-blocks", (400, 130), dict()),
                 ("valid", (3, 70, 64), dict(border="valid")),
                 ("channels-sample", (2, 64, 65, 3), dict(channel_axis=-1, covariance="sample"))),
    ),
    EntryPoint(
        "pixelwise_ms_ssim_vjp", fastssim.pixelwise_ms_ssim_vjp, outputs=dict(wrt="both"),
        cotangent=_pixelwise_map_shape,
        safe=(((64, 65), dict()), ((3, 64, 65), dict(border="valid"))),
        threads=(("two-blocks", (400, 130), dict()),
                 ("valid", (3, 70, 64), dict(border="valid")),
                 ("channels-sample", (2, 64, 65, 3), dict(channel_axis=-1, covariance="sample"))),
    ),
    EntryPoint("losses.l1", losses.l1, names=("prediction", "target"),
               outputs=dict(gradient=True, full=True), data_range=False, workers=False,
               safe=(((60, 61), dict()), ((2, 60, 61, 3), dict(channel_axis=-1)))),
    EntryPoint("losses.l2", losses.l2, names=("prediction", "target"),
               outputs=dict(gradient=True, full=True), data_range=False, workers=False,
               safe=(((60, 61), dict()), ((2, 60, 61, 3), dict(channel_axis=-1)))),
    EntryPoint("losses.ssim", losses.ssim, names=("prediction", "target"),
               outputs=dict(gradient=True, full=True),
               safe=(((60, 61), dict()),), threads=_LOSS_THREADS),
    EntryPoint("losses.ms_ssim", losses.ms_ssim, names=("prediction", "target"),
               outputs=dict(gradient=True, full=True),
               safe=(((176, 180), dict()),), threads=(("gray", (181, 190), dict()),)),
    EntryPoint("losses.pixelwise_ms_ssim", losses.pixelwise_ms_ssim, names=("prediction", "target"),
               outputs=dict(gradient=True, full=True),
               safe=(((60, 61), dict()),), threads=_LOSS_THREADS),
    EntryPoint("losses.mix", losses.mix, names=("prediction", "target"),
               outputs=dict(gradient=True, full=True),
               safe=(((60, 61), dict()), ((60, 61), dict(alpha=0.3, border="valid"))),
               threads=_LOSS_THREADS + (
                   ("two-blocks-valid-sample", (400, 130),
                    dict(alpha=0.3, border="valid", covariance="sample")),
                   ("batch-valid-sample", (3, 64, 70), dict(alpha=0.3, border="valid", covariance="sample")))),
]

BY_NAME = {e.name: e for e in ENTRY_POINTS}


def entry_params(attr, dtypes_attr=None):
    """pytest params (entry, case[, dtype]) over every entry point's ``attr`` cases."""
    out = []
    for e in ENTRY_POINTS:
        for i, case in enumerate(getattr(e, attr)):
            cid = case[0] if isinstance(case[0], str) else str(i)
            for dt in (getattr(e, dtypes_attr) if dtypes_attr else (None,)):
                tail = () if dt is None else (dt,)
                dname = "" if dt is None else f"-{np.dtype(dt).name}"
                out.append(pytest.param(e, case, *tail, id=f"{e.name}-{cid}{dname}"))
    return out
