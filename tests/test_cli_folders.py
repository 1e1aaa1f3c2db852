"""``fastssim compare`` on folders, file lists and every input format, end to end.

Every test writes real files (16-bit PNG, float and multi-page TIFF, RGBA PNG,
JPEG, BMP, WebP, .npy/.npz, a corrupt file, a file without a partner, pairs of
different sizes), runs the command line, parses its CSV/JSON output back and
compares each score with the library called directly on the arrays that Pillow /
tifffile / NumPy read from the same files (the reference).  Scores are compared
exactly where the CLI makes the same library call (the engine's results do not
depend on the thread count), else to 1e-12 relative.
"""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pytest

import fastssim
from helpers import noisy, run_cli, write_png16_rgb, write_problem_pairs

Image = pytest.importorskip("PIL.Image")
tifffile = pytest.importorskip("tifffile")


def _csv(text):
    return list(csv.DictReader(io.StringIO(text)))


def _pil(path):
    return np.asarray(Image.open(path))


@pytest.fixture
def folders(tmp_path):
    """ref/ and dist/ with three good RGB pairs (one in a subfolder), an RGBA
    pair, a 16-bit pair, a pair of different sizes, a corrupt distorted file and
    a reference without a partner."""
    rng = np.random.default_rng(15)
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    (ref / "sub").mkdir(parents=True)
    (dist / "sub").mkdir(parents=True)
    for name, amount in (("a.png", 10), ("b.png", 40), ("sub/c.png", 80)):
        a = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(a).save(ref / name)
        Image.fromarray(noisy(rng, a, amount)).save(dist / name)
    a = rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)
    Image.fromarray(a, "RGBA").save(ref / "rgba.png")
    b = noisy(rng, a, 30)
    b[..., 3] = rng.integers(0, 256, (40, 40))  # a different alpha must not matter
    Image.fromarray(b, "RGBA").save(dist / "rgba.png")
    write_problem_pairs(rng, ref, dist)
    (ref / "notes.txt").write_text("not an image: skipped without --glob")
    return tmp_path


GOOD = ["a.png", "b.png", "sub/c.png", "rgba.png", "g16.png"]
BAD = {"size.png": "differ in shape", "corrupt.png": "cannot read image",
       "lonely.png": "no partner in DIST"}


def test_folders_csv_scores_match_the_library(folders, capsys):
    os.chdir(folders)
    rc, out, err = run_cli(capsys, "compare", "ref", "dist", "--format", "csv")
    assert rc == 1  # some pairs could not be scored
    rows = _csv(out)
    by_ref = {os.path.relpath(r["ref"], "ref").replace(os.sep, "/"): r for r in rows}
    assert sorted(by_ref) == sorted(GOOD + list(BAD))  # notes.txt is not an image: not listed
    for name in GOOD:
        r = by_ref[name]
        assert r["status"] == "ok" and r["error"] == ""
        a, b = _pil(f"ref/{name}"), _pil(f"dist/{name}")
        if name == "rgba.png":
            a, b = a[..., :3], b[..., :3]
            assert r["note"] == "alpha channel ignored"
        cax = -1 if a.ndim == 3 else None
        want = fastssim.ssim(a, b, channel_axis=cax)  # integer dtype: its range by default
        assert float(r["score"]) == want
        assert r["shape"] == "x".join(map(str, a.shape)) and r["dtype"] == str(a.dtype)
    assert float(by_ref["g16.png"]["data_range"]) == 65535.0
    assert by_ref["g16.png"]["dtype"] == "uint16"
    for name, reason in BAD.items():
        r = by_ref[name]
        assert r["status"] == "error" and r["score"] == "" and reason in r["error"]
    # the summary goes to stderr for CSV
    assert "5 of 8 pairs scored, 3 failed" in err


def test_json_summary_and_worst(folders, capsys):
    os.chdir(folders)
    rc, out, _ = run_cli(capsys, "compare", "ref", "dist", "--format", "json", "--worst", "2")
    assert rc == 1
    doc = json.loads(out)
    assert doc["metric"] == "SSIM" and doc["options"]["metric"] == "ssim"
    ok = [p for p in doc["pairs"] if p["status"] == "ok"]
    scores = np.array([p["score"] for p in ok])
    s = doc["summary"]
    assert (s["pairs"], s["scored"], s["failed"]) == (8, 5, 3)
    assert s["mean"] == pytest.approx(scores.mean(), rel=1e-15)
    assert s["median"] == pytest.approx(np.median(scores), rel=1e-15)
    assert s["min"] == scores.min() and s["max"] == scores.max()
    worst = sorted(ok, key=lambda p: p["score"])[:2]
    assert [w["dist"] for w in s["worst"]] == [w["dist"] for w in worst]
    # the most distorted pair is the worst one
    assert s["worst"][0]["dist"].replace(os.sep, "/").endswith("sub/c.png")


