"""show_config(), lazy optional backends, and the docstring examples.

References: fastssim.__version__ and fastssim._config.config() for what
show_config prints; ``sys.modules`` in a fresh interpreter for lazy imports
(house rule 9); the doctest examples in the public docstrings (house style).
"""

from __future__ import annotations

import doctest
import io
import os
import subprocess
import sys

import pytest

import fastssim
from fastssim import _config


def test_show_config_prints_version_openmp_threads_simd(capsys):
    fastssim.show_config()
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"fastssim {fastssim.__version__} (Python ")
    c = _config.config()
    assert any(line.strip().startswith("OpenMP:") for line in lines)
    assert ("enabled" if c["openmp"] else "DISABLED (serial build)") in out
    threads = [line for line in lines if line.strip().startswith("threads:")]
    assert len(threads) == 1 and f"threads:   {c['threads']} " in threads[0]
    assert f"{os.cpu_count()} CPUs" in threads[0]
    simd = [line for line in lines if line.strip().startswith("SIMD path:")]
    assert len(simd) == 1 and simd[0].split(":", 1)[1].strip() == c["simd"] != ""


def test_show_config_file_argument(capsys):
    buf = io.StringIO()
    fastssim.show_config(file=buf)
    assert capsys.readouterr().out == ""
    assert buf.getvalue().startswith("fastssim ")
    assert "SIMD path:" in buf.getvalue()


def test_config_values():
    c = _config.config()
    assert c["version"] == fastssim.__version__
    assert isinstance(c["openmp"], bool)
    assert isinstance(c["threads"], int) and c["threads"] >= 1


def test_import_is_lazy_about_optional_backends():
    code = ("import sys, fastssim, numpy as np; "
            "fastssim.ssim(np.ones((16, 16)), np.ones((16, 16)), data_range=1.0); "
            "print(sorted(m for m in ('cupy', 'torch', 'dask', 'jax', 'tensorflow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("module", ["fastssim._ssim", "fastssim._structural_similarity"])
def test_docstring_examples(module):
    mod = sys.modules[module]
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0
