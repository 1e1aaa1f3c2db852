"""Shared helpers for the command-line tests: running ``fastssim`` in-process or
in a subprocess, and writing test images in the formats the CLI reads."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

import numpy as np

from fastssim.__main__ import main


def run_cli(capsys, *argv):
    """Run ``fastssim *argv`` in this process: (exit status, stdout, stderr)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's exits
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def run_sub(*argv, cwd, env=None, **kw):
    """Run ``python -m fastssim *argv`` in a subprocess (from ``cwd``, never the
    repository root, whose source folder has no compiled engine)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "fastssim", *map(str, argv)], cwd=cwd, env=e,
                          capture_output=True, text=True, **kw)


def write_png16_rgb(path, a):
    """A 16-bit colour PNG written by hand (Pillow cannot write one): filter 0
    on every row, big-endian samples, as the PNG specification describes."""
    h, w, c = a.shape
    raw = b"".join(b"\x00" + a[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))


def noisy(rng, a, amount, lo=0, hi=255):
    """``a`` plus uniform integer noise of +-amount, clipped, same dtype."""
    b = a.astype(np.int64) + rng.integers(-amount, amount + 1, a.shape)
    return np.clip(b, lo, hi).astype(a.dtype)