def test_table_and_jsonl_and_output_file(folders, capsys):
    os.chdir(folders)
    rc, out, err = run_cli(capsys, "compare", "ref", "dist", "--glob", "[ab].png")
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["REF", "DIST", "STATUS", "SSIM"]
    want = {n: fastssim.ssim(_pil(f"ref/{n}"), _pil(f"dist/{n}"), channel_axis=-1)
            for n in ("a.png", "b.png")}
    for n, v in want.items():
        row = next(line for line in lines if line.startswith(os.path.join("ref", n)))
        assert f"{v:.6f}" in row.split()
    assert "2 of 2 pairs scored" in out
    assert f"mean {np.mean(list(want.values())):.6f}" in out

    rc, out, _ = run_cli(capsys, "compare", "ref", "dist", "--glob", "[ab].png", "--format", "jsonl")
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["score"] for r in recs] == [want["a.png"], want["b.png"]]

    rc, out, err = run_cli(capsys, "compare", "ref", "dist", "--glob", "[ab].png", "--output",
                           "res.json")
    assert rc == 0 and out == ""
    doc = json.loads((folders / "res.json").read_text())  # format from the extension
    assert [p["score"] for p in doc["pairs"]] == [want["a.png"], want["b.png"]]
    assert "2 of 2 pairs scored" in err


def test_glob_on_relative_path_and_quiet(folders, capsys):
    os.chdir(folders)
    rc, out, err = run_cli(capsys, "compare", "ref", "dist", "--glob", "sub/*.png", "-q",
                           "--format", "csv")
    assert rc == 0 and err == ""
    rows = _csv(out)
    assert len(rows) == 1 and rows[0]["ref"].replace(os.sep, "/").endswith("sub/c.png")


def test_workers_do_not_change_the_results(folders, capsys):
    os.chdir(folders)
    outs = [run_cli(capsys, "compare", "ref", "dist", "--format", "csv", "--workers", n)[1]
            for n in ("1", "3")]
    assert outs[0] == outs[1]


def test_reference_file_against_a_folder(tmp_path, capsys):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "ref.png")
    (tmp_path / "d").mkdir()
    bs = {}
    for k in range(3):
        bs[f"q{k}.png"] = noisy(rng, a, 20 * (k + 1))
        Image.fromarray(bs[f"q{k}.png"]).save(tmp_path / "d" / f"q{k}.png")
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "ref.png", tmp_path / "d", "--format", "csv")
    assert rc == 0
    rows = _csv(out)
    assert [os.path.basename(r["dist"]) for r in rows] == sorted(bs)
    for r in rows:
        assert float(r["score"]) == fastssim.ssim(a, bs[os.path.basename(r["dist"])])


def test_match_by_stem_pairs_png_with_webp_and_bmp(tmp_path, capsys):
    if not __import__("PIL.features").features.check("webp"):
        pytest.skip("Pillow built without WebP")
    rng = np.random.default_rng(2)
    (tmp_path / "r").mkdir()
    (tmp_path / "d").mkdir()
    a = rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)
    b = noisy(rng, a, 25)
    Image.fromarray(a).save(tmp_path / "r" / "x.png")
    Image.fromarray(b).save(tmp_path / "d" / "x.webp", lossless=True)
    Image.fromarray(a).save(tmp_path / "r" / "y.png")
    Image.fromarray(b).save(tmp_path / "d" / "y.bmp")
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "r", tmp_path / "d", "--format", "csv")
    assert rc == 1  # by full path nothing matches: 4 rows without partners
    assert len(_csv(out)) == 4
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "r", tmp_path / "d", "--match", "stem",
                         "--format", "csv")
    assert rc == 0
    rows = _csv(out)
    assert len(rows) == 2
    want = fastssim.ssim(a, b, channel_axis=-1)  # lossless WebP and BMP decode to b exactly
    assert [float(r["score"]) for r in rows] == [want, want]


def test_match_by_stem_reports_ambiguous_names(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "d").mkdir()
    a = np.zeros((16, 16), np.uint8)
    for p in ("r/x.png", "d/x.png", "d/x.bmp"):
        Image.fromarray(a).save(tmp_path / p)
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "r", tmp_path / "d", "--match", "stem",
                         "--format", "csv")
    assert rc == 1
    (row,) = _csv(out)
    assert "ambiguous match" in row["error"] and "x.bmp" in row["error"]


