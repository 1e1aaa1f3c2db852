"""Heatmap PNGs of SSIM maps, rendered with Pillow alone (no matplotlib).

The colormap is our own perceptual one, built like viridis: in CIELAB its
lightness L* rises linearly from 18 (dark blue-violet) to 90 (yellow), its hue
turns from 315 degrees through teal (190) to yellow (100), and its chroma is
reduced only where sRGB cannot show it.  Equal steps in the map are equal
steps in lightness, so the picture reads the same in grayscale and to
colour-blind readers, and the colour of a pixel gives its value back
(:func:`colormap_index` inverts it).

Layout of a heatmap (pixels): a title strip ``TITLE_H`` high with the score,
the map at ``(PAD, TITLE_H)`` magnified by an integer factor (nearest neighbour,
so every map pixel is a ``scale x scale`` block of one colour), and a colour
bar ``BAR_W`` wide at ``BAR_GAP`` px right of the map, the range's top value at
its top, with three labelled ticks.  The PNG's text chunks record
``fastssim:range`` ("lo,hi"), ``fastssim:scale`` and ``fastssim:score``.
NaN map pixels are drawn in ``NAN_RGB`` (magenta), outside the colormap.
"""

from __future__ import annotations

import math

import numpy as np

PAD = 10
TITLE_H = 28
BAR_W = 18
BAR_GAP = 14
NAN_RGB = (255, 0, 255)
MIN_SIDE = 160  # smaller maps are magnified until their longer side reaches this


