"""The fixed image pairs of the convention presets' tests, README table and
frozen values (issue 17): bundled scikit-image images and a seeded distortion.

``gray``  : scikit-image's camera (512 x 512 uint8) and a distorted copy;
``color`` : astronaut cropped to 389 x 397 x 3 (odd sides: the MS-SSIM
            downsampling conventions differ there) and a distorted copy.
``wide``  : 640 x 700 gray (camera tiled): min side / 256 = 2.5, where
            MATLAB's round gives 3 and Python's (piq) gives 2.

The distortion: a 3-tap box blur along both axes (edge samples repeated),
then Gaussian noise of standard deviation 12 from numpy's default_rng(17),
rounded and clipped to [0, 255].
"""

import numpy as np


def _distort(ref, seed=17):
    a = ref.astype(np.float64)
    for ax in (0, 1):
        p = np.concatenate([np.take(a, [0], ax), a, np.take(a, [-1], ax)], axis=ax)
        n = a.shape[ax]
        a = (np.take(p, range(0, n), ax) + np.take(p, range(1, n + 1), ax)
             + np.take(p, range(2, n + 2), ax)) / 3.0
    a = a + np.random.default_rng(seed).normal(0.0, 12.0, a.shape)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def pair(name):
    """(reference, distorted), uint8."""
    import skimage.data

    if name == "gray":
        ref = skimage.data.camera()
    elif name == "color":
        ref = np.ascontiguousarray(skimage.data.astronaut()[:389, :397])
    elif name == "wide":
        cam = skimage.data.camera()
        ref = np.ascontiguousarray(np.tile(cam, (2, 2))[:640, :700])
    else:
        raise ValueError(name)
    return ref, _distort(ref)
