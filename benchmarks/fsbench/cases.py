"""Cases (image geometry) and their deterministic inputs; the shared constants.

Part of the ``bench_ssim.py`` benchmark (see ``fsbench/__init__.py`` for the layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DATA_RANGE = 1.0
K1, K2 = 0.01, 0.03
NOISE_SIGMA = 0.05          # std of the additive noise that makes the distorted image
SEED = 20240613
SLOW_CALL, SLOW_ROUNDS = 0.5, 3  # rows whose warm-up took longer (s) are timed in at most this many rounds
SINGLE_CALL = 2.0                # rows whose warm-up took longer (s) are timed in one call only
MAX_CALLS = 200                  # calls per row per round, at most


class Skip(Exception):
    """Raised by ``Impl.make`` when a row cannot run here (package missing, dtype unsupported)."""


# --------------------------------------------------------------------------------------
# Cases and their inputs
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One input geometry.  ``kind``: 'gray' (H, W), 'rgb' (H, W, 3) with
    channel_axis=-1, or 'batch' (B, H, W) -- B independent grayscale pairs."""

    kind: str
    size: int
    batch: int = 1

    @property
    def shape(self):
        if self.kind == "gray":
            return (self.size, self.size)
        if self.kind == "rgb":
            return (self.size, self.size, 3)
        return (self.batch, self.size, self.size)

    @property
    def channel_axis(self):
        return -1 if self.kind == "rgb" else None

    @property
    def name(self):
        if self.kind == "gray":
            return f"{self.size}²"
        if self.kind == "rgb":
            return f"{self.size}²×3"
        return f"{self.batch}×{self.size}²"

    @property
    def describe(self):
        return {"gray": "grayscale", "rgb": "RGB, channel_axis=-1",
                "batch": "batch of grayscale pairs"}[self.kind]

    @property
    def megapixels(self):
        """Samples in one input image (channels and batch items counted) / 1e6."""
        return math.prod(self.shape) / 1e6

    def spec(self):
        return {"kind": self.kind, "size": self.size, "batch": self.batch}


@dataclass
class Inputs:
    """What each implementation receives: the reference ``x`` and the distorted
    ``y`` in the case's layout and dtype, values in [0, 1] (data_range 1.0)."""

    case: Case
    x: np.ndarray
    y: np.ndarray

    @property
    def dtype(self):
        return self.x.dtype

    @property
    def channel_axis(self):
        return self.case.channel_axis

    @property
    def is_batch(self):
        return self.case.kind == "batch"

    def items(self):
        """(x_i, y_i) pairs the way a per-image peer sees them (one pair unless batched)."""
        if self.is_batch:
            return [(self.x[i], self.y[i]) for i in range(self.x.shape[0])]
        return [(self.x, self.y)]


def _resize(img, size):
    import cv2

    if img.shape[0] == size and img.shape[1] == size:
        return img.copy()
    interp = cv2.INTER_CUBIC if size > img.shape[0] else cv2.INTER_AREA
    return np.clip(cv2.resize(img, (size, size), interpolation=interp), 0.0, 1.0)


def small_inputs(case: Case, dtype, side=64) -> Inputs:
    """A small copy of the case (side px, at most the case's; a batch of 2) to warm a row up on."""
    return make_inputs(Case(case.kind, min(case.size, side), min(case.batch, 2)), dtype)


def make_inputs(case: Case, dtype) -> Inputs:
    """Realistic, deterministic pairs: scikit-image's camera (grayscale) or
    astronaut (RGB) resampled to the case's size; the batch holds crops of
    both (astronaut as luminance) at different places.  The distorted image is
    the reference plus Gaussian noise (sigma 0.05), clipped to [0, 1].  Built
    in float64, then cast, so float32 and float64 cases see the same picture."""
    from skimage import data

    rng = np.random.default_rng(SEED)
    if case.kind == "gray":
        x = _resize(data.camera() / 255.0, case.size)
    elif case.kind == "rgb":
        x = _resize(data.astronaut() / 255.0, case.size)
    else:
        big = 2 * case.size
        cam = _resize(data.camera() / 255.0, big)
        ast = _resize(data.astronaut() @ np.array([0.2125, 0.7154, 0.0721]) / 255.0, big)
        crops = []
        for i in range(case.batch):
            src = cam if i % 2 == 0 else ast
            r0, c0 = rng.integers(0, big - case.size + 1, size=2)
            crops.append(src[r0:r0 + case.size, c0:c0 + case.size])
        x = np.stack(crops)
    y = np.clip(x + rng.normal(0.0, NOISE_SIGMA, x.shape), 0.0, 1.0)
    return Inputs(case, np.ascontiguousarray(x, dtype=dtype), np.ascontiguousarray(y, dtype=dtype))