def test_pairs_csv(tmp_path, capsys):
    rng = np.random.default_rng(3)
    a = rng.random((30, 30)).astype(np.float32)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", b)
    (tmp_path / "list.csv").write_text(
        "ref,dist\n# a comment\na.npy,b.npz\n\na.npy,missing.npy\n")
    rc, out, _ = run_cli(capsys, "compare", "--pairs", tmp_path / "list.csv", "--data-range", "1",
                         "--format", "csv")
    assert rc == 1
    ok, missing = _csv(out)
    assert float(ok["score"]) == fastssim.ssim(a, b, data_range=1.0)
    assert ok["dtype"] == "float32"
    assert missing["status"] == "error" and "no such file" in missing["error"]


def test_pairs_csv_malformed_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "list.csv").write_text("a.npy,b.npy\na.npy,b.npy,c.npy\n")
    rc, out, err = run_cli(capsys, "compare", "--pairs", tmp_path / "list.csv")
    assert rc == 2 and out == ""
    assert err.splitlines() == [
        f"fastssim compare: error: --pairs {tmp_path / 'list.csv'}: line 2: expected 2 columns "
        "(ref,dist), got 3"]


def test_float_tiff_needs_data_range_and_multipage_volume(tmp_path, capsys):
    rng = np.random.default_rng(4)
    (tmp_path / "r").mkdir()
    (tmp_path / "d").mkdir()
    img = rng.random((40, 36)).astype(np.float32)
    vol = rng.random((13, 24, 20)).astype(np.float32)
    img2 = np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1).astype(np.float32)
    vol2 = np.clip(vol + 0.05 * rng.standard_normal(vol.shape), 0, 1).astype(np.float32)
    tifffile.imwrite(tmp_path / "r" / "img.tif", img)
    tifffile.imwrite(tmp_path / "d" / "img.tif", img2)
    tifffile.imwrite(tmp_path / "r" / "vol.tif", vol)  # 13 pages
    tifffile.imwrite(tmp_path / "d" / "vol.tif", vol2)
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "r", tmp_path / "d", "--format", "csv")
    assert rc == 1
    assert all("need --data-range" in r["error"] for r in _csv(out))
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "r", tmp_path / "d", "--format", "csv",
                         "--data-range", "1")
    assert rc == 0
    r_img, r_vol = _csv(out)
    assert float(r_img["score"]) == fastssim.ssim(img, img2, data_range=1.0)
    assert r_vol["shape"] == "13x24x20"
    assert float(r_vol["score"]) == fastssim.ssim(vol, vol2, data_range=1.0, spatial_dims=3)


def test_tiff_8_and_16_bit_and_jpeg(tmp_path, capsys):
    rng = np.random.default_rng(5)
    a16 = rng.integers(0, 65536, (30, 34), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a16.tif", a16)
    tifffile.imwrite(tmp_path / "b16.tif", noisy(rng, a16, 5000, 0, 65535))
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "a16.tif", tmp_path / "b16.tif",
                         "--format", "csv")
    (r,) = _csv(out)
    assert rc == 0 and r["dtype"] == "uint16" and float(r["data_range"]) == 65535
    assert float(r["score"]) == fastssim.ssim(a16, tifffile.imread(tmp_path / "b16.tif"))
    a = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.tif")
    Image.fromarray(a).save(tmp_path / "a.jpg", quality=50)
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "a.tif", tmp_path / "a.jpg", "--format", "csv")
    (r,) = _csv(out)
    want = fastssim.ssim(a, _pil(tmp_path / "a.jpg"), channel_axis=-1)
    assert rc == 0 and float(r["score"]) == want and want < 0.99


