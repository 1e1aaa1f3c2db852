"""The Plan (fastssim._plan) and the backend seam (fastssim._backends).

References: the Plan's documented contract (immutable, hashable, no input
arrays inside, equal for equal computations); the layering rule that
``fastssim._core`` is the only Python module importing the Cython engine,
checked by parsing every module of the package; and the values themselves
(the same computation asked through two public functions is the same Plan,
hence the same bits).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import fastssim
from fastssim import _backends, _plan, losses

PKG = Path(fastssim.__file__).parent


def _pair(shape, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    return x.astype(dtype), (0.7 * x + 0.3 * rng.random(shape)).astype(dtype)


@pytest.fixture
def recorded(monkeypatch):
    """Every (plan, x, y) handed to the backend seam, in call order."""
    calls = []
    real = _backends.execute

    def spy(plan, x, y, cotangent=None, out=None):
        calls.append((plan, x, y))
        return real(plan, x, y, cotangent, out)

    monkeypatch.setattr(_backends, "execute", spy)
    return calls


def _walk(obj):
    yield obj
    if isinstance(obj, tuple):  # NamedTuples included
        for v in obj:
            yield from _walk(v)


CALLS = {
    "ssim": lambda x, y: fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both"),
    "ssim_vjp": lambda x, y: fastssim.ssim_vjp(x, y, np.ones_like(x), data_range=1.0),
    "structural_similarity": lambda x, y: fastssim.structural_similarity(
        x, y, data_range=1.0, full=True, gradient=True),
    "ms_ssim": lambda x, y: fastssim.ms_ssim(x, y, data_range=1.0, weights=(0.5, 0.5),
                                             gradient="x"),
    "pixelwise_ms_ssim": lambda x, y: fastssim.pixelwise_ms_ssim(
        x, y, data_range=1.0, sigmas=(0.5, 1.0), full=True, gradient="y"),
    "pixelwise_ms_ssim_vjp": lambda x, y: fastssim.pixelwise_ms_ssim_vjp(
        x, y, np.ones_like(x), data_range=1.0, sigmas=(0.5, 1.0)),
    "losses.mix": lambda x, y: losses.mix(x, y, data_range=1.0, sigmas=(0.5, 1.0),
                                          gradient=True, full=True),
}
# backend calls per public call: one Plan each; Mix has two terms (two Plans)
NCALLS = {"losses.mix": 2}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_public_function_makes_one_backend_call_per_plan(recorded, name):
    x, y = _pair((40, 44))
    CALLS[name](x, y)
    assert len(recorded) == NCALLS.get(name, 1)
    for plan, xe, ye in recorded:
        assert isinstance(plan, _plan.Plan)
        # the seam receives the caller's arrays (or, for Mix's l1 term, |p - t|), not copies
        if name != "losses.mix":
            assert xe is x and ye is y


@pytest.mark.parametrize("name", sorted(CALLS))
def test_plans_are_frozen_hashable_and_hold_no_arrays(recorded, name):
    x, y = _pair((40, 44))
    CALLS[name](x, y)
    for plan, _, _ in recorded:
        for v in _walk(plan):
            assert not isinstance(v, np.ndarray), f"{name}: an array inside the Plan"
            assert isinstance(v, (tuple, int, float, str, bool, type(None), np.dtype)), type(v)
        assert {plan: 1}[plan] == 1  # hashable, usable as a cache key
        with pytest.raises(AttributeError):
            plan.grad = 0
        with pytest.raises((AttributeError, TypeError)):
            plan.layout.spatial = (1, 1)
        assert not dataclasses.is_dataclass(plan)  # immutable NamedTuples, not a mutable record


def test_the_same_computation_gives_equal_plans_across_functions(recorded):
    # scikit-image's default (7x7 box, sample covariance, same-size map, the
    # mean over the crop, gradient w.r.t. im2) is ssim() with those options:
    # the two functions build one and the same Plan, so their bits agree.
    x, y = _pair((33, 38), seed=2)
    s_ref = fastssim.ssim(x, y, data_range=1.0, window="uniform", win_size=7,
                          covariance="sample", full=True, gradient="y", workers=1)
    s_sk = fastssim.structural_similarity(x, y, data_range=1.0, full=True, gradient=True,
                                          workers=1)
    (p_ref, _, _), (p_sk, _, _) = recorded
    assert p_ref == p_sk and hash(p_ref) == hash(p_sk)
    assert s_ref.value == s_sk[0]
    np.testing.assert_array_equal(s_ref.grad_y, s_sk[1])
    np.testing.assert_array_equal(s_ref.map, s_sk[2])
    # the losses ask the similarity's own Plan
    recorded.clear()
    fastssim.ssim(x, y, data_range=1.0, gradient="x", full=True)
    losses.ssim(x, y, data_range=1.0, gradient=True, full=True)
    assert recorded[0][0] == recorded[1][0]
    # and the drop-in MS-SSIM that of ms_ssim
    recorded.clear()
    xm, ym = _pair((170, 165), seed=3)
    fastssim.ms_ssim(xm, ym, data_range=1.0, gradient="y")
    fastssim.multiscale_structural_similarity(xm, ym, data_range=1.0, gradient=True)
    assert recorded[0][0] == recorded[1][0]


def test_plans_differ_where_the_computation_does(recorded):
    x, y = _pair((40, 44))
    fastssim.ssim(x, y, data_range=1.0)
    fastssim.ssim(x, y, data_range=1.0, gradient="x")
    fastssim.ssim(x, y, data_range=1.0, K2=0.05)
    fastssim.ssim(x.astype(np.float32), y.astype(np.float32), data_range=1.0)
    plans = [p for p, _, _ in recorded]
    assert len(set(plans)) == 4
    assert plans[3].layout.dtype == np.float32 and plans[0].layout.dtype == np.float64


def test_plan_describes_the_call():
    x, y = _pair((2, 3, 30, 31))
    p, _, _ = _plan.ssim(x[:1], y, full=True, grad=3, data_range=1.0, window="gaussian",
                         sigma=1.5, truncate=3.5, win_size=None, K1=0.01, K2=0.03,
                         covariance="population", border="reflect", channel_axis=1,
                         spatial_dims=2, workers=1)
    lay = p.layout
    assert lay.shape == (2, 3, 30, 31) and lay.xshape == (1, 3, 30, 31) and lay.broadcasts
    assert (lay.batch_shape, lay.nchan, lay.channel_axis, lay.spatial) == ((2,), 3, 1, (30, 31))
    assert lay.P == 6 and p.map_shape == (2, 3, 30, 31)
    assert p.kind == "window" and len(p.scales[0].taps) == 11 and p.r == 5
    assert p.map_region == ((0, 30), (0, 31)) and p.sum_region == ((5, 25), (5, 26))
    assert p.C1 == 0.01 * 0.01 and p.C2 == 0.03 * 0.03  # (K * data_range)**2
    assert p.wscal == 1.0 / (20 * 21 * 3)


def _engine_importers():
    """Modules of the package whose imports name ``_engine``."""
    found = set()
    for path in PKG.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if any(n == "_engine" or n.endswith("._engine") or n.startswith("_engine")
                   for n in names):
                found.add(path.relative_to(PKG).as_posix())
    return found


def test_core_is_the_only_module_that_imports_the_engine():
    assert _engine_importers() == {"_core.py"}


@pytest.mark.parametrize("module", ["_ssim.py", "_msssim.py", "_pixelwise.py",
                                    "_structural_similarity.py", "losses.py", "dask.py"])
def test_public_modules_reach_the_engine_only_through_the_backend(module):
    src = (PKG / module).read_text()
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module not in ("_core", "_engine"), module
            assert not {"_core", "_engine"} & {a.name for a in node.names}, module
    assert "_core." not in src and "_engine." not in src


def test_backend_for_numpy_is_cpu_and_unknown_arrays_are_refused():
    assert _backends.for_arrays(np.zeros(3), np.zeros(3)) is _backends.cpu
    assert _backends.for_arrays(np.ma.zeros(3)) is _backends.cpu  # ndarray subclasses too

    class Foreign:
        pass

    with pytest.raises(TypeError, match="no backend for arrays of type"):
        _backends.for_arrays(Foreign())
    Foreign.__module__ = "cupy._core.core"  # a device array next to a host one
    with pytest.raises(TypeError, match="x and y live on different backends"):
        _backends.for_arrays(np.zeros(3), Foreign())


def test_cpu_backend_refuses_an_unknown_plan_kind():
    """A malformed Plan (not one a builder makes) is a ValueError naming the field."""
    from fastssim import _backends, _plan

    x = np.zeros((16, 16))
    p, xv, yv = _plan.ssim(x, x, full=False, grad=0, data_range=1.0, window="gaussian",
                           sigma=1.5, truncate=3.5, win_size=None, K1=0.01, K2=0.03,
                           covariance="population", border="reflect", channel_axis=None,
                           spatial_dims=2, workers=1)
    with pytest.raises(ValueError, match=r"plan\.kind: expected 'window', 'product' or 'pyramid'"):
        _backends.cpu.execute(p._replace(kind="bogus"), xv, yv)
