"""The rows of the table: fastssim's entry points and its peers (scikit-image, the
OpenCV recipe, Fast-SSIM, pytorch_msssim, piq, torchmetrics, kornia).

Adding a row: append an :class:`Impl` to ``IMPLEMENTATIONS``.  ``make(inp)``
receives the case's :class:`~fsbench.cases.Inputs` and returns a zero-argument
callable that does the work and returns the mean value (a float), or raises
:class:`~fsbench.cases.Skip` with a reason.  Import optional peers inside
``make`` so that a missing package only skips its own rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .cases import DATA_RANGE, K1, K2, Skip

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


# --- box windows by running sums (issue 16, box part) ---
def _fs_box(inp, win_size, gradient=None):
    import fastssim

    x, y, ca = inp.x, inp.y, inp.channel_axis
    if gradient is None:
        return lambda: _mean(fastssim.ssim(x, y, data_range=DATA_RANGE, window="uniform",
                                           win_size=win_size, covariance="sample", channel_axis=ca))
    return lambda: _mean(fastssim.ssim(x, y, data_range=DATA_RANGE, window="uniform", win_size=win_size,
                                       covariance="sample", channel_axis=ca, gradient=gradient).value)
# --- end box windows


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
    # --- box windows by running sums (issue 16, box part) ---
    Impl("fs-box51", "fastssim.ssim, window='uniform', win_size=51", "value, box 51×51, sample cov.",
         lambda inp: _fs_box(inp, 51), ref="fs-box7",
         note="box windows sum in float64 (float32 input: anchored running sums along lines and across; float64: tree sums along lines): the cost "
         "should not grow with the width"),
    Impl("fs-box7-grad", "fastssim.ssim, window='uniform', win_size=7, gradient='x'",
         "value + ∂/∂x, box 7×7, sample cov.", lambda inp: _fs_box(inp, 7, "x"), ref="fs-box7"),
    Impl("fs-box51-grad", "fastssim.ssim, window='uniform', win_size=51, gradient='x'",
         "value + ∂/∂x, box 51×51, sample cov.", lambda inp: _fs_box(inp, 51, "x"), ref="fs-box7"),
    # --- end box windows
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