def test_16_bit_colour_png_is_not_silently_truncated(tmp_path, capsys):
    rng = np.random.default_rng(6)
    a = rng.integers(0, 65536, (20, 24, 3), dtype=np.uint16)
    b = noisy(rng, a, 4000, 0, 65535)
    b[..., 0] = noisy(rng, a[..., 0], 20000, 0, 65535)  # red much worse: a swap would show
    write_png16_rgb(tmp_path / "a.png", a)
    write_png16_rgb(tmp_path / "b.png", b)
    rc, out, err = run_cli(capsys, "compare", tmp_path / "a.png", tmp_path / "b.png", "-q")
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is None:
        assert rc == 2
        assert "16-bit colour PNG" in err and "OpenCV" in err and len(err.splitlines()) == 1
    else:  # read at full depth, channels in RGB order (per channel: the order matters)
        want = fastssim.ssim(a, b, channel_axis=-1)
        assert rc == 0 and float(out) == pytest.approx(want, abs=1e-12)
        rc, out, _ = run_cli(capsys, "compare", tmp_path / "a.png", tmp_path / "b.png",
                             "--channels", "each", "--format", "csv")
        (r,) = _csv(out)
        assert r["dtype"] == "uint16"
        per = [fastssim.ssim(a[..., c], b[..., c]) for c in range(3)]
        np.testing.assert_allclose([float(r[f"channel_{c}"]) for c in range(3)], per, rtol=1e-12)


def test_channels_each_and_gray(tmp_path, capsys):
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
    b = noisy(rng, a, 40)
    b[..., 2] = noisy(rng, a[..., 2], 120)  # the blue channel much worse
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "a.png", tmp_path / "b.png", "--channels",
                         "each", "--format", "csv", "--grad", tmp_path / "g.npy")
    (r,) = _csv(out)
    per = [fastssim.ssim(a[..., c], b[..., c]) for c in range(3)]
    got = [float(r[f"channel_{c}"]) for c in range(3)]
    np.testing.assert_allclose(got, per, rtol=1e-12)
    assert got[2] < got[0] - 0.1
    ref = fastssim.ssim(a, b, channel_axis=-1, gradient="y")
    assert float(r["score"]) == pytest.approx(ref.value, rel=1e-12)
    # the saved gradient is that of the reported score (the channel mean):
    # the library's channel_axis gradient is an independent path to it
    g = np.load(tmp_path / "g.npy")
    np.testing.assert_allclose(g, ref.grad_y, rtol=1e-9, atol=1e-15)

    rc, out, _ = run_cli(capsys, "compare", tmp_path / "a.png", tmp_path / "b.png", "--channels",
                         "gray", "--format", "csv")
    (r,) = _csv(out)
    luma = np.array([0.299, 0.587, 0.114])  # BT.601, as MATLAB's rgb2gray
    want = fastssim.ssim(a @ luma, b @ luma, data_range=255.0)
    assert float(r["score"]) == pytest.approx(want, rel=1e-12) and r["shape"] == "40x44"


def test_ms_ssim_conventions_are_passed_through(tmp_path, capsys):
    rng = np.random.default_rng(8)
    a = rng.integers(0, 256, (171, 165), dtype=np.uint8)  # odd sides
    b = noisy(rng, a, 90)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    common = ("compare", tmp_path / "a.npy", tmp_path / "b.npy", "--metric", "ms-ssim", "-q")
    rc, out, _ = run_cli(capsys, *common)
    assert rc == 0 and float(out) == pytest.approx(fastssim.ms_ssim(a, b), abs=1e-12)
    rc, out, _ = run_cli(capsys, *common, "--downsample", "zero", "--negative", "simple",
                         "--weights", "0.2,0.3,0.5")
    want = fastssim.ms_ssim(a, b, downsample="zero", negative="simple", weights=(0.2, 0.3, 0.5))
    assert rc == 0 and float(out) == pytest.approx(want, abs=1e-12)
    assert abs(want - fastssim.ms_ssim(a, b)) > 1e-3  # the options really changed something
    # too small for 5 scales: an error, or with --fit-scales as many scales as fit
    small = ("compare", tmp_path / "s1.npy", tmp_path / "s2.npy", "--metric", "ms-ssim", "-q")
    np.save(tmp_path / "s1.npy", a[:60, :60])
    np.save(tmp_path / "s2.npy", b[:60, :60])
    rc, _, err = run_cli(capsys, *small)
    assert rc == 2 and "needs at least 161 px" in err
    rc, out, _ = run_cli(capsys, *small, "--fit-scales")
    want = fastssim.ms_ssim(a[:60, :60], b[:60, :60], fit_scales=True)
    assert rc == 0 and float(out) == pytest.approx(want, abs=1e-12)


