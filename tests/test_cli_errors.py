"""Bad input to the command line: one line on stderr, the right exit status, no
traceback (issue 11's "CLI" bullet and issue 15's exit codes); and the progress
bar, present on a terminal and absent when piped or with -q.

References: the exit codes and message forms the README states; a real
pseudo-terminal (``pty``) as the subprocess's stderr for the progress bar.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from helpers import run_cli, run_sub

PREFIX = "fastssim compare: error: "


def _one_line_error(rc, out, err, *parts):
    assert rc == 2, (rc, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for p in parts:
        assert p in lines[0], (p, lines[0])
    return lines[0]


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "good.npy"
    np.save(p, np.zeros((16, 16), np.uint8))
    return p


def test_empty_npy(tmp_path, good, capsys):
    (tmp_path / "e.npy").write_bytes(b"")
    rc, out, err = run_cli(capsys, "compare", good, tmp_path / "e.npy")
    line = _one_line_error(rc, out, err, "e.npy: empty file")
    assert line.startswith(PREFIX)


def test_npy_cut_inside_its_header(tmp_path, good, capsys):
    np.save(tmp_path / "full.npy", np.zeros((16, 16)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "full.npy").read_bytes()[:20])
    rc, out, err = run_cli(capsys, "compare", good, tmp_path / "cut.npy")
    _one_line_error(rc, out, err, "cut.npy: not a valid .npy file")


def test_npy_header_claiming_80_gb_is_refused_before_allocating(tmp_path, good, capsys):
    with open(tmp_path / "huge.npy", "wb") as f:
        np.lib.format.write_array_header_2_0(
            f, {"descr": "<f8", "fortran_order": False, "shape": (100_000, 100_000)})
        f.write(b"\0" * 64)
    rc, out, err = run_cli(capsys, "compare", good, tmp_path / "huge.npy")
    _one_line_error(rc, out, err, "huge.npy: truncated or corrupt .npy",
                    "(100000, 100000)", "80.0 GB", "64 bytes")


def test_truncated_npy_data(tmp_path, good, capsys):
    np.save(tmp_path / "t.npy", np.zeros((16, 16), np.uint8))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:-10])
    rc, out, err = run_cli(capsys, "compare", good, tmp_path / "t.npy")
    _one_line_error(rc, out, err, "t.npy: truncated or corrupt .npy", "256 bytes", "246 bytes")


def test_object_npy(tmp_path, good, capsys):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    rc, out, err = run_cli(capsys, "compare", good, tmp_path / "o.npy")
    _one_line_error(rc, out, err, "o.npy: holds Python objects")


def test_bad_npz(tmp_path, good, capsys):
    (tmp_path / "z.npz").write_bytes(b"PK not a zip")
    rc, out, err = run_cli(capsys, "compare", good, tmp_path / "z.npz")
    _one_line_error(rc, out, err, "z.npz: not a valid .npz file")
    np.savez(tmp_path / "two.npz", a=np.zeros((16, 16)), b=np.ones((16, 16)))
    rc, out, err = run_cli(capsys, "compare", good, tmp_path / "two.npz")
    _one_line_error(rc, out, err, "two.npz: expected an .npz holding one array, found 2 (a, b)")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".webp"])
def test_empty_and_corrupt_pictures(tmp_path, good, capsys, ext):
    pytest.importorskip("PIL")
    (tmp_path / f"e{ext}").write_bytes(b"")
    rc, out, err = run_cli(capsys, "compare", good, tmp_path / f"e{ext}")
    _one_line_error(rc, out, err, f"e{ext}: empty file")
    (tmp_path / f"c{ext}").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR garbage " * 3)
    rc, out, err = run_cli(capsys, "compare", good, tmp_path / f"c{ext}")
    _one_line_error(rc, out, err, f"c{ext}: cannot read")


def test_missing_unknown_and_folder_mixups(tmp_path, good, capsys):
    rc, out, err = run_cli(capsys, "compare", good, tmp_path / "nope.npy")
    _one_line_error(rc, out, err, "nope.npy: no such file")
    (tmp_path / "x.xyz").write_bytes(b"1")
    rc, out, err = run_cli(capsys, "compare", good, tmp_path / "x.xyz")
    _one_line_error(rc, out, err, "unknown file type '.xyz'")
    (tmp_path / "d").mkdir()
    rc, out, err = run_cli(capsys, "compare", tmp_path / "d", good)
    _one_line_error(rc, out, err, "is a folder but DIST", "is a file")
    rc, out, err = run_cli(capsys, "compare", tmp_path / "d", tmp_path / "d")
    _one_line_error(rc, out, err, "no files to compare")


def test_option_errors_are_usage_errors(tmp_path, good, capsys):
    for argv, part in [
        (("--metric", "pixelwise", "--sigma", "2"), "--sigma does not apply to --metric pixelwise"),
        (("--downsample", "zero"), "--downsample applies to --metric ms-ssim"),
        (("--win-size", "7"), "--win-size applies to --uniform"),
        (("--heatmap-overlay",), "--heatmap-overlay and --heatmap-range need --heatmap"),
        (("--workers", "0"), "workers: 0 is not a thread count"),
        (("--output", tmp_path / "no" / "such" / "out.csv"), "no such folder"),
    ]:
        rc, out, err = run_cli(capsys, "compare", good, good, *argv)
        _one_line_error(rc, out, err, part)
    rc, out, err = run_cli(capsys, "compare", good)
    _one_line_error(rc, out, err, "expected REF and DIST")
    rc, out, err = run_cli(capsys, "compare", good, good, "--pairs", "x.csv")
    _one_line_error(rc, out, err, "either REF DIST or --pairs")
    rc, out, err = run_cli(capsys, "compare", "--pairs", "x.csv", "--glob", "*.png")
    _one_line_error(rc, out, err, "--pairs lists them itself")


@pytest.mark.parametrize("argv, part", [
    ((), "fastssim: error: the following arguments are required: COMMAND (see fastssim --help)"),
    (("compare", "a", "b", "--metric", "foo"), "fastssim compare: error: argument --metric: "
                                               "invalid choice: 'foo'"),
    (("compare", "a", "b", "--data-range", "-1"), "argument --data-range: expected a finite "
                                                  "number > 0, got -1"),
    (("compare", "a", "b", "--heatmap-range", "1,0"), "expected LO,HI with LO < HI"),
    (("compare", "a", "b", "--bogus"), "unrecognized arguments: --bogus"),
    (("frobnicate",), "invalid choice: 'frobnicate'"),
])
def test_argparse_errors_are_one_line(capsys, argv, part):
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2 and out == ""
    assert len(err.splitlines()) == 1 and part in err and "usage:" not in err


def test_subprocess_exit_codes(tmp_path):
    # through the real entry point: 0, 1 (a failed row) and 2
    np.save(tmp_path / "a.npy", np.zeros((16, 16), np.uint8))
    (tmp_path / "r").mkdir()
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "r" / "a.npy", np.zeros((16, 16), np.uint8))
    np.save(tmp_path / "d" / "a.npy", np.zeros((16, 16), np.uint8))
    assert run_sub("compare", "a.npy", "a.npy", "-q", cwd=tmp_path).returncode == 0
    assert run_sub("compare", "r", "d", cwd=tmp_path).returncode == 0
    np.save(tmp_path / "r" / "b.npy", np.zeros((16, 16), np.uint8))
    p = run_sub("compare", "r", "d", "--format", "csv", cwd=tmp_path)
    assert p.returncode == 1 and "no partner in DIST" in p.stdout
    (tmp_path / "e.npy").write_bytes(b"")
    p = run_sub("compare", "a.npy", "e.npy", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


# --------------------------------------------------------------------------- progress


def _folders(tmp_path, n=3):
    for side in ("r", "d"):
        (tmp_path / side).mkdir()
        for k in range(n):
            np.save(tmp_path / side / f"i{k}.npy",
                    np.random.default_rng(k).integers(0, 256, (20, 20), dtype=np.uint8))
    return tmp_path


def _run_with_tty_stderr(argv, cwd, env=None, size=None):
    """Run ``python -m fastssim *argv`` with a pseudo-terminal as stderr (of
    ``size`` (rows, columns), else one that reports 0 x 0); (exit status,
    stdout, what the terminal received)."""
    pty = pytest.importorskip("pty")
    import subprocess

    master, slave = pty.openpty()
    if size is not None:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen([sys.executable, "-m", "fastssim", *map(str, argv)], cwd=cwd, env=e,
                         stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = p.stdout.read().decode()
    rc = p.wait()
    os.close(master)
    return rc, out, b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_plain_progress_bar_on_a_terminal(tmp_path):
    # tqdm hidden: the built-in bar
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "tqdm.py").write_text("raise ImportError('tqdm hidden by the test')\n")
    _folders(tmp_path)
    env = {"PYTHONPATH": str(tmp_path / "block")}
    rc, out, tty = _run_with_tty_stderr(["compare", "r", "d", "--format", "csv"], tmp_path, env)
    assert rc == 0 and out.count("\n") == 4
    assert "fastssim compare [" in tty and "3/3 pairs 100%" in tty and "\r" in tty
    rc, out, tty = _run_with_tty_stderr(["compare", "r", "d", "--format", "csv", "-q"], tmp_path,
                                        env)
    assert rc == 0 and tty == ""


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
@pytest.mark.parametrize("size", [None, (30, 100)])
def test_tqdm_progress_bar_on_a_terminal(tmp_path, size):
    pytest.importorskip("tqdm")
    _folders(tmp_path)
    rc, out, tty = _run_with_tty_stderr(["compare", "r", "d", "--format", "csv"], tmp_path,
                                        size=size)
    assert rc == 0
    assert "fastssim compare: 100%" in tty and "3/3" in tty and "pair/s" in tty
    bar = [line for line in tty.replace("\r", "\n").splitlines() if "100%" in line][-1]
    assert len(bar) <= (size[1] if size else 80)


def test_no_progress_bar_when_piped(tmp_path):
    _folders(tmp_path)
    p = run_sub("compare", "r", "d", "--format", "csv", cwd=tmp_path)
    assert p.returncode == 0
    assert "3/3" not in p.stderr and "\r" not in p.stderr and "%" not in p.stderr
    # what stderr does get for CSV: the summary
    assert p.stderr.splitlines()[0] == "3 of 3 pairs scored"


def test_without_pillow_pictures_need_the_cli_extra(tmp_path):
    # Pillow and imageio hidden: .npy still works, a PNG or --heatmap says what to install
    block = tmp_path / "block"
    for mod in ("PIL", "imageio"):
        (block / mod).mkdir(parents=True)
        (block / mod / "__init__.py").write_text(f"raise ImportError('{mod} hidden by the test')\n")
    env = {"PYTHONPATH": str(block)}
    np.save(tmp_path / "a.npy", np.zeros((16, 16), np.uint8))
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert run_sub("compare", "a.npy", "a.npy", "-q", cwd=tmp_path, env=env).stdout == \
        "1.000000000000\n"
    p = run_sub("compare", "a.png", "a.png", cwd=tmp_path, env=env)
    assert p.returncode == 2 and p.stderr == (
        "fastssim compare: error: a.png: reading .png files needs Pillow "
        "(pip install 'fastssim[cli]'), or save the image as .npy\n")
    p = run_sub("compare", "a.npy", "a.npy", "--heatmap", "hm", cwd=tmp_path, env=env)
    assert p.returncode == 2 and "--heatmap needs Pillow" in p.stderr


def test_reader_leaving_early_is_not_an_error(tmp_path):
    # `fastssim compare r d | head -1`: stdout closed before the table is written
    import subprocess

    _folders(tmp_path)
    p = subprocess.Popen([sys.executable, "-m", "fastssim", "compare", "r", "d"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 0
    assert "Traceback" not in err and "BrokenPipe" not in err
