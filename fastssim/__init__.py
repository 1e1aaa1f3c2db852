"""fastssim: SSIM / MS-SSIM values and their exact analytic gradients, fast.

NumPy in, NumPy out; one streaming Cython/C + OpenMP filter engine serves
every function.  Importing fastssim never imports CuPy, PyTorch or Dask.
"""

from ._config import show_config
from ._conventions import Convention, conventions  # issue 17
from ._msssim import (
    WANG_WEIGHTS,
    MSSSIMResult,
    min_size,
    ms_ssim,
    multiscale_structural_similarity,
)
from ._pixelwise import ZHAO_SIGMAS, PixelwiseResult, pixelwise_ms_ssim, pixelwise_ms_ssim_vjp
from ._ssim import SSIMResult, ssim, ssim_vjp
from . import losses
from ._structural_similarity import structural_similarity

__version__ = "0.1.0"

__all__ = [
    "ssim",
    "ssim_vjp",
    "SSIMResult",
    "structural_similarity",
    "ms_ssim",
    "multiscale_structural_similarity",
    "MSSSIMResult",
    "WANG_WEIGHTS",
    "min_size",
    "pixelwise_ms_ssim",
    "pixelwise_ms_ssim_vjp",
    "PixelwiseResult",
    "ZHAO_SIGMAS",
    "losses",
    "show_config",
    "conventions",  # issue 17
    "Convention",  # issue 17
    "__version__",
]