def test_pixelwise_map_and_gradient_folders(tmp_path, capsys):
    rng = np.random.default_rng(9)
    for side in ("r", "d"):
        (tmp_path / side).mkdir()
    arrays = {}
    for k in range(2):
        a = rng.integers(0, 256, (30, 28), dtype=np.uint8)
        b = noisy(rng, a, 50)
        Image.fromarray(a).save(tmp_path / "r" / f"p{k}.png")
        Image.fromarray(b).save(tmp_path / "d" / f"p{k}.png")
        arrays[f"p{k}"] = (a, b)
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "r", tmp_path / "d", "--metric", "pixelwise",
                         "--sigmas", "0.5,1,2", "--truncate", "2", "--map", tmp_path / "maps",
                         "--grad", tmp_path / "grads", "--format", "csv")
    assert rc == 0
    for r in _csv(out):
        key = os.path.splitext(os.path.basename(r["dist"]))[0]
        a, b = arrays[key]
        want = fastssim.pixelwise_ms_ssim(a, b, data_range=255.0, sigmas=(0.5, 1, 2), truncate=2,
                                          full=True, gradient="y")
        assert float(r["score"]) == want.value
        np.testing.assert_array_equal(np.load(tmp_path / "maps" / f"{key}.npy"), want.map)
        np.testing.assert_array_equal(np.load(tmp_path / "grads" / f"{key}.npy"), want.grad_y)


def test_ssim_window_options_and_tiff_arrays(tmp_path, capsys):
    rng = np.random.default_rng(10)
    a = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    b = noisy(rng, a, 60)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    (tmp_path / "m").mkdir()
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "a.npy", tmp_path / "b.npy", "--uniform",
                         "--win-size", "9", "--covariance", "sample", "--K2", "0.05", "-q",
                         "--map", tmp_path / "m", "--array-format", "tiff")
    want = fastssim.ssim(a, b, window="uniform", win_size=9, covariance="sample", K2=0.05,
                         full=True)
    assert rc == 0 and float(out) == pytest.approx(want.value, abs=1e-12)
    m = tifffile.imread(tmp_path / "m" / "b.tif")
    assert m.dtype == np.float32
    np.testing.assert_array_equal(m, want.map.astype(np.float32))


def test_single_pair_keeps_its_original_output(tmp_path, capsys):
    rng = np.random.default_rng(11)
    a = rng.integers(0, 256, (24, 24), dtype=np.uint8)
    b = noisy(rng, a, 30)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    rc, out, err = run_cli(capsys, "compare", tmp_path / "a.npy", tmp_path / "b.npy",
                           "--map", tmp_path / "map.npy")
    v = fastssim.ssim(a, b, full=True)
    assert rc == 0
    assert out.splitlines()[1] == f"SSIM = {v.value:.12f}"
    assert "data_range 255 (from dtype uint8)" in out.splitlines()[0]
    np.testing.assert_array_equal(np.load(tmp_path / "map.npy"), v.map)
    assert "wrote map to" in err
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "a.npy", tmp_path / "b.npy", "-q")
    assert out == f"{v.value:.12f}\n"


def test_cli_imports_image_libraries_lazily(tmp_path):
    # importing fastssim or its command line loads no image library or tqdm;
    # scoring two .npy files needs none either
    import subprocess
    import sys

    np.save(tmp_path / "a.npy", np.zeros((16, 16), np.uint8))
    code = ("import sys, fastssim, fastssim.__main__ as m, fastssim._cli_compare, "
            "fastssim._cli_io, fastssim._heatmap; "
            "rc = m.main(['compare', 'a.npy', 'a.npy', '-q']); "
            "print(rc, sorted(k for k in ('PIL', 'imageio', 'tifffile', 'tqdm', 'cv2') "
            "if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert out.splitlines()[-1] == "0 []"


def test_colour_volume_tiff(tmp_path, capsys):
    # a multi-page RGB TIFF: D x H x W x 3, scored as a colour volume
    rng = np.random.default_rng(14)
    v = rng.integers(0, 256, (12, 20, 22, 3), dtype=np.uint8)
    w = noisy(rng, v, 30)
    tifffile.imwrite(tmp_path / "a.tif", v, photometric="rgb")
    tifffile.imwrite(tmp_path / "b.tif", w, photometric="rgb")
    rc, out, _ = run_cli(capsys, "compare", tmp_path / "a.tif", tmp_path / "b.tif", "--format",
                         "csv", "--channels", "each")
    (r,) = _csv(out)
    assert rc == 0 and r["shape"] == "12x20x22x3"
    want = [fastssim.ssim(v[..., c], w[..., c], spatial_dims=3) for c in range(3)]
    np.testing.assert_allclose([float(r[f"channel_{c}"]) for c in range(3)], want, rtol=1e-12)
    assert float(r["score"]) == pytest.approx(
        fastssim.ssim(v, w, channel_axis=-1, spatial_dims=3), rel=1e-12)
