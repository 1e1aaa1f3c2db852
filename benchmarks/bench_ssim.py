#!/usr/bin/env python
"""fastssim against its peers on the CPU, side by side, in one process.

    python benchmarks/bench_ssim.py                 # full run (ten minutes or more)
    python benchmarks/bench_ssim.py --quick         # under two minutes
    python benchmarks/bench_ssim.py --sizes 1024 --dtypes float32 --out results.md

For every case (image size, layout, dtype) each implementation is called once
to warm up, then timed in interleaved rounds; the table reports the median wall time,
megapixels per second, the ratio of its time to the fastssim row it is
compared with, and the peak extra resident memory of one call, measured in a
fresh subprocess.  The value each row computed (SSIM, MS-SSIM or a loss) is
shown too, so rows that claim to compute the same thing can be seen to agree.  Nothing here asserts
on timing (house rule 10): the issue's speed targets are reported, not enforced.

Adding rows: append an :class:`Impl` to ``IMPLEMENTATIONS`` (and, if wanted,
a :class:`Target`).  ``make(inp)`` receives the case's :class:`Inputs` and
returns a zero-argument callable that does the work and returns the mean
value (a float), or raises :class:`Skip` with a reason.  Import optional peers
inside ``make`` so that a missing package only skips its own rows; ``when``
restricts a row to some cases and ``slow`` marks a peer timed in one call.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

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


# --------------------------------------------------------------------------------------
# Implementations (rows).  make(inp) -> zero-arg callable returning the mean value.
# --------------------------------------------------------------------------------------

@dataclass
class Impl:
    key: str                    # short id, used as 'ref' by other rows
    label: str                  # what the table shows
    computes: str               # what it computes (window, value / gradient)
    make: Callable              # Inputs -> Callable[[], float]; may raise Skip
    ref: str | None = None      # key of the fastssim row this one is compared with
    note: str = ""              # footnote (conventions, casts, caveats)
    # when(case, dtype name, quick) -> None to run the row for that case, else the reason it
    # does not (such rows are left out of the table and named in a line under it)
    when: Callable | None = None
    warm_side: int = 64         # side of the small copy the memory subprocess warms up on
    # slow: a peer whose one call takes seconds to minutes.  It warms up on a small copy
    # (warm_side) and is then timed in exactly one full-size call; in --quick its peak
    # memory is not measured (that would be another full call).
    slow: bool = False

    def excluded(self, case, dtype, quick):
        return self.when(case, np.dtype(dtype).name, quick) if self.when is not None else None


def _mean(v):
    return float(np.mean(v))


# ---- fastssim ------------------------------------------------------------------------

def _fs_gauss(inp, workers=None):
    import fastssim

    x, y, ca = inp.x, inp.y, inp.channel_axis
    return lambda: _mean(fastssim.ssim(x, y, data_range=DATA_RANGE, channel_axis=ca, workers=workers))


def _fs_box7(inp):
    import fastssim

    x, y, ca = inp.x, inp.y, inp.channel_axis
    return lambda: _mean(fastssim.ssim(x, y, data_range=DATA_RANGE, window="uniform", win_size=7,
                                       covariance="sample", channel_axis=ca))


def _fs_grad(inp):
    import fastssim

    x, y, ca = inp.x, inp.y, inp.channel_axis
    return lambda: _mean(fastssim.ssim(x, y, data_range=DATA_RANGE, channel_axis=ca, gradient="x").value)


def _fs_dropin(inp):
    import fastssim

    items, ca = inp.items(), inp.channel_axis

    def run():
        return _mean([fastssim.structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=DATA_RANGE, channel_axis=ca) for a, b in items])
    return run


# ---- scikit-image --------------------------------------------------------------------

def _skimage(inp, gradient=False):
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        raise Skip("scikit-image not installed (pip install scikit-image)") from None

    items, ca = inp.items(), inp.channel_axis

    def one(a, b):
        r = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                  data_range=DATA_RANGE, channel_axis=ca, gradient=gradient)
        return r[0] if gradient else r
    return lambda: _mean([one(a, b) for a, b in items])


# ---- the OpenCV recipe ---------------------------------------------------------------

def opencv_ssim(x, y, data_range=DATA_RANGE):
    """The usual OpenCV SSIM recipe (as in OpenCV's 'getMSSISM' tutorial):
    Gaussian-blur the five moments with an 11x11, sigma 1.5 kernel, apply the
    SSIM formula in NumPy, average over the region where the window fits.
    Works in the input's float type; multichannel images are blurred per channel."""
    import cv2

    C1 = (K1 * data_range) ** 2
    C2 = (K2 * data_range) ** 2

    def blur(a):
        return cv2.GaussianBlur(a, (11, 11), 1.5)

    mu_x, mu_y = blur(x), blur(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    s_xx = blur(x * x) - mu_xx
    s_yy = blur(y * y) - mu_yy
    s_xy = blur(x * y) - mu_xy
    num = (2 * mu_xy + C1) * (2 * s_xy + C2)
    den = (mu_xx + mu_yy + C1) * (s_xx + s_yy + C2)
    ssim_map = num / den
    return float(ssim_map[5:-5, 5:-5].mean(dtype=np.float64))


def _opencv(inp):
    try:
        import cv2  # noqa: F401
    except ImportError:
        raise Skip("OpenCV not installed (pip install opencv-python-headless)") from None

    items = inp.items()
    return lambda: _mean([opencv_ssim(a, b) for a, b in items])


# ---- Fast-SSIM (PyPI fast-ssim) ------------------------------------------------------

def _fast_ssim(inp):
    try:
        import fast_ssim
    except ImportError:
        raise Skip("fast-ssim not installed (pip install fast-ssim)") from None

    items = inp.items()
    if inp.dtype == np.float32:
        return lambda: _mean([fast_ssim.ssim(a, b, data_range=DATA_RANGE, win_size=7) for a, b in items])
    # It refuses float64 ("call .astype('float32')"): a user has to cast, so the
    # cast is part of the timed call.
    return lambda: _mean([fast_ssim.ssim(a.astype(np.float32), b.astype(np.float32),
                                         data_range=DATA_RANGE, win_size=7) for a, b in items])


# ---- pytorch_msssim on the CPU -------------------------------------------------------

def _nchw(t, inp):
    """A tensor in the case's layout -> (N, C, H, W), as pytorch_msssim wants."""
    if inp.is_batch:
        return t[:, None]
    if inp.channel_axis is not None:
        return t.permute(2, 0, 1)[None]
    return t[None, None]


def _pytorch_msssim(inp, gradient=False):
    try:
        import torch
        from pytorch_msssim import ssim
    except ImportError:
        raise Skip("pytorch_msssim/torch not installed (pip install torch pytorch-msssim)") from None

    x, y = inp.x, inp.y
    Y = _nchw(torch.from_numpy(y), inp)
    if not gradient:
        X = _nchw(torch.from_numpy(x), inp)

        def run():
            with torch.no_grad():
                return float(ssim(X, Y, data_range=DATA_RANGE, size_average=False).mean())
        return run

    def run_grad():
        xl = torch.from_numpy(x).requires_grad_(True)   # fresh leaf: no accumulated grad
        v = ssim(_nchw(xl, inp), Y, data_range=DATA_RANGE, size_average=False)
        v.sum().backward()
        xl.grad.numpy()
        return float(v.detach().mean())
    return run_grad


# ---- MS-SSIM (issue 3) ---------------------------------------------------------------

MS_MIN_SIDE = 161   # (11 - 1) * 2**(5 - 1) + 1: five scales of an 11-tap window (Wang's convention)
MS_WARM_SIDE = 176  # the memory subprocess's warm-up copy: fits every library's five-scale rule


def _spatial_side(case):
    return case.size  # every case is square: (H, W), (H, W, 3) or (B, H, W)


def _ms_when(case, dtype, quick):
    if _spatial_side(case) < MS_MIN_SIDE:
        return (f"MS-SSIM needs ≥ {MS_MIN_SIDE} px per side (5 scales of an 11-tap window); "
                f"this case has {_spatial_side(case)}")
    return None


QUICK_PEER_CASE = "1024²"  # --quick times the (slow) torch-based peers on the target case only


def _mem_available():
    """MemAvailable in bytes, or None where /proc is missing."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _ms_peer(factor32, factor64):
    """``when`` for a torch-based MS-SSIM peer whose one call holds about ``factor``
    inputs' worth of memory (measured at 256²-1024²): skip a case that would need
    more than half the memory now available (torchmetrics in float64 holds ~620
    inputs: 20 GB at 2048²)."""
    def when(case, dtype, quick):
        why = _ms_when(case, dtype, quick)
        if why is None and quick and case.name != QUICK_PEER_CASE:
            why = f"--quick: the torch-based MS-SSIM peers run on the {QUICK_PEER_CASE} case only"
        if why is None:
            need = math.prod(case.shape) * np.dtype(dtype).itemsize * (factor64 if dtype == "float64" else factor32)
            avail = _mem_available()
            if avail is not None and need > avail / 2:
                why = (f"would need about {need / 2**30:.1f} GiB ({factor64 if dtype == 'float64' else factor32}× "
                       f"one input), more than half the {avail / 2**30:.1f} GiB available")
        return why
    return when


def _fs_ms(inp, gradient=None):
    import fastssim

    x, y, ca = inp.x, inp.y, inp.channel_axis
    if gradient is None:
        return lambda: _mean(fastssim.ms_ssim(x, y, data_range=DATA_RANGE, channel_axis=ca))
    return lambda: _mean(fastssim.ms_ssim(x, y, data_range=DATA_RANGE, channel_axis=ca, gradient=gradient).value)


def _torch_peer(inp, fn, gradient):
    """A torch function ``fn(X, Y) -> per-item values`` on (N, C, H, W) views of the
    case's arrays: under ``torch.no_grad()``, or with ``.sum().backward()`` w.r.t. X."""
    import torch

    x = inp.x
    Y = _nchw(torch.from_numpy(inp.y), inp)
    if not gradient:
        X = _nchw(torch.from_numpy(x), inp)

        def run():
            with torch.no_grad():
                return float(fn(X, Y).mean())
        return run

    def run_grad():
        xl = torch.from_numpy(x).requires_grad_(True)   # fresh leaf: no accumulated grad
        v = fn(_nchw(xl, inp), Y)
        v.sum().backward()
        xl.grad.numpy()
        return float(v.detach().mean())
    return run_grad


def _pytorch_msssim_ms(inp, gradient=False):
    try:
        import torch  # noqa: F401
        from pytorch_msssim import ms_ssim
    except ImportError:
        raise Skip("pytorch_msssim/torch not installed (pip install torch pytorch-msssim)") from None
    return _torch_peer(inp, lambda X, Y: ms_ssim(X, Y, data_range=DATA_RANGE, size_average=False),
                       gradient)


def _piq_ms(inp, gradient=False):
    try:
        import torch  # noqa: F401
        from piq import multi_scale_ssim
    except ImportError:
        raise Skip("piq/torch not installed (pip install torch piq)") from None
    return _torch_peer(inp, lambda X, Y: multi_scale_ssim(X, Y, data_range=DATA_RANGE, reduction="none"),
                       gradient)


def _torchmetrics_ms(inp):
    try:
        import torch  # noqa: F401
        from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as msssim
    except ImportError:
        raise Skip("torchmetrics/torch not installed (pip install torch torchmetrics)") from None
    return _torch_peer(inp, lambda X, Y: msssim(X, Y, data_range=DATA_RANGE, reduction="none"),
                       False)


# ---- per-pixel MS-SSIM and the Mix loss (issue 4) ------------------------------------

PW_SIZES = (512, 1024)  # the per-pixel rows cost ~10x SSIM: grayscale 512² and 1024² only


def _pw_when(case, dtype, quick):
    if case.kind != "gray" or case.size not in PW_SIZES:
        return ("per-pixel MS-SSIM rows run on the " + " and ".join(f"{s}²" for s in PW_SIZES)
                + " grayscale cases only (about 10× the cost of SSIM)")
    return None


def _kornia_when(case, dtype, quick):
    why = _pw_when(case, dtype, quick)
    if why is None and dtype != "float32":
        why = "kornia MS_SSIMLoss is timed in float32 only (one call takes tens of seconds)"
    if why is None and quick and case.name != QUICK_PEER_CASE:
        why = f"--quick: kornia MS_SSIMLoss runs on the {QUICK_PEER_CASE} case only (one call takes tens of seconds)"
    return why


def _fs_pw(inp, gradient=None):
    import fastssim

    x, y, ca = inp.x, inp.y, inp.channel_axis
    if gradient is None:
        return lambda: _mean(fastssim.pixelwise_ms_ssim(x, y, data_range=DATA_RANGE, channel_axis=ca))
    return lambda: _mean(fastssim.pixelwise_ms_ssim(x, y, data_range=DATA_RANGE, channel_axis=ca,
                                                    gradient=gradient).value)


MIX_ALPHA = 0.84  # Zhao et al.'s Mix weight (fastssim's default; kornia's default is 0.025)


def _fs_mix(inp):
    from fastssim import losses

    x, y, ca = inp.x, inp.y, inp.channel_axis
    # prediction = x (the gradient is w.r.t. x, as in the other gradient rows), target = y
    return lambda: _mean(losses.mix(x, y, alpha=MIX_ALPHA, data_range=DATA_RANGE, channel_axis=ca,
                                    gradient=True).value)


def _kornia_mix(inp):
    try:
        import torch
        from kornia.losses import MS_SSIMLoss
    except ImportError:
        raise Skip("kornia/torch not installed (pip install kornia)") from None

    crit = MS_SSIMLoss(data_range=DATA_RANGE, alpha=MIX_ALPHA, compensation=1.0)
    x = inp.x
    Y = _nchw(torch.from_numpy(inp.y), inp)

    def run():
        xl = torch.from_numpy(x).requires_grad_(True)
        loss = crit(_nchw(xl, inp), Y)
        loss.backward()
        xl.grad.numpy()
        return float(loss.detach())
    return run


_GAUSS = "Gaussian σ=1.5 (11 taps), population cov."
_MS = "5 scales, Gaussian σ=1.5"
_MS_NOTE = ("Wang's msssim.m convention: 5 scales, weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), "
            "2×2 mean downsampling, valid region at each scale, negative means clamped at 0")
_PW = "σ 0.5, 1, 2, 4, 8, reflect borders"
_PW_NOTE = ("Zhao et al.'s per-pixel MS-SSIM: l from σ=8 × ∏ cs over σ = 0.5…8, every scale at full "
            "resolution, windows cut at 3.5σ (57 taps for σ=8); the value is the mean of the map")
_MIX_NOTE = ("α (1 − per-pixel MS-SSIM) + (1 − α) G_σ=8 ∗ |x − y|, per pixel then averaged; the value "
             "column shows the loss, not a similarity")
_KORNIA_NOTE = ("MS_SSIMLoss(data_range=1, alpha=0.84, compensation=1): the same Mix loss (its defaults "
                "alpha=0.025, compensation=200 are overridden), every σ in a full 2-D 33×33 mask (σ=8 cut at "
                "2σ) applied by conv2d, zero padding; loss.backward() w.r.t. x.  Too slow to time repeatedly: warmed up on a 64² copy, "
                "then timed in ONE full-size call (n = 1); its peak memory is measured only in a full run, "
                "not with --quick")
IMPLEMENTATIONS: list[Impl] = [
    # fastssim rows first: the others are compared with them.
    Impl("fs-gauss", "fastssim.ssim", f"value, {_GAUSS}", _fs_gauss),
    Impl("fs-gauss-1t", "fastssim.ssim, workers=1", f"value, {_GAUSS}", lambda inp: _fs_gauss(inp, 1),
         ref="fs-gauss", note="single thread: compare with the single-threaded peers (scikit-image)"),
    Impl("fs-box7", "fastssim.ssim, window='uniform', win_size=7", "value, box 7×7, sample cov. (skimage default)",
         _fs_box7, ref="fs-gauss"),
    Impl("fs-grad", "fastssim.ssim, gradient='x'", f"value + ∂/∂x, {_GAUSS}", _fs_grad, ref="fs-gauss",
         note="returns the gradient map too (counted in its peak memory)"),
    Impl("fs-dropin", "fastssim.structural_similarity", f"value, {_GAUSS}", _fs_dropin, ref="fs-gauss",
         note="the scikit-image drop-in API; loops over a batch like scikit-image"),
    # peers
    Impl("skimage", "skimage structural_similarity", f"value, {_GAUSS}", _skimage, ref="fs-gauss",
         note="gaussian_weights=True, sigma=1.5, use_sample_covariance=False; single-threaded"),
    Impl("skimage-grad", "skimage structural_similarity, gradient=True", f"value + ∂/∂im2, {_GAUSS}",
         lambda inp: _skimage(inp, gradient=True), ref="fs-grad",
         note="its gradient is not that of the value it returns (uncropped map mean)"),
    Impl("opencv", "OpenCV recipe (cv2.GaussianBlur ×5 + NumPy)", f"value, {_GAUSS}", _opencv,
         ref="fs-gauss", note="5 blurred full-size moments + ~15 full-size NumPy temporaries; no gradient"),
    Impl("fast-ssim", "Fast-SSIM (fast_ssim.ssim, win_size=7)", "value, box 7×7, sample cov.", _fast_ssim,
         ref="fs-box7", note="box window only (win_size, default 7), float32/uint8 only: float64 input is "
         "cast to float32 inside the timed call; no map, no gradient"),
    Impl("torch", "pytorch_msssim.ssim (CPU)", f"value, {_GAUSS}", _pytorch_msssim, ref="fs-gauss",
         note="batch-native (N, C, H, W); torch.no_grad()"),
    Impl("torch-grad", "pytorch_msssim.ssim + backward (CPU)", f"value + ∂/∂x (autograd), {_GAUSS}",
         lambda inp: _pytorch_msssim(inp, gradient=True), ref="fs-grad"),
    # MS-SSIM (issue 3): fastssim, then the peers
    Impl("fs-ms", "fastssim.ms_ssim", f"MS-SSIM value, {_MS}", _fs_ms, ref="fs-gauss",
         note=_MS_NOTE, when=_ms_when, warm_side=MS_WARM_SIDE),
    Impl("fs-ms-grad", "fastssim.ms_ssim, gradient='x'", f"MS-SSIM value + ∂/∂x, {_MS}",
         lambda inp: _fs_ms(inp, "x"), ref="fs-gauss", note=_MS_NOTE, when=_ms_when, warm_side=MS_WARM_SIDE),
    Impl("torch-ms", "pytorch_msssim.ms_ssim (CPU)", f"MS-SSIM value, {_MS}", _pytorch_msssim_ms, ref="fs-ms",
         note="torch.no_grad(); odd extents are zero-padded before downsampling (none here: all sizes are "
         "even down to the 5th scale)", when=_ms_peer(30, 30), warm_side=MS_WARM_SIDE),
    Impl("torch-ms-grad", "pytorch_msssim.ms_ssim + backward (CPU)", f"MS-SSIM value + ∂/∂x (autograd), {_MS}",
         lambda inp: _pytorch_msssim_ms(inp, gradient=True), ref="fs-ms-grad",
         when=_ms_peer(45, 30), warm_side=MS_WARM_SIDE),
    Impl("piq-ms", "piq.multi_scale_ssim (CPU)", f"MS-SSIM value, {_MS}", _piq_ms, ref="fs-ms",
         note="torch.no_grad(), reduction='none'", when=_ms_peer(30, 130), warm_side=MS_WARM_SIDE),
    Impl("piq-ms-grad", "piq.multi_scale_ssim + backward (CPU)", f"MS-SSIM value + ∂/∂x (autograd), {_MS}",
         lambda inp: _piq_ms(inp, gradient=True), ref="fs-ms-grad", when=_ms_peer(45, 130), warm_side=MS_WARM_SIDE),
    Impl("tm-ms", "torchmetrics multiscale_structural_similarity_index_measure (CPU)", f"MS-SSIM value, {_MS}",
         _torchmetrics_ms, ref="fs-ms", note="functional API, torch.no_grad(), reduction='none', "
         "normalize='relu' (its default: clamp at zero)", when=_ms_peer(95, 620), warm_side=MS_WARM_SIDE),
    # per-pixel MS-SSIM and the Mix loss (issue 4)
    Impl("fs-pw", "fastssim.pixelwise_ms_ssim", f"per-pixel MS-SSIM, mean of the map, {_PW}", _fs_pw,
         ref="fs-gauss", note=_PW_NOTE, when=_pw_when),
    Impl("fs-pw-grad", "fastssim.pixelwise_ms_ssim, gradient='x'", f"per-pixel MS-SSIM + ∂/∂x, {_PW}",
         lambda inp: _fs_pw(inp, "x"), ref="fs-grad", note=_PW_NOTE, when=_pw_when),
    Impl("fs-mix-grad", "fastssim.losses.mix, gradient=True", f"Mix loss (α=0.84) + ∂/∂prediction, {_PW}",
         _fs_mix, ref="fs-grad", note=_MIX_NOTE, when=_pw_when),
    Impl("kornia-mix-grad", "kornia.losses.MS_SSIMLoss forward + backward (CPU)",
         "Mix loss (α=0.84) + ∂/∂prediction (autograd), σ 0.5…8 in 33×33 masks (σ=8 cut at 2σ), zero padding",
         _kornia_mix, ref="fs-mix-grad", note=_KORNIA_NOTE, when=_kornia_when, slow=True),
]


# --------------------------------------------------------------------------------------
# Targets from the issues: reported as met / missed, never asserted.
# --------------------------------------------------------------------------------------

@dataclass
class Target:
    case: str           # Case.name
    dtype: str
    text: str
    kind: str           # 'speedup': t(peer)/t(key) >= bound; 'cost': t(key)/t(peer) <= bound;
                        # 'memory': mem(key)/input <= bound
    key: str
    other: str | None
    bound: float


TARGETS: list[Target] = [
    Target("1024²", "float32", "Gaussian value ≥ 5× faster than the OpenCV recipe", "speedup", "fs-gauss", "opencv", 5),
    Target("1024²", "float32", "Gaussian value ≥ 50× faster than scikit-image", "speedup", "fs-gauss", "skimage", 50),
    Target("1024²", "float32", "box-7 value at least as fast as Fast-SSIM", "speedup", "fs-box7", "fast-ssim", 1),
    Target("1024²", "float32", "value + gradient ≥ 40× faster than scikit-image gradient=True", "speedup",
           "fs-grad", "skimage-grad", 40),
    Target("1024²", "float32", "value + gradient ≤ 2.5× fastssim's value time", "cost", "fs-grad", "fs-gauss", 2.5),
    Target("1024²", "float32", "peak extra memory of a value call ≤ 2× one input", "memory", "fs-gauss", None, 2),
    # issue 3: MS-SSIM
    Target("1024²", "float32", "MS-SSIM value ≤ 1.5× fastssim's Gaussian SSIM value time", "cost",
           "fs-ms", "fs-gauss", 1.5),
    Target("1024²", "float32", "MS-SSIM value ≥ 20× faster than pytorch_msssim", "speedup",
           "fs-ms", "torch-ms", 20),
    Target("1024²", "float32", "MS-SSIM value + gradient ≤ 3× fastssim's SSIM value time", "cost",
           "fs-ms-grad", "fs-gauss", 3),
    # issue 4: per-pixel MS-SSIM
    Target("1024²", "float32", "per-pixel MS-SSIM value + gradient ≤ 12× fastssim's SSIM value + gradient",
           "cost", "fs-pw-grad", "fs-grad", 12),
    Target("1024²", "float32", "per-pixel MS-SSIM value + gradient ≥ 100× faster than kornia MS_SSIMLoss "
           "forward + backward", "speedup", "fs-pw-grad", "kornia-mix-grad", 100),
    Target("1024²", "float32", "(like for like, not in the issue) Mix loss + gradient ≥ 100× faster than kornia "
           "MS_SSIMLoss forward + backward", "speedup", "fs-mix-grad", "kornia-mix-grad", 100),
]


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------

@dataclass
class Timing:
    median: float
    q1: float
    q3: float
    n: int
    value: float


def _timing(times, value):
    if len(times) >= 4:
        q1, _, q3 = statistics.quantiles(times, n=4)
    else:
        q1, q3 = min(times), max(times)
    return Timing(statistics.median(times), q1, q3, len(times), value)


def time_rows(fns, rounds, round_time, progress=None, warmups=None):
    """Time several callables against each other.

    Each is called once to warm up (its return value is the row's value).  Then
    ``rounds`` rounds run every callable in turn, each for at least one call
    and about ``round_time`` seconds, recording every call's wall time.  Interleaving the rows spreads a burst of outside load (another
    process, a preempted vCPU) over all rows instead of one, so the ratios
    stay meaningful on a busy 2-core machine.  Rows whose warm-up took longer
    than ``SLOW_CALL`` seconds stop after ``SLOW_ROUNDS`` rounds; rows whose
    warm-up took longer than ``SINGLE_CALL`` seconds are timed in one call.

    ``warmups[i]``, where given (the slow peers), is a callable on a small copy
    of the inputs: it is called instead of the full-size warm-up, and the row
    is then timed in exactly one full-size call, which also gives its value.

    ``progress(i, seconds, error, what)`` is told about each warm-up
    (``what='warm-up'``) and each single timed call (``what='single'``, also
    once before it starts, with ``seconds=None``).  Returns one :class:`Timing`
    per callable (the median and quartiles over all its calls), or an error
    string for a callable that raised.
    """
    warmups = warmups or [None] * len(fns)
    values, first, errors = [], [], []
    times = [[] for _ in fns]
    done = [False] * len(fns)
    for i, fn in enumerate(fns):
        err = None
        t0 = time.perf_counter()
        try:
            if warmups[i] is None:
                values.append(fn())
            else:
                warmups[i]()
                if progress:
                    progress(i, None, None, "single")
                gc.collect()
                t0 = time.perf_counter()
                values.append(fn())
                times[i].append(time.perf_counter() - t0)
                done[i] = True
        except Exception as e:  # a broken row must not take the whole table down
            values.append(None)
            err = f"error: {type(e).__name__}: {e}"
        errors.append(err)
        first.append(time.perf_counter() - t0)
        if progress:
            progress(i, first[-1], err, "single" if warmups[i] is not None else "warm-up")
    for k in range(rounds):
        for i, fn in enumerate(fns):
            if errors[i] is not None or done[i]:
                continue
            if k >= SLOW_ROUNDS and first[i] >= SLOW_CALL:
                continue  # a slow row's median is stable after a few calls; keep the run short
            gc.collect()
            start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                fn()
                t1 = time.perf_counter()
                times[i].append(t1 - t0)
                if t1 - start >= round_time or len(times[i]) >= MAX_CALLS * (k + 1):
                    break
            if first[i] >= SINGLE_CALL:
                done[i] = True  # seconds per call: one timed call is enough and keeps the run short
    return [err if err is not None else _timing(t, v) for t, v, err in zip(times, values, errors)]


class CpuMeter:
    """How busy other processes kept the CPUs while we timed: the machine's
    busy time (/proc/stat) minus this process's own CPU time, as a fraction
    of all CPUs over the wall time.  On a shared 2-core machine this is the
    number to read before trusting a table.  None where /proc is missing."""

    @staticmethod
    def _machine_busy():
        try:
            with open("/proc/stat") as f:
                v = [int(t) for t in f.readline().split()[1:]]
        except OSError:
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        self.m0, self.t0, self.w0 = self._machine_busy(), os.times(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        m1, t1 = self._machine_busy(), os.times()
        wall = time.perf_counter() - self.w0
        if self.m0 is None or m1 is None or wall <= 0:
            self.other = None
            return
        own = (t1.user - self.t0.user) + (t1.system - self.t0.system)
        ncpu = os.cpu_count() or 1
        self.other = min(1.0, max(0.0, (m1 - self.m0 - own) / (wall * ncpu)))


# --------------------------------------------------------------------------------------
# Peak extra memory, in a fresh subprocess
# --------------------------------------------------------------------------------------

def _maxrss_bytes():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _proc_status_bytes(field):
    """VmRSS / VmHWM of this process from /proc/self/status, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss():
    """Lower this process's peak-RSS mark (VmHWM) to its current RSS
    (Linux >= 4.0).  False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(spec):
    """Runs in the subprocess: build the inputs, then for each row warm up on a
    small copy of the case (library and thread-pool start-up is not counted),
    reset the peak-RSS mark, make one full-size call, and read the peak.

    Why VmHWM and not ru_maxrss: the kernel carries the pre-exec address
    space's high-water mark into ru_maxrss, so in a child of this (large)
    process ru_maxrss starts at the parent's RSS and hides everything below
    it; VmHWM belongs to the child's own address space and can be reset.
    Where /proc is missing, fall back to the ru_maxrss delta (a lower bound)."""
    case = Case(**spec["case"])
    dtype = np.dtype(spec["dtype"])
    inp = make_inputs(case, dtype)
    impls = {i.key: i for i in IMPLEMENTATIONS}
    out = {}
    for key in spec["keys"]:
        impl = impls[key]
        try:
            impl.make(small_inputs(case, dtype, impl.warm_side))()
            fn = impl.make(inp)
            gc.collect()
            if _reset_peak_rss() and _proc_status_bytes("VmHWM") is not None:
                base = _proc_status_bytes("VmRSS")
                fn()
                peak = _proc_status_bytes("VmHWM")
                method = "hwm"
            else:
                base = _maxrss_bytes()
                fn()
                peak = _maxrss_bytes()
                method = "maxrss"
        except Exception as e:  # Skip, or a broken row: report it, measure the others
            print(f"{key}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        out[key] = {"extra": max(0, peak - base), "method": method}
        del fn
        gc.collect()
    return out


def measure_memory(case, dtype, keys, timeout=600):
    """Peak extra memory (bytes) of one call of each row, in a fresh process.
    glibc's dynamic mmap threshold is pinned so that freed big buffers go back
    to the OS instead of being silently reused by the next call."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    spec = json.dumps({"case": case.spec(), "dtype": np.dtype(dtype).name, "keys": keys})
    try:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--_memory-child", spec],
                           capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  memory subprocess timed out for {case.name} {dtype}", file=sys.stderr)
        return {}
    if r.returncode != 0:
        print(f"  memory subprocess failed for {case.name} {dtype}:\n{r.stderr[-2000:]}", file=sys.stderr)
        return {}
    if r.stderr.strip():
        print(f"  memory subprocess, {case.name} {dtype}: {r.stderr.strip()[-1000:]}", file=sys.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(mod):
    try:
        m = __import__(mod)
    except Exception as e:  # ImportError, or a broken install
        return f"not available ({type(e).__name__})"
    v = getattr(m, "__version__", None)
    if v is None:  # e.g. fast_ssim and pytorch_msssim keep it elsewhere: ask the distribution
        from importlib import metadata
        try:
            dists = metadata.packages_distributions().get(mod, [])
            v = metadata.version(dists[0]) if dists else None
        except Exception:
            v = None
    return str(v or "installed")


def _source_of(module):
    """Where the timed package was imported from, with its git commit when it is a checkout."""
    where = os.path.dirname(os.path.abspath(module.__file__))
    try:
        rev = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return where
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{where} (git {rev.stdout.strip()}{', with uncommitted changes' if dirty else ''})"
    except (OSError, subprocess.SubprocessError):
        return where


def machine_description():
    import fastssim

    lines = []
    ncpu = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = ncpu
    lines.append(f"CPU:        {_cpu_model()}  ({ncpu} logical CPUs, {usable} usable)")
    lines.append(f"memory:     {_mem_total()}")
    lines.append(f"system:     {platform.platform()}")
    lines.append(f"python:     {sys.version.split()[0]}")
    try:
        lines.append("load avg:   %.2f %.2f %.2f (1/5/15 min, at start)" % os.getloadavg())
    except OSError:
        pass
    buf = io.StringIO()
    fastssim.show_config(file=buf)
    lines += buf.getvalue().rstrip().splitlines()
    lines.append(f"  from:      {_source_of(fastssim)}")
    vers = {m: _version(m) for m in ("numpy", "scipy", "skimage", "cv2", "fast_ssim", "torch", "pytorch_msssim",
                                      "piq", "torchmetrics", "kornia")}
    lines.append("versions:   " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    env = {k: os.environ.get(k, "(unset)") for k in
           ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    lines.append("env:        " + ", ".join(f"{k}={v}" for k, v in env.items()))
    threads = ["scikit-image: 1 (scipy.ndimage)"]
    try:
        import cv2
        threads.append(f"cv2: {cv2.getNumThreads()}")
    except ImportError:
        pass
    try:
        import torch
        threads.append(f"torch: {torch.get_num_threads()}")
    except ImportError:
        pass
    try:
        import fast_ssim
        st = fast_ssim.get_cpu_status()
        threads.append(f"Fast-SSIM: std::thread pool ({'AVX2+FMA' if st == 0 else f'SSE fallback, status {st}'})")
    except Exception:
        pass
    lines.append("threads:    " + ", ".join(threads))
    try:
        from threadpoolctl import threadpool_info
        pools = [" ".join(str(v) for v in (p.get("internal_api"), p.get("version"),
                                             f"{p.get('num_threads')} threads", p.get("architecture")) if v)
                 for p in threadpool_info()]
        if pools:
            lines.append("threadpools: " + "; ".join(pools))
    except ImportError:
        pass
    return lines


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

@dataclass
class Row:
    impl: Impl
    timing: Timing | None = None
    skipped: str | None = None
    mem: int | None = None
    mem_method: str | None = None


def _fmt_time(s):
    ms = s * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _fmt_ratio(r):
    return f"{r:.3g}" if r < 1000 else f"{r:.0f}"


def case_table(case, dtype, rows, input_bytes, other_load=None, excluded=()):
    by_key = {r.impl.key: r for r in rows}
    head = (f"### {case.name} {np.dtype(dtype).name}  ({case.describe}, shape {case.shape}, "
            f"{case.megapixels:.3g} MP, one input = {input_bytes / 2**20:.3g} MiB)")
    out = [head, ""]
    if other_load is not None:
        warn = " — **busy machine: times are inflated and noisy**" if other_load > 0.1 else ""
        out += [f"Other processes used {100 * other_load:.0f}% of the CPUs while this case was timed{warn}.", ""]
    out += [
           "| implementation | computes | median ms | IQR % | n | MP/s | ÷ ref | ref | peak extra MiB | × input | value |",
           "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    footnotes = []
    for r in rows:
        label = r.impl.label
        if r.impl.note:
            if r.impl.note not in footnotes:
                footnotes.append(r.impl.note)
            label += f" [{footnotes.index(r.impl.note) + 1}]"
        if r.timing is None:
            out.append(f"| {label} | {r.impl.computes} | skipped: {r.skipped} | | | | | | | | |")
            continue
        t = r.timing
        iqr = 100 * (t.q3 - t.q1) / t.median if t.median > 0 else 0
        ratio, ref = "", ""
        refrow = by_key.get(r.impl.ref) if r.impl.ref else None
        if refrow is not None and refrow.timing is not None:
            ratio = _fmt_ratio(t.median / refrow.timing.median)
            ref = r.impl.ref
        mem = xin = ""
        if r.mem is not None:
            # 'maxrss' (no /proc): only what rose above the subprocess's
            # earlier peak was seen, so it is a lower bound.
            lb = "≥ " if r.mem_method == "maxrss" else ""
            mem = f"{lb}{r.mem / 2**20:.1f}"
            xin = f"{lb}{r.mem / input_bytes:.2f}"
        out.append(f"| {label} | {r.impl.computes} | {_fmt_time(t.median)} | {iqr:.0f} | {t.n} | "
                   f"{case.megapixels / t.median:.3g} | {ratio} | {ref} | {mem} | {xin} | {t.value:.6f} |")
    out.append("")
    for i, n in enumerate(footnotes, 1):
        out.append(f"[{i}] {n}  ")
    reasons = {}
    for key, why in excluded:
        reasons.setdefault(why, []).append(key)
    for why, keys in reasons.items():
        out.append(f"Not run for this case: {', '.join(keys)} — {why}.  ")
    out.append("")
    return out


def targets_section(results):
    """results: {(case name, dtype name): ({key: Row}, bytes of one input)}"""
    out = []
    for tg in TARGETS:
        if (tg.case, tg.dtype) not in results:
            continue
        rows, nbytes = results[(tg.case, tg.dtype)]
        a = rows.get(tg.key)
        b = rows.get(tg.other) if tg.other else None
        if a is None or a.timing is None:
            continue
        if tg.kind == "memory":
            if a.mem is None:
                continue
            val, ok = a.mem / nbytes, a.mem / nbytes <= tg.bound
            shown = f"{val:.2f}× input"
        else:
            if b is None or b.timing is None:
                continue
            if tg.kind == "speedup":
                val = b.timing.median / a.timing.median
                ok = val >= tg.bound
            else:
                val = a.timing.median / b.timing.median
                ok = val <= tg.bound
            shown = f"{val:.3g}×"
        out.append(f"| {tg.case} {tg.dtype} | {tg.text} | {shown} | {'met' if ok else 'MISSED'} |")
    if not out:
        return []
    return ["### Targets from the issues (reported, not asserted)", "",
            "| case | target | measured | |", "|---|---|---:|---|", *out, ""]


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="3 short rounds, no 2048² case, float32 only, the torch-based MS-SSIM peers and "
                        "kornia at 1024² only (under two minutes)")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="grayscale sizes (default 512 1024 2048; --quick: 512 1024)")
    p.add_argument("--cases", nargs="+", choices=("gray", "rgb", "batch"), default=["gray", "rgb", "batch"],
                   help="which kinds of case: gray (the --sizes), rgb (1024²×3), batch (16×256²)")
    p.add_argument("--dtypes", nargs="+", choices=("float32", "float64"), default=None,
                   help="default float32 float64; --quick: float32")
    p.add_argument("--only", default=None, metavar="REGEX",
                   help="run only rows whose key matches (keys: "
                        + ", ".join(i.key for i in IMPLEMENTATIONS) + "); reference rows are kept")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--out", default=None, help="also write the Markdown report to this file")
    p.add_argument("--_memory-child", dest="memory_child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def select_impls(only):
    if not only:
        return list(IMPLEMENTATIONS)
    rx = re.compile(only)
    wanted = {i.key for i in IMPLEMENTATIONS if rx.search(i.key)}
    impls = {i.key: i for i in IMPLEMENTATIONS}
    for k in list(wanted):  # keep each row's reference
        ref = impls[k].ref
        while ref and ref not in wanted:
            wanted.add(ref)
            ref = impls[ref].ref
    return [i for i in IMPLEMENTATIONS if i.key in wanted]


def main(argv=None):
    args = parse_args(argv)
    if args.memory_child is not None:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return 0

    sizes = args.sizes or ([512, 1024] if args.quick else [512, 1024, 2048])
    dtypes = args.dtypes or (["float32"] if args.quick else ["float32", "float64"])
    rounds, round_time = (3, 0.03) if args.quick else (5, 0.05)
    cases = []
    if "gray" in args.cases:
        cases += [Case("gray", s) for s in sizes]
    if "rgb" in args.cases:
        cases.append(Case("rgb", 1024))
    if "batch" in args.cases:
        cases.append(Case("batch", 256, 16))
    impls = select_impls(args.only)

    report = []

    def emit(lines):
        for line in lines:
            print(line)
        sys.stdout.flush()
        report.extend(lines)

    t_start = time.perf_counter()
    emit(["# fastssim benchmark", "", "```", *machine_description(), "```", "",
          f"Median wall time of n calls after one warm-up; the rows are interleaved in {rounds} rounds of "
          f"about {round_time} s each (at least one call per round); a row whose warm-up took more than "
          f"{SINGLE_CALL:g} s is timed in one call (n = 1), and a slow peer marked so in its footnote is warmed "
          "up on a small copy and then timed in one call; "
          "MP = samples in one input (channels and batch items counted); ÷ ref = this row's time / the "
          "named fastssim row's time (> 1: fastssim is faster); peak extra = peak RSS of one call above "
          "the RSS before it, measured in a fresh subprocess"
          + (" (skipped: --no-memory)" if args.no_memory else "") + "; value = the SSIM, MS-SSIM or loss the row "
          "returned (mean over a batch).", ""])

    results = {}
    for case in cases:
        for dname in dtypes:
            dtype = np.dtype(dname)
            inp = make_inputs(case, dtype)
            rows, fns, warms, excluded = [], [], [], []
            for impl in impls:
                why = impl.excluded(case, dname, args.quick)
                if why is not None:
                    excluded.append((impl.key, why))
                    continue
                row = Row(impl)
                try:
                    fn = impl.make(inp)
                    warm = impl.make(small_inputs(case, dtype, impl.warm_side)) if impl.slow else None
                    fns.append(fn)
                    warms.append(warm)
                except Skip as e:
                    row.skipped = str(e)
                except Exception as e:
                    row.skipped = f"error: {type(e).__name__}: {e}"
                rows.append(row)
            live = [r for r in rows if r.skipped is None]

            def progress(i, t, err, what, live=live, case=case, dname=dname):
                if err:
                    msg = err
                elif what == "single" and t is None:
                    msg = (f"warmed up on a {min(case.size, live[i].impl.warm_side)}² copy; timing ONE "
                           "full-size call (may take a minute or more)")
                elif what == "single":
                    msg = f"one timed call {_fmt_time(t)} ms"
                else:
                    msg = f"warm-up {_fmt_time(t)} ms" + (" (one timed call follows)" if t >= SINGLE_CALL else "")
                print(f"  [{time.perf_counter() - t_start:6.1f} s] {case.name} {dname} "
                      f"{live[i].impl.key}: {msg}", file=sys.stderr, flush=True)
            with CpuMeter() as meter:
                timings = time_rows(fns, rounds, round_time, progress, warms)
            for r, tm in zip(live, timings):
                if isinstance(tm, str):
                    r.skipped = tm
                else:
                    r.timing = tm
            del fns, warms
            if not args.no_memory:
                mem = measure_memory(case, dtype, [r.impl.key for r in rows if r.timing is not None
                                                   and not (r.impl.slow and args.quick)])
                for r in rows:
                    if r.impl.key in mem:
                        r.mem = mem[r.impl.key]["extra"]
                        r.mem_method = mem[r.impl.key]["method"]
            input_bytes = inp.x.nbytes
            emit(case_table(case, dtype, rows, input_bytes, meter.other, excluded))
            results[(case.name, dname)] = ({r.impl.key: r for r in rows}, input_bytes)
            del inp
            gc.collect()

    tail = targets_section(results)
    try:
        load = "load avg at end: %.2f %.2f %.2f; " % os.getloadavg()
    except OSError:
        load = ""
    tail.append(f"_{load}total benchmark time {time.perf_counter() - t_start:.0f} s._")
    emit(tail)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("\n".join(report) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
