"""pytest configuration of the fastssim test suite: fixtures only.

Helpers live in ``helpers.py`` (``from helpers import pair, central_fd, ...``) and
the table of public entry points in ``entry_points.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

# Compatibility for test files written before helpers.py (branches in flight when
# the suite was reorganised, issue 9): new tests import from helpers, not conftest.
from helpers import (  # noqa: F401
    FD_REL, assert_grad_matches_fd, batch_fd, border_mask, central_fd, pair,
)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
