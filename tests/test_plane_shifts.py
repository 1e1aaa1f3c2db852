"""Per-plane shifts of small float32 planes whose grid takes whole rows (every
sample of a side under 64 px; engine.c reads four samples of two planes at once
there) and of integer planes: equal to the rule's plain sequential reference
(tests/test_msssim_layout.py) exactly, with and without samples that are not
finite (those groups take the masked sums)."""
import numpy as np
import pytest

from fastssim import _engine
from test_msssim_layout import _shifts_reference


@pytest.mark.parametrize("spatial", [(32, 32), (33, 29), (20, 31), (7, 3)])
@pytest.mark.parametrize("bad", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_shifts_of_whole_rows_equal_the_reference(spatial, bad, n_threads):
    rng = np.random.default_rng(21)
    items = 37  # several groups of 8 lanes, the last one partial
    a = (rng.random((items,) + spatial) * 3
         + rng.integers(0, 200, (items, 1, 1))).astype(np.float32)
    if bad:
        a[3, 0, 0] = np.nan
        a[20, -1, -1] = -np.inf
    got, _ = _engine.shifts(a, a, items, (spatial[0], 1, spatial[1]), 1, _engine.IN_REAL, False,
                            n_threads)
    np.testing.assert_array_equal(got, _shifts_reference(a, 1))


def test_shifts_of_uint8_planes_equal_the_reference():
    rng = np.random.default_rng(22)
    a = rng.integers(0, 256, (19, 30, 30)).astype(np.uint8)
    got, _ = _engine.shifts(a, a, 19, (30, 1, 30), 1, _engine.IN_U8, False, 2)
    np.testing.assert_array_equal(got, _shifts_reference(a, 1))
