"""Fit a linear denoising filter with each loss of Zhao et al. and compare the results.

A small-scale, framework-free echo of the comparison in Zhao, Gallo, Frosio
and Kautz, "Loss functions for image restoration with neural networks"
(IEEE TCI 2017): the same model is trained to minimise l1, l2, 1 - SSIM,
1 - MS-SSIM, the per-pixel MS-SSIM loss and Mix in turn, and every result is
scored on a held-out image.  The "network" is a k x k convolution kernel plus
a bias, so the model is linear in its parameters and the gradient of any loss
with respect to them follows from ``fastssim.losses``' gradient map by the
chain rule:

    prediction_b(p) = sum_{u,v} K[u, v] * xpad_b(p + (u, v)) + c

with xpad_b the noisy input of crop b, padded symmetrically by k // 2
(scipy.ndimage's 'reflect').  Written as prediction = A theta, A's rows being
the k x k input patches (and a 1 for the bias):

    d prediction_b(p) / d K[u, v] = xpad_b(p + (u, v)),   d prediction_b(p) / d c = 1

    d L / d K[u, v] = sum_b sum_p g_b(p) xpad_b(p + (u, v))   (= A^T g: the
                      cross-correlation of the padded input with g)
    d L / d c       = sum_b sum_p g_b(p)

where L = (1/B) sum_b loss_b is the training objective and g_b = d L / d
prediction_b = (d loss_b / d prediction_b) / B, the ``grad`` that each loss
returns with ``gradient=True`` divided by the number of crops.  A theta is
scipy.ndimage.correlate; A^T g is an einsum over a ``sliding_window_view`` of
the padded input, so A is never stored (``--check-grad`` confirms that the two
are adjoint, borders included).

The parameters are fitted with scipy's L-BFGS-B from the identity filter
(output = noisy input).  Training data: 192 x 192 grayscale crops of
scikit-image sample images with additive Gaussian noise (sigma 0.1 in [0, 1]
units, not clipped); held-out image: ``chelsea`` (the cat), never cropped for
training.  Everything is seeded.

Run it (about 20 s on a busy 2-core machine; the PNG goes next to this script
unless ``--out`` says otherwise)::

    python examples/denoise_with_losses.py [--out examples/denoise_with_losses.png]
    python examples/denoise_with_losses.py --check-grad     # finite-difference check only

Needs numpy, scipy and scikit-image (the ``test`` extra); Pillow for the PNG.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

try:
    import scipy.optimize
    from scipy import ndimage
    from skimage import color, data
except ImportError as exc:  # pragma: no cover - a clear message instead of a traceback
    sys.exit(f"this example needs scipy and scikit-image (pip install scipy scikit-image): {exc}")

import fastssim
from fastssim import losses

LOSSES = ("l1", "l2", "ssim", "ms_ssim", "pixelwise_ms_ssim", "mix")
LABELS = {
    "l1": "l1",
    "l2": "l2",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "pixelwise_ms_ssim": "per-pixel MS-SSIM",
    "mix": "Mix (alpha 0.84)",
}
TRAIN_IMAGES = ("camera", "astronaut", "coffee", "rocket")
TEST_IMAGE = "chelsea"
DATA_RANGE = 1.0


# --------------------------------------------------------------------------- data

def gray(name):
    """A scikit-image sample image as float64 grayscale in [0, 1]."""
    img = getattr(data, name)()
    if img.ndim == 3:
        return color.rgb2gray(img[..., :3]).astype(np.float64)
    return img.astype(np.float64) / 255.0


def degrade(clean, rng, noise, blur):
    """Optional Gaussian blur (sigma ``blur`` px), then additive Gaussian noise."""
    x = clean
    if blur > 0:
        x = ndimage.gaussian_filter(x, sigma=[0.0] * (x.ndim - 2) + [blur, blur], mode="reflect")
    return x + noise * rng.standard_normal(clean.shape)


def training_set(rng, crops_per_image, size, noise, blur):
    """(noisy, clean), each of shape (B, size, size): random crops of TRAIN_IMAGES."""
    clean = []
    for name in TRAIN_IMAGES:
        img = gray(name)
        for _ in range(crops_per_image):
            i = rng.integers(0, img.shape[0] - size + 1)
            j = rng.integers(0, img.shape[1] - size + 1)
            clean.append(img[i:i + size, j:j + size])
    clean = np.stack(clean)
    return degrade(clean, rng, noise, blur), clean


# --------------------------------------------------------------------------- model

class LinearFilter:
    """prediction = correlate(noisy, K, mode='reflect') + c, linear in theta = (K.ravel(), c)."""

    def __init__(self, noisy, k):
        if k % 2 != 1:
            raise ValueError(f"kernel size must be odd, got {k}")
        self.k = k
        noisy = np.asarray(noisy, dtype=np.float64)
        if noisy.ndim == 2:
            noisy = noisy[None]
        self.noisy = noisy
        r = k // 2
        xpad = np.pad(noisy, [(0, 0), (r, r), (r, r)], mode="symmetric")  # scipy's 'reflect'
        # windows[b, h, w, u, v] = xpad[b, h + u, w + v]: the rows of A, never copied
        self.windows = sliding_window_view(xpad, (k, k), axis=(-2, -1))
        self.nparams = k * k + 1

    @staticmethod
    def identity(k):
        theta = np.zeros(k * k + 1)
        theta[(k * k) // 2] = 1.0
        return theta

    def predict(self, theta):                          # A theta
        K = theta[:-1].reshape(1, self.k, self.k)
        # == np.einsum("bhwuv,uv->bhw", self.windows, K[0]) + c, about twice as fast
        return ndimage.correlate(self.noisy, K, mode="reflect") + theta[-1]

    def backward(self, g):                             # A^T g
        gK = np.einsum("bhwuv,bhw->uv", self.windows, g)
        return np.concatenate([gK.ravel(), [g.sum()]])


def loss_kwargs(name, ms_weights=None):
    if name in ("l1", "l2"):
        return {}
    kw = {"data_range": DATA_RANGE}
    if name == "ms_ssim" and ms_weights is not None:
        kw["weights"] = ms_weights
    return kw


def objective(model, clean, name, kw):
    """theta -> (L, dL/dtheta), L the mean over the crops of the loss ``name``."""
    fn = getattr(losses, name)
    clean = clean.reshape((-1,) + clean.shape[-2:])
    nitems = clean.shape[0]

    def f(theta):
        r = fn(model.predict(theta), clean, gradient=True, **kw)
        return float(np.mean(r.value)), model.backward(r.grad / nitems)

    return f


def fit(model, clean, name, maxiter):
    f = objective(model, clean, name, loss_kwargs(name))
    t0 = time.perf_counter()
    res = scipy.optimize.minimize(
        f, LinearFilter.identity(model.k), jac=True, method="L-BFGS-B",
        # the losses differ in scale by orders of magnitude: stop on the iteration
        # count, not on absolute tolerances (l1 is not smooth, so it always runs to
        # the cap, long converged: its loss changes by ~1e-9 between 50 and 200)
        options={"maxiter": maxiter, "maxfun": 2 * maxiter, "ftol": 1e-15, "gtol": 1e-12},
    )
    return res, time.perf_counter() - t0


def least_squares(model, clean):
    """The closed-form l2 optimum (normal equations), to validate the optimiser."""
    n = model.nparams
    G = np.zeros((n, n))
    h = np.zeros(n)
    for b in range(clean.shape[0]):
        A = model.windows[b].reshape(-1, n - 1)
        A = np.hstack([A, np.ones((A.shape[0], 1))])
        G += A.T @ A
        h += A.T @ clean[b].ravel()
    return np.linalg.solve(G, h)


# --------------------------------------------------------------------------- scores

def scores(pred, clean):
    mse = float(np.mean((pred - clean) ** 2))
    return {
        "PSNR (dB)": 10.0 * np.log10(DATA_RANGE ** 2 / mse),
        "SSIM": float(fastssim.ssim(pred, clean, data_range=DATA_RANGE)),
        "MS-SSIM": float(fastssim.ms_ssim(pred, clean, data_range=DATA_RANGE)),
        "per-pixel MS-SSIM": float(fastssim.pixelwise_ms_ssim(pred, clean, data_range=DATA_RANGE)),
    }


def markdown_table(rows):
    cols = ["Trained with", "L-BFGS iters", "fit (s)", "PSNR (dB)", "SSIM", "MS-SSIM",
            "per-pixel MS-SSIM"]
    best = {c: max(r[c] for r in rows if r["Trained with"] != "(noisy input)")
            for c in cols[3:]}
    out = ["| " + " | ".join(cols) + " |",
           "|" + "|".join([":---"] + ["---:"] * (len(cols) - 1)) + "|"]
    for r in rows:
        cells = [r["Trained with"], str(r["L-BFGS iters"]), r["fit (s)"]]
        for c in cols[3:]:
            s = f"{r[c]:.2f}" if c == "PSNR (dB)" else f"{r[c]:.4f}"
            cells.append(f"**{s}**" if r["Trained with"] != "(noisy input)" and
                         np.isclose(r[c], best[c], rtol=0, atol=5e-5) else s)
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


# --------------------------------------------------------------------------- figure

def save_figure(path, panels, crop):
    """A 2 x 4 grid of labelled grayscale crops, as an 8-bit PNG (needs Pillow)."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        print(f"Pillow is not installed: skipping the figure {path} "
              "(pip install pillow to get it; the table above does not need it).")
        return False
    (i0, i1), (j0, j1) = crop
    h, w = i1 - i0, j1 - j0
    label_h, gap, ncol = 34, 4, 4
    nrow = -(-len(panels) // ncol)
    sheet = Image.new("L", (ncol * w + (ncol - 1) * gap, nrow * (h + label_h) + (nrow - 1) * gap), 255)
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    for n, (label, img) in enumerate(panels):
        r, c = divmod(n, ncol)
        x0, y0 = c * (w + gap), r * (h + label_h + gap)
        tile = np.clip(img[i0:i1, j0:j1], 0.0, 1.0)
        sheet.paste(Image.fromarray(np.round(tile * 255).astype(np.uint8)), (x0, y0 + label_h))
        draw.multiline_text((x0 + 2, y0 + 2), label, fill=0, font=font, spacing=2)
    sheet.save(path, optimize=True)
    return True


# --------------------------------------------------------------------------- gradient check

def check_grad(k, seed):
    """Central finite differences of dL/dtheta for every loss on a tiny float64 problem."""
    rng = np.random.default_rng(seed)
    clean = np.stack([gray(name)[100:164, 100:164] for name in TRAIN_IMAGES[:2]])
    noisy = degrade(clean, rng, 0.1, 0.0)
    model = LinearFilter(noisy, k)
    theta = LinearFilter.identity(k) + 0.02 * rng.standard_normal(model.nparams)
    h = 1e-6
    worst = 0.0
    print(f"Gradient check: {clean.shape[0]} crops of 64 x 64, {k} x {k} kernel + bias "
          f"({model.nparams} parameters), central differences, step {h:g}")
    for name in LOSSES:
        # 64 px fit 3 scales of MS-SSIM's 11-tap window, not 5: use the first three weights
        kw = loss_kwargs(name, ms_weights=fastssim.WANG_WEIGHTS[:3])
        f = objective(model, clean, name, kw)
        _, g = f(theta)
        fd = np.empty_like(g)
        for i in range(theta.size):
            e = np.zeros_like(theta)
            e[i] = h
            fd[i] = (f(theta + e)[0] - f(theta - e)[0]) / (2 * h)
        err = np.linalg.norm(g - fd) / np.linalg.norm(fd)
        worst = max(worst, err)
        print(f"  {name:18s} relative error ||g - g_fd|| / ||g_fd|| = {err:.2e}")
    print(f"  worst: {worst:.2e}")
    return worst


# --------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "denoise_with_losses.png"),
                    help="PNG comparing clean / noisy / each result, '' for none "
                         "(default: denoise_with_losses.png next to this script)")
    ap.add_argument("--kernel", type=int, default=7, help="odd kernel size (default: %(default)s)")
    ap.add_argument("--noise", type=float, default=0.1,
                    help="Gaussian noise sigma in [0, 1] units (default: %(default)s)")
    ap.add_argument("--blur", type=float, default=0.0,
                    help="also blur the input with a Gaussian of this sigma in px (default: none)")
    ap.add_argument("--crops", type=int, default=2,
                    help=f"training crops per image, from {', '.join(TRAIN_IMAGES)} (default: %(default)s)")
    ap.add_argument("--size", type=int, default=192, help="crop side in px (default: %(default)s)")
    ap.add_argument("--maxiter", type=int, default=50, help="L-BFGS iterations (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-grad", action="store_true",
                    help="only compare dL/dtheta with central differences for every loss")
    args = ap.parse_args(argv)

    if args.check_grad:
        worst = check_grad(args.kernel, args.seed)
        return 0 if worst < 1e-5 else 1
    if args.size < fastssim.min_size(5, 11):
        ap.error(f"--size must be at least {fastssim.min_size(5, 11)} for 5-scale MS-SSIM")

    t_start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    noisy, clean = training_set(rng, args.crops, args.size, args.noise, args.blur)
    test_clean = gray(TEST_IMAGE)
    test_noisy = degrade(test_clean, np.random.default_rng(args.seed + 1), args.noise, args.blur)
    print(f"Training: {clean.shape[0]} crops of {args.size} x {args.size} from "
          f"{', '.join(TRAIN_IMAGES)}; noise sigma {args.noise}"
          + (f", blur sigma {args.blur}" if args.blur > 0 else "")
          + f"; model: {args.kernel} x {args.kernel} kernel + bias; held-out: {TEST_IMAGE} "
          f"{test_clean.shape[0]} x {test_clean.shape[1]}\n")

    model = LinearFilter(noisy, args.kernel)
    test_model = LinearFilter(test_noisy, args.kernel)
    rows = [dict({"Trained with": "(noisy input)", "L-BFGS iters": "-", "fit (s)": "-"},
                 **scores(test_noisy, test_clean))]

    def caption(name, row):
        return f"{name}\n{row['PSNR (dB)']:.2f} dB, SSIM {row['SSIM']:.3f}"

    panels = [("clean\n(held-out)", test_clean), (caption("noisy", rows[0]), test_noisy)]
    thetas = {}
    for name in LOSSES:
        res, secs = fit(model, clean, name, args.maxiter)
        thetas[name] = res.x
        pred = test_model.predict(res.x)[0]
        rows.append(dict({"Trained with": LABELS[name], "L-BFGS iters": res.nit,
                          "fit (s)": f"{secs:.1f}"}, **scores(pred, test_clean)))
        train_psnr = 10.0 * np.log10(DATA_RANGE ** 2 / np.mean((model.predict(res.x) - clean) ** 2))
        print(f"  {LABELS[name]:18s} loss {res.fun:.6g} after {res.nit} iterations, {res.nfev} "
              f"evaluations, {secs:.1f} s ({res.message.split(':')[0].lower()}); training PSNR "
              f"{train_psnr:.2f} dB; kernel sum {res.x[:-1].sum():.4f}, bias {res.x[-1]:+.4f}")
        panels.append((caption(LABELS[name], rows[-1]), pred))

    ls = least_squares(model, clean)
    f_l2 = objective(model, clean, "l2", {})
    print(f"\n  l2 check: L-BFGS loss {f_l2(thetas['l2'])[0]:.8g} vs closed-form least squares "
          f"{f_l2(ls)[0]:.8g}; parameter difference "
          f"{np.linalg.norm(thetas['l2'] - ls) / np.linalg.norm(ls):.1e} (relative)\n")

    print(f"Held-out image ({TEST_IMAGE}), each metric against the clean image "
          "(best of the trained filters in bold):\n")
    print(markdown_table(rows))

    if args.out:
        # a 192 x 192 crop of the cat's face and fur keeps the PNG small
        crop = ((40, 232), (120, 312))
        if save_figure(args.out, panels, crop):
            print(f"\nSaved {args.out} (crop rows {crop[0][0]}:{crop[0][1]}, "
                  f"columns {crop[1][0]}:{crop[1][1]} of the held-out image)")
    print(f"\nTotal time {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
