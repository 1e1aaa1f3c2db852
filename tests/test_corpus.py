"""Every result bit of the frozen corpus (tests/corpus.py) is unchanged.

Reference: the hashes in tests/data/corpus_hashes.json, written by
``python corpus.py --write`` before the architecture refactor.  Tolerance:
none (bit for bit).  A change that alters the arithmetic on purpose
regenerates them and says why in its commit.
"""

from __future__ import annotations

import json

import pytest

import corpus


def _tables():
    return json.loads(corpus.HASHES.read_text())


def test_corpus_cases_cover_every_table_entry():
    names = set(corpus.cases())
    for key, table in _tables().items():
        assert set(table) == names, key


@pytest.mark.parametrize("name", sorted(corpus.cases()))
def test_corpus_bitwise(name):
    tables = _tables()
    key = corpus.simd_key()
    if key not in tables:
        pytest.skip(f"no frozen hashes for SIMD path {key!r} (have {sorted(tables)})")
    got = corpus.digest(corpus.cases()[name]())
    assert got == tables[key][name], f"{name}: results changed on {key}"


def test_digest_sees_one_bit():
    """The hash is not blind: flipping the last mantissa bit of one entry changes it."""
    import numpy as np

    a = np.linspace(0, 1, 50)
    b = a.copy()
    b[17] = np.nextafter(b[17], 2.0)
    assert corpus.digest((a,)) != corpus.digest((b,))
