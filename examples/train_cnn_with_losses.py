"""Train a small denoising CNN with each loss of Zhao et al. in PyTorch, on fastssim's gradients.

The setting of Zhao, Gallo, Frosio and Kautz, "Loss functions for image
restoration with neural networks" (IEEE TCI 2017), scaled down to a CPU and a
few minutes: one small fully convolutional network is trained from the same
initial weights on the same batches, once per loss -- l1, l2, 1 - SSIM,
1 - MS-SSIM, the per-pixel MS-SSIM loss and Mix (alpha 0.84) -- and each
trained network is scored on held-out images by PSNR, SSIM, MS-SSIM and the
per-pixel MS-SSIM.  The SSIM-family losses are :mod:`fastssim.torch`'s: their
forward computes the value and the exact gradient in one engine call, and the
backward scales that gradient.

Set-up (all seeded):

* network: residual, ``x + f(x)`` with f = conv3x3(1->16) PReLU conv3x3(16->16)
  PReLU conv3x3(16->1), reflect padding (2.7k parameters; ``--width``);
* data: random 96 x 96 grayscale crops of scikit-image's ``camera``,
  ``astronaut``, ``coffee``, ``rocket``, ``brick`` and ``moon``, batches of 8,
  fresh Gaussian noise of sigma 0.1 (in [0, 1] units, not clipped) per batch;
* optimiser: Adam, lr 1e-3, ``--iters`` steps (default 400);
* MS-SSIM on 96 px crops: ``fit_scales=True`` keeps the 4 scales that fit (an
  11-tap window needs 161 px for 5), with the weights rescaled;
* test: ``chelsea``, ``coins`` and ``clock``, whole, never cropped for
  training, with their own noise; outputs clipped to [0, 1]; scores by
  fastssim's NumPy functions (``data_range=1``, 5-scale MS-SSIM).

Run it (2 minutes of CPU time on 2 cores; 5 minutes of wall time on a busy machine)::

    python examples/train_cnn_with_losses.py [--iters 400] [--out examples/train_cnn_with_losses.png]

Needs torch (``pip install torch``), scikit-image and Pillow (for the figure).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# PyTorch's and fastssim's OpenMP thread pools take turns; threads that spin while
# waiting slow both down several times on a shared machine (set before the imports)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

try:
    import torch
    from skimage import color, data
except ImportError as exc:  # pragma: no cover
    sys.exit(f"this example needs torch and scikit-image: {exc}")

import fastssim
import fastssim.torch as ft

TRAIN_IMAGES = ("camera", "astronaut", "coffee", "rocket", "brick", "moon")
TEST_IMAGES = ("chelsea", "coins", "clock")
NOISE = 0.1
LOSSES = {
    "l1": lambda p, t: ft.l1_loss(p, t),
    "l2": lambda p, t: ft.l2_loss(p, t),
    "SSIM": lambda p, t: ft.ssim_loss(p, t, data_range=1.0),
    "MS-SSIM": lambda p, t: ft.ms_ssim_loss(p, t, data_range=1.0, fit_scales=True),
    "per-pixel MS-SSIM": lambda p, t: ft.pixelwise_ms_ssim_loss(p, t, data_range=1.0),
    "Mix (alpha 0.84)": lambda p, t: ft.mix_loss(p, t, data_range=1.0, alpha=0.84),
}


def gray(name):
    img = getattr(data, name)()
    if img.ndim == 3:
        return color.rgb2gray(img[..., :3]).astype(np.float32)
    return (img.astype(np.float32) / 255.0).astype(np.float32)


class Denoiser(torch.nn.Module):
    """x + f(x): three 3x3 convolutions, PReLU between them."""

    def __init__(self, width=16):
        super().__init__()
        kw = dict(kernel_size=3, padding=1, padding_mode="reflect")
        self.f = torch.nn.Sequential(
            torch.nn.Conv2d(1, width, **kw), torch.nn.PReLU(width),
            torch.nn.Conv2d(width, width, **kw), torch.nn.PReLU(width),
            torch.nn.Conv2d(width, 1, **kw),
        )

    def forward(self, x):
        return x + self.f(x)


def batches(images, iters, batch, size, seed):
    """The same sequence of (noisy, clean) batches for every loss."""
    rng = np.random.default_rng(seed)
    for _ in range(iters):
        crops = []
        for _ in range(batch):
            img = images[rng.integers(len(images))]
            i = rng.integers(0, img.shape[0] - size + 1)
            j = rng.integers(0, img.shape[1] - size + 1)
            crops.append(img[i:i + size, j:j + size])
        clean = np.stack(crops)[:, None]
        noisy = clean + np.float32(NOISE) * rng.standard_normal(clean.shape, dtype=np.float32)
        yield torch.from_numpy(noisy), torch.from_numpy(clean)


def scores(pred, clean):
    mse = float(np.mean((pred.astype(np.float64) - clean) ** 2))
    return {
        "PSNR (dB)": 10.0 * np.log10(1.0 / mse),
        "SSIM": float(fastssim.ssim(pred, clean, data_range=1.0)),
        "MS-SSIM": float(fastssim.ms_ssim(pred, clean, data_range=1.0)),
        "per-pixel MS-SSIM": float(fastssim.pixelwise_ms_ssim(pred, clean, data_range=1.0)),
    }


def mean_scores(preds, cleans):
    per = [scores(p, c) for p, c in zip(preds, cleans)]
    return {k: float(np.mean([s[k] for s in per])) for k in per[0]}


COLS = ["PSNR (dB)", "SSIM", "MS-SSIM", "per-pixel MS-SSIM"]


def markdown_table(rows):
    head = ["Trained with", "train (s)", "final train loss"] + COLS
    best = {c: max(r[c] for r in rows if r["name"] != "(noisy input)") for c in COLS}
    out = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        cells = [r["name"], r.get("time", "-"), r.get("loss", "-")]
        for c in COLS:
            s = f"{r[c]:.2f}" if c == "PSNR (dB)" else f"{r[c]:.4f}"
            hit = r["name"] != "(noisy input)" and abs(r[c] - best[c]) < (5e-3 if c == "PSNR (dB)" else 5e-5)
            cells.append(f"**{s}**" if hit else s)
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def save_figure(path, panels, crop):
    """A grid of labelled grayscale crops as an 8-bit PNG (needs Pillow)."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        print(f"Pillow is not installed: skipping the figure {path}")
        return False
    (i0, i1), (j0, j1) = crop
    h, w = i1 - i0, j1 - j0
    label_h, gap, ncol = 34, 4, 4
    nrow = -(-len(panels) // ncol)
    sheet = Image.new("L", (ncol * w + (ncol - 1) * gap, nrow * (h + label_h) + (nrow - 1) * gap), 255)
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for n, (label, img) in enumerate(panels):
        r, c = divmod(n, ncol)
        x0, y0 = c * (w + gap), r * (h + label_h + gap)
        tile = np.clip(img[i0:i1, j0:j1], 0.0, 1.0)
        sheet.paste(Image.fromarray(np.round(tile * 255).astype(np.uint8)), (x0, y0 + label_h))
        draw.multiline_text((x0 + 2, y0 + 2), label, fill=0, font=font, spacing=2)
    sheet.save(path, optimize=True)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "train_cnn_with_losses.png"))
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    train = [gray(n) for n in TRAIN_IMAGES]
    rng = np.random.default_rng(args.seed + 1)
    cleans = [gray(n) for n in TEST_IMAGES]
    noisys = [c + np.float32(NOISE) * rng.standard_normal(c.shape, dtype=np.float32) for c in cleans]

    torch.manual_seed(args.seed)
    init = Denoiser(args.width).state_dict()
    rows = [dict(name="(noisy input)", **mean_scores([np.clip(n, 0, 1) for n in noisys], cleans))]
    outputs = {}
    for name, loss_fn in LOSSES.items():
        net = Denoiser(args.width)
        net.load_state_dict(init)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        tail = []
        for it, (noisy, clean) in enumerate(batches(train, args.iters, args.batch, args.size,
                                                    args.seed)):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(noisy), clean)
            loss.backward()
            opt.step()
            if it >= args.iters - 20:
                tail.append(loss.item())
        t_train = time.perf_counter() - t0
        with torch.no_grad():
            preds = [np.clip(net(torch.from_numpy(n)[None, None])[0, 0].numpy(), 0, 1)
                     for n in noisys]
        outputs[name] = preds
        row = dict(name=name, time=f"{t_train:.1f}", loss=f"{np.mean(tail):.4f}",
                   **mean_scores(preds, cleans))
        rows.append(row)
        print(f"{name:>18}: {t_train:5.1f} s, PSNR {row['PSNR (dB)']:.2f} dB, SSIM {row['SSIM']:.4f}, "
              f"MS-SSIM {row['MS-SSIM']:.4f}, per-pixel {row['per-pixel MS-SSIM']:.4f}", flush=True)

    print()
    print(f"Held-out: {', '.join(TEST_IMAGES)} (mean of the scores); noise sigma {NOISE}; "
          f"{args.iters} Adam steps of {args.batch} x {args.size}^2 crops per loss; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    print()
    print(markdown_table(rows))
    if args.out:
        k = 0  # chelsea
        s0 = scores(np.clip(noisys[k], 0, 1), cleans[k])
        panels = [("clean", cleans[k]),
                  (f"noisy\n{s0['PSNR (dB)']:.2f} dB, SSIM {s0['SSIM']:.3f}", noisys[k])]
        for name in LOSSES:
            s = scores(outputs[name][k], cleans[k])
            panels.append((f"{name}\n{s['PSNR (dB)']:.2f} dB, SSIM {s['SSIM']:.3f}", outputs[name][k]))
        if save_figure(args.out, panels, ((60, 220), (150, 330))):
            print(f"\nfigure: {args.out} (crop of chelsea; scores of that image alone)")
    print(f"total {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
