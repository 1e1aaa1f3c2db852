"""Packaging: one source for the version, the declared license and its file.

References: the repository's pyproject.toml and LICENSE (these tests skip when the
suite runs without the source tree around it), and the installed distribution's
metadata where the imported fastssim is that distribution.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

import fastssim

ROOT = Path(__file__).resolve().parent.parent
PEP440 = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$")


def _pyproject():
    path = ROOT / "pyproject.toml"
    if not path.is_file():
        pytest.skip("no pyproject.toml next to tests/ (not a source tree)")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    with open(path, "rb") as f:
        return tomllib.load(f)


def test_version_is_a_pep440_string():
    assert isinstance(fastssim.__version__, str)
    assert PEP440.match(fastssim.__version__), fastssim.__version__


def test_version_has_one_source():
    """pyproject.toml declares no version of its own: setuptools reads fastssim.__version__."""
    cfg = _pyproject()
    assert "version" not in cfg["project"]
    assert "version" in cfg["project"]["dynamic"]
    assert cfg["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastssim.__version__"}


def test_installed_metadata_agrees_with_the_module():
    """Where the imported package is the installed distribution (not a source tree on
    PYTHONPATH shadowing another install), its metadata carries the same version."""
    try:
        dist = metadata.distribution("fastssim")
    except metadata.PackageNotFoundError:
        pytest.skip("fastssim is not installed (imported from a source tree)")
    init = Path(fastssim.__file__).resolve()
    files = [Path(dist.locate_file(f)).resolve() for f in (dist.files or [])]
    if init not in files:
        pytest.skip("the imported fastssim is not the installed distribution's files")
    assert dist.version == fastssim.__version__


def test_license_file_matches_the_declared_license():
    cfg = _pyproject()
    assert cfg["project"]["license"] == "BSD-3-Clause"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License")
    assert "the fastssim developers" in text
    assert "Neither the name of the copyright holder nor the names of its" in text  # clause 3
    assert "LICENSE" in cfg["project"]["license-files"]


def test_every_subpackage_is_packaged():
    """Every folder of the source tree's fastssim/ with an __init__.py is listed in
    pyproject's [tool.setuptools] packages (an unlisted one is missing from the
    wheel, and `import fastssim` fails after `pip install .`)."""
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "fastssim").rglob("__init__.py")}
    assert found == listed, f"in the tree but not packaged: {sorted(found - listed)}; " \
                            f"packaged but not in the tree: {sorted(listed - found)}"
