"""``fastssim compare --convention NAME`` (issue 17): the CLI's scores are the
library's ``convention=`` values, explicit options still win, and misuse is a
usage error (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fastssim
from helpers import run_cli
from conventions_pairs import pair


@pytest.fixture
def files(tmp_path):
    x, y = pair("color")
    px, py = tmp_path / "ref.npy", tmp_path / "dist.npy"
    np.save(px, x)
    np.save(py, y)
    fx, fy = tmp_path / "ref_f.npy", tmp_path / "dist_f.npy"
    np.save(fx, x / 255.0)
    np.save(fy, y / 255.0)
    return x, y, px, py, fx, fy


@pytest.mark.parametrize("metric,conv", [("ssim", "piq"), ("ssim", "kornia"), ("ssim", "skimage"),
                                         ("ms-ssim", "torchmetrics"), ("ms-ssim", "pytorch_msssim")])
def test_score_is_the_library_value(capsys, files, metric, conv):
    x, y, px, py, _, _ = files
    rc, out, _ = run_cli(capsys, "compare", px, py, "--metric", metric, "--convention", conv, "-q")
    assert rc == 0
    fn = fastssim.ssim if metric == "ssim" else fastssim.ms_ssim
    # uint8 files: data_range 255 from the dtype (SSIM does not change when the
    # images and the data range scale together)
    want = fn(x, y, data_range=255.0, channel_axis=-1, convention=conv)
    assert abs(float(out) - want) <= 1e-12


def test_float_images_take_the_presets_data_range(capsys, files):
    x, y, _, _, fx, fy = files
    rc, out, _ = run_cli(capsys, "compare", fx, fy, "--convention", "piq", "-q")
    assert rc == 0
    assert abs(float(out) - fastssim.ssim(x / 255.0, y / 255.0, channel_axis=-1,
                                          convention="piq")) <= 1e-12
    # without a preset data range (tensorflow): still a usage error
    rc, _, err = run_cli(capsys, "compare", fx, fy, "--convention", "tensorflow", "-q")
    assert rc == 2 and "--data-range" in err


def test_explicit_options_override(capsys, files):
    x, y, px, py, _, _ = files
    rc, out, _ = run_cli(capsys, "compare", px, py, "--convention", "skimage", "--win-size", "9",
                         "--uniform", "-q")
    assert rc == 0
    want = fastssim.ssim(x, y, data_range=255.0, channel_axis=-1, window="uniform", win_size=9,
                         covariance="sample")
    assert abs(float(out) - want) <= 1e-12
    rc, out, _ = run_cli(capsys, "compare", px, py, "--metric", "ms-ssim", "--convention",
                         "torchmetrics", "--negative", "simple", "--format", "json")
    assert rc == 0
    rec = json.loads(out)
    want = fastssim.ms_ssim(x, y, data_range=255.0, channel_axis=-1, convention="torchmetrics",
                            negative="simple")
    assert abs(rec["pairs"][0]["score"] - want) <= 1e-12
    assert rec["options"]["convention"] == "torchmetrics" and rec["options"]["negative"] == "simple"


def test_usage_errors(capsys, files):
    _, _, px, py, _, _ = files
    rc, _, err = run_cli(capsys, "compare", px, py, "--metric", "ms-ssim", "--convention", "skimage")
    assert rc == 2 and "has no MS-SSIM" in err
    rc, _, err = run_cli(capsys, "compare", px, py, "--metric", "pixelwise", "--convention", "piq")
    assert rc == 2 and "--convention applies to" in err
    rc, _, err = run_cli(capsys, "compare", px, py, "--convention", "nope")
    assert rc == 2 and "invalid choice" in err
