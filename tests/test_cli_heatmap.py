"""Heatmap PNGs of ``fastssim compare --heatmap``, read back.

References: the map saved by ``--map`` in the same run (itself checked against
the library in test_cli_folders.py); scikit-image's ``rgb2lab`` for the
colormap's lightness; the reference image for ``--heatmap-overlay``.  The
colour bar is found by searching the picture, not from the renderer's layout.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastssim
from helpers import noisy, run_cli

Image = pytest.importorskip("PIL.Image")
from fastssim import _heatmap  # noqa: E402  (needs nothing but NumPy to import)


def _colormap_index(rgb, nearest=True):
    """(index of the nearest colormap entry, squared RGB distance to it); with
    ``nearest=False`` only exact matches count (distance 1 for the others)."""
    table = _heatmap.colormap().astype(np.int64)
    rgb = np.asarray(rgb, np.int64)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    keys = (table[:, 0] << 16) | (table[:, 1] << 8) | table[:, 2]
    # exact matches by lookup (the first of duplicated entries), the rest by distance
    order = np.argsort(keys, kind="stable")
    pos = np.clip(np.searchsorted(keys[order], packed), 0, 255)
    idx = order[pos]
    exact = keys[idx] == packed
    d = np.where(exact, 0, 1).astype(np.int64)
    if nearest and not exact.all():
        rest = rgb[~exact]
        dd = ((rest[:, None, :] - table) ** 2).sum(-1)
        idx[~exact], d[~exact] = dd.argmin(-1), dd.min(-1)
    return idx, d


def test_colormap_is_perceptually_ordered():
    skimage_color = pytest.importorskip("skimage.color")
    cm = _heatmap.colormap()
    assert cm.shape == (256, 3) and cm.dtype == np.uint8
    lab = skimage_color.rgb2lab(cm[None] / 255.0)[0]
    # lightness rises with the value (8-bit rounding moves L* by < 0.2)
    assert np.all(np.diff(lab[:, 0]) > -0.2)
    assert lab[-1, 0] - lab[0, 0] > 65
    # dark blue-violet (b* < 0) to yellow (b* large, a* ~ 0), like viridis
    assert lab[0, 2] < -20 and lab[-1, 2] > 60 and abs(lab[-1, 1]) < 20
    # distinct colours: at most a few 8-bit duplicates where the gamut pinches
    assert len(np.unique(cm, axis=0)) > 240


def _setup(tmp_path, shape=(40, 52)):
    rng = np.random.default_rng(12)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = a.copy()
    # a smooth gradient of damage: noise growing from left to right
    ramp = np.linspace(0, 1, shape[1]) ** 2
    b = np.clip(a + (rng.standard_normal(shape) * 120 * ramp), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "ref.png")
    Image.fromarray(b).save(tmp_path / "dist.png")
    return a, b


def _find_bar(img, x_from):
    """(x, top, bottom) of a column right of ``x_from`` whose pixels are exact
    colormap entries running from the top value to the bottom one."""
    H = img.shape[0]
    for x in range(x_from, img.shape[1]):
        idx, d = _colormap_index(img[:, x], nearest=False)
        exact = np.flatnonzero(d == 0)
        if exact.size < 90:
            continue
        top, bottom = exact[0], exact[-1]
        run = idx[top:bottom + 1]
        if np.all(d[top:bottom + 1] == 0) and run[0] >= 254 and run[-1] <= 1 \
                and np.all(np.diff(run) <= 0):
            return x, top, bottom
    raise AssertionError(f"no colour bar found right of x={x_from} (height {H})")


def test_heatmap_png_matches_the_map(tmp_path, capsys):
    a, b = _setup(tmp_path)
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "ref.png", tmp_path / "dist.png",
                         "--heatmap", tmp_path / "hm", "--map", tmp_path / "m.npy", "-q")
    assert rc == 0
    score = float(out)
    assert score == pytest.approx(fastssim.ssim(a, b), abs=1e-12)  # printed to 12 places
    m = np.load(tmp_path / "m.npy")
    im = Image.open(tmp_path / "hm" / "dist.png")
    assert im.mode == "RGB"
    lo, hi = (float(v) for v in im.text["fastssim:range"].split(","))
    scale = int(im.text["fastssim:scale"])
    assert float(im.text["fastssim:score"]) == fastssim.ssim(a, b)
    assert (lo, hi) == ((0.0, 1.0) if m.min() >= 0 else (np.floor(m.min() * 10) / 10, 1.0))
    # small maps are magnified (by an integer factor) to at least MIN_SIDE px
    assert scale == int(np.ceil(_heatmap.MIN_SIDE / max(m.shape))) > 1
    img = np.asarray(im)
    H, W = m.shape
    assert img.shape[0] >= H * scale and img.shape[1] >= W * scale
    # locate the map: the first exact-colormap pixel block in reading order
    idx, d = _colormap_index(img, nearest=False)
    ys, xs = np.nonzero(d == 0)
    y0, x0 = ys.min(), xs[ys == ys.min()].min()
    block = img[y0:y0 + H * scale, x0:x0 + W * scale]
    centres = block[scale // 2::scale, scale // 2::scale]
    assert centres.shape[:2] == m.shape
    got, dist = _colormap_index(centres)
    assert np.all(dist == 0)  # every map pixel is drawn in a colormap colour
    want = np.clip(np.round((m - lo) / (hi - lo) * 255), 0, 255)
    # equal up to the colormap's few duplicated 8-bit neighbours
    assert np.abs(got - want).max() <= 1
    # the colour runs with the map: monotone (up to those duplicates)
    order = np.argsort(m, axis=None, kind="stable")
    assert np.all(np.diff(got.ravel()[order]) >= -1)
    # the damage grows to the right, and so the colour index falls
    assert got[:, :5].mean() > got[:, -5:].mean() + 50
    # a colour bar right of the map, top value at the top
    bx, top, bottom = _find_bar(img, x0 + W * scale)
    assert top == y0 and bottom - top + 1 >= H * scale


def test_overlay_blends_the_reference(tmp_path, capsys):
    a, _ = _setup(tmp_path)
    rc, _, _ = run_cli(capsys, "compare", tmp_path / "ref.png", tmp_path / "dist.png",
                       "--heatmap", tmp_path / "plain", "-q")
    rc2, _, _ = run_cli(capsys, "compare", tmp_path / "ref.png", tmp_path / "dist.png",
                        "--heatmap", tmp_path / "over", "--heatmap-overlay", "0.5", "-q")
    assert rc == rc2 == 0
    plain = np.asarray(Image.open(tmp_path / "plain" / "dist.png")).astype(np.float64)
    over = np.asarray(Image.open(tmp_path / "over" / "dist.png")).astype(np.float64)
    assert plain.shape == over.shape
    scale = int(Image.open(tmp_path / "plain" / "dist.png").text["fastssim:scale"])
    # the map sits at the same place in both; the plain one holds colormap colours
    _, d = _colormap_index(plain.astype(np.uint8), nearest=False)
    ys, xs = np.nonzero(d == 0)
    y0, x0 = ys.min(), xs[ys == ys.min()].min()
    H, W = a.shape
    sl = (slice(y0 + scale // 2, y0 + H * scale, scale), slice(x0 + scale // 2, x0 + W * scale, scale))
    # over = 0.5 colour + 0.5 gray  ->  2 over - plain = gray * 255 in every channel
    gray = 2 * over[sl] - plain[sl]
    ref = (a - a.min()) / (a.max() - a.min()) * 255.0
    assert np.abs(gray - ref[..., None]).max() <= 2.0  # two roundings to 8 bits


def test_heatmap_of_colour_volume_and_folder(tmp_path, capsys):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(13)
    (tmp_path / "r").mkdir()
    (tmp_path / "d").mkdir()
    rgb = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "r" / "c.png")
    Image.fromarray(noisy(rng, rgb, 50)).save(tmp_path / "d" / "c.png")
    vol = rng.random((12, 20, 22)).astype(np.float32)
    tifffile.imwrite(tmp_path / "r" / "v.tif", vol)
    tifffile.imwrite(tmp_path / "d" / "v.tif", (0.8 * vol).astype(np.float32))
    rc, _, _ = run_cli(capsys, "compare", tmp_path / "r", tmp_path / "d", "--data-range", "255",
                       "--heatmap", tmp_path / "hm", "--map", tmp_path / "m", "-q")
    assert rc == 0
    # the colour map is shown as its channel mean, the volume as its middle slice
    for key, view in (("c", lambda m: m.mean(-1)), ("v", lambda m: m[6])):
        m = view(np.load(tmp_path / "m" / f"{key}.npy"))
        im = Image.open(tmp_path / "hm" / f"{key}.png")
        scale = int(im.text["fastssim:scale"])
        img = np.asarray(im)
        _, d = _colormap_index(img, nearest=False)
        ys, xs = np.nonzero(d == 0)
        y0, x0 = ys.min(), xs[ys == ys.min()].min()
        H, W = m.shape
        got, _ = _colormap_index(img[y0 + scale // 2:y0 + H * scale:scale,
                                     x0 + scale // 2:x0 + W * scale:scale])
        lo, hi = (float(v) for v in im.text["fastssim:range"].split(","))
        want = np.clip(np.round((m - lo) / (hi - lo) * 255), 0, 255)
        assert np.abs(got - want).max() <= 1


def test_heatmap_range_option_and_nan(tmp_path):
    m = np.linspace(-0.5, 1.0, 60).reshape(6, 10)
    m[2, 3] = np.nan
    lay = _heatmap.render(str(tmp_path / "h.png"), m, title="t", vrange=(-0.5, 1.0))
    img = np.asarray(Image.open(tmp_path / "h.png"))
    s = lay["scale"]
    x0, y0 = lay["map_box"][:2]
    px = img[y0 + 2 * s + s // 2, x0 + 3 * s + s // 2]
    assert tuple(px) == _heatmap.NAN_RGB
    got, _ = _colormap_index(img[y0 + s // 2:y0 + 6 * s:s, x0 + s // 2:x0 + 10 * s:s])
    want = np.round((m + 0.5) / 1.5 * 255)
    ok = np.isfinite(m)
    assert np.abs(got[ok] - want[ok]).max() <= 1 and got.flat[0] == 0 and got.flat[-1] == 255


def test_ms_ssim_has_no_map(tmp_path, capsys):
    _setup(tmp_path)
    rc, out, err = run_cli(capsys, "compare", tmp_path / "ref.png", tmp_path / "dist.png",
                           "--metric", "ms-ssim", "--heatmap", tmp_path / "hm")
    assert rc == 2 and out == ""
    assert err.startswith("fastssim compare: error: --metric ms-ssim has no per-pixel map")