def _lab_to_linear(L, a, b):
    """CIELAB (D65) -> linear-light sRGB, unclipped (outside [0, 1]: out of gamut)."""
    fy = (L + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = fy - b / 200.0
    d = 6.0 / 29.0

    def finv(f):
        return np.where(f > d, f ** 3, 3 * d * d * (f - 4.0 / 29.0))

    X, Y, Z = 0.95047 * finv(fx), 1.0 * finv(fy), 1.08883 * finv(fz)
    lin = np.stack([3.2404542 * X - 1.5371385 * Y - 0.4985314 * Z,
                    -0.9692660 * X + 1.8760108 * Y + 0.0415560 * Z,
                    0.0556434 * X - 0.2040259 * Y + 1.0572252 * Z], axis=-1)
    return lin


def _encode(lin):
    c = np.clip(lin, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def srgb_to_lab(rgb):
    """sRGB in [0, 1] (..., 3) -> CIELAB (D65) (..., 3); for tests and checks."""
    rgb = np.asarray(rgb, dtype=np.float64)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    M = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ M.T / np.array([0.95047, 1.0, 1.08883])
    d = 6.0 / 29.0
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4.0 / 29.0)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def _build_colormap(n=256):
    t = np.linspace(0.0, 1.0, n)
    L = 18.0 + 72.0 * t
    h = np.deg2rad(315.0 - 215.0 * t)
    C = 45.0 - 80.0 * t + 120.0 * t * t
    # largest chroma <= C that sRGB can show, by bisection per entry
    lo, hi = np.zeros(n), C.copy()
    rgb = _lab_to_linear(L, hi * np.cos(h), hi * np.sin(h))
    ok = np.all((rgb >= 0) & (rgb <= 1), axis=-1)
    lo[ok] = hi[ok]
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        rgb = _lab_to_linear(L, mid * np.cos(h), mid * np.sin(h))
        inside = np.all((rgb >= 0) & (rgb <= 1), axis=-1)
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    rgb = _encode(_lab_to_linear(L, lo * np.cos(h), lo * np.sin(h)))
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


_CMAP = None


def colormap():
    """The 256-entry colormap, uint8 RGB, low values first."""
    global _CMAP
    if _CMAP is None:
        _CMAP = _build_colormap()
    return _CMAP


def colormap_index(rgb):
    """Index (0-255) of the colormap entry nearest each RGB colour (..., 3)."""
    table = colormap().astype(np.int32)
    rgb = np.asarray(rgb, dtype=np.int32)
    d = ((rgb[..., None, :] - table) ** 2).sum(-1)
    return np.argmin(d, axis=-1)


def default_range(m):
    """[0, 1] unless the map goes below 0; then [floor(min, 0.1), 1]."""
    finite = m[np.isfinite(m)]
    lo = 0.0
    if finite.size and finite.min() < 0:
        lo = math.floor(float(finite.min()) * 10.0) / 10.0
    hi = 1.0
    if finite.size and finite.max() > 1:
        hi = math.ceil(float(finite.max()) * 10.0) / 10.0
    return lo, hi


def to_indices(m, lo, hi):
    """Colormap indices of map values (NaN -> -1)."""
    m = np.asarray(m, dtype=np.float64)
    idx = np.clip(np.round((m - lo) / (hi - lo) * 255.0), 0, 255)
    return np.where(np.isnan(m), -1, idx).astype(np.int64)


def _font(size):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font of fixed size
        return ImageFont.load_default()


def _text_width(draw, text, font):
    try:
        x0, _, x1, _ = draw.textbbox((0, 0), text, font=font)
        return x1 - x0
    except AttributeError:  # pragma: no cover - very old Pillow
        return 6 * len(text)


def render(path, m, *, title, vrange=None, background=None, alpha=0.6, score=None):
    """Write a heatmap PNG of the 2-D map ``m``.

    Parameters
    ----------
    path : str
        Output file (.png).
    m : ndarray, shape (H, W)
        The map.
    title : str
        Title line (the score goes in it).
    vrange : (float, float), optional
        Values at the bottom and top of the colour bar; default
        :func:`default_range`.
    background : ndarray, shape (H, W), optional
        Grayscale reference in [0, 1] to blend under the colours
        (``--heatmap-overlay``): ``alpha * colour + (1 - alpha) * gray``.
    alpha : float
        Opacity of the colours over ``background``.
    score : float, optional
        Recorded in the PNG's ``fastssim:score`` text chunk.

    Returns
    -------
    dict
        The layout: ``scale``, ``map_box`` (x0, y0, x1, y1), ``bar_box``, ``range``.
    """
    from PIL import Image, ImageDraw, PngImagePlugin

    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"m: expected a 2-D map, got shape {m.shape}")
    H, W = m.shape
    lo, hi = default_range(m) if vrange is None else (float(vrange[0]), float(vrange[1]))
    if not hi > lo:
        raise ValueError(f"vrange: expected lo < hi, got {lo}, {hi}")
    scale = max(1, math.ceil(MIN_SIDE / max(H, W))) if max(H, W) < MIN_SIDE else 1
    idx = to_indices(m, lo, hi)
    rgb = colormap()[np.clip(idx, 0, 255)].astype(np.float64)
    if background is not None:
        g = np.clip(np.asarray(background, dtype=np.float64), 0.0, 1.0)[..., None] * 255.0
        rgb = alpha * rgb + (1.0 - alpha) * g
    rgb = np.where((idx < 0)[..., None], np.array(NAN_RGB, dtype=np.float64), rgb)
    img = np.round(rgb).astype(np.uint8)
    if scale > 1:
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)

    font = _font(13)
    small = _font(11)
    mh, mw = H * scale, W * scale
    bar_h = max(mh, 96)
    ticks = [hi, 0.5 * (lo + hi), lo]
    labels = [f"{v:.3g}" for v in ticks]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lab_w = max(_text_width(probe, s, small) for s in labels)
    bx0 = PAD + mw + BAR_GAP
    width = bx0 + BAR_W + 6 + lab_w + PAD
    title_w = _text_width(probe, title, font)
    width = max(width, title_w + 2 * PAD)
    height = TITLE_H + max(mh, bar_h) + PAD
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(Image.fromarray(img, "RGB"), (PAD, TITLE_H))
    # colour bar: top row is hi, bottom row lo
    rows = np.round(np.linspace(255, 0, bar_h)).astype(np.int64)
    bar = np.repeat(colormap()[rows][:, None, :], BAR_W, axis=1)
    canvas.paste(Image.fromarray(bar, "RGB"), (bx0, TITLE_H))
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, 6), title, fill=(0, 0, 0), font=font)
    for v, s in zip(ticks, labels):
        y = TITLE_H + int(round((hi - v) / (hi - lo) * (bar_h - 1)))
        draw.line([(bx0 + BAR_W, y), (bx0 + BAR_W + 3, y)], fill=(0, 0, 0))
        draw.text((bx0 + BAR_W + 6, min(max(y - 6, TITLE_H - 4), height - 14)), s,
                  fill=(0, 0, 0), font=small)
    info = PngImagePlugin.PngInfo()
    info.add_text("fastssim:range", f"{lo!r},{hi!r}")
    info.add_text("fastssim:scale", str(scale))
    if score is not None:
        info.add_text("fastssim:score", repr(float(score)))
    canvas.save(path, pnginfo=info, optimize=True)
    return {"scale": scale, "map_box": (PAD, TITLE_H, PAD + mw, TITLE_H + mh),
            "bar_box": (bx0, TITLE_H, bx0 + BAR_W, TITLE_H + bar_h), "range": (lo, hi)}
