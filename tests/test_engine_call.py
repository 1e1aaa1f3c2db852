"""The named engine call (fastssim._engine.EngineCall / Window) and the engine's limits.

References.  The enum and limit values are checked against the text of
``fastssim/_src/engine.h`` (the one place they are written).  The widest
allowed call, MAX_WINDOWS windows, is checked against the product of the
same windows run one at a time (float64: the per-pixel product of the
single-window maps, rtol 1e-12 plus atol 1e-14 -- a few ulp of 1, as the
per-pixel MS-SSIM tests measure; a wrong window, form or factor moves
entries by orders of magnitude more).  Bad calls must raise a ValueError
or TypeError that names the problem, never run past an array.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

from helpers import pair

from fastssim import _core, _engine
from fastssim._bands import gaussian_taps

# The header the extension was built from: the source tree's (the tests run from
# the repository's tests/ folder, and the wheel carries no C sources), else one
# beside an in-place build.
ENGINE_H = next((p for p in (pathlib.Path(__file__).resolve().parent.parent / "fastssim" / "_src"
                             / "engine.h",
                             pathlib.Path(_engine.__file__).parent / "_src" / "engine.h")
                 if p.exists()), pathlib.Path("engine.h"))


def _header_enums():
    """NAME -> value of every `FS_NAME = value` in engine.h's enums."""
    text = ENGINE_H.read_text()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"\bFS_(\w+)\s*=\s*(\d+)", text)}


@pytest.mark.skipif(not ENGINE_H.exists(), reason="no fastssim/_src/engine.h (neither a source tree nor an in-place build)")
def test_enums_and_limits_come_from_engine_h():
    h = _header_enums()
    for name in ("FORM_SSIM", "FORM_CS", "FORM_L", "FORM_MEAN", "IN_REAL", "IN_U8", "IN_U16",
                 "IN_I8", "IN_I16", "IN_F32", "GRAD_X", "GRAD_Y", "NEG_CLAMP", "NEG_SIMPLE",
                 "NEG_NONE"):
        assert getattr(_engine, name) == h[name], name
    assert _engine.MAX_WINDOWS == h["MAXW"]
    assert _engine.MAX_SCALES == h["MAX_SCALES"]
    assert _engine.MAX_GROUPS == h["MAX_GROUPS"]


def _call(x, y, windows, **kw):
    geom = _core._geometry(x.shape[1:], x.dtype.char, tuple(windows[0][0]),
                           ((0, x.shape[1]), (0, x.shape[2])),
                           ((0, x.shape[1]), (0, x.shape[2])))
    wins = []
    for taps, form in windows:
        g = _core._geometry(x.shape[1:], x.dtype.char, tuple(taps),
                            ((0, x.shape[1]), (0, x.shape[2])),
                            ((0, x.shape[1]), (0, x.shape[2])))
        wins.append(_engine.Window(fwd=g[1], adj=g[2], form=_core.FORM[form]))
    return _core.engine_call(x, y, x.shape[0], geom, in_type=_engine.IN_REAL,
                             use_double=x.dtype == np.float64, windows=wins, C1=1e-4,
                             C2=9e-4, **kw)


def test_widest_call_is_the_product_of_its_windows():
    x, y = pair((1, 40, 44))
    sigmas = np.linspace(0.5, 2.5, _engine.MAX_WINDOWS)
    taps = [gaussian_taps(float(s), 3.5) for s in sigmas]
    forms = ["cs"] * (len(taps) - 1) + ["ssim"]
    m = np.empty((1, 40, 44))
    call = _call(x, y, list(zip(taps, forms)), map_out=m)
    call.run(1)
    _, got, _, _ = _core.result(call)
    assert got is m
    ref = np.ones_like(m)
    for t, f in zip(taps, forms):
        one = _call(x, y, [(t, f)], map_out=np.empty_like(m))
        one.run(1)
        ref *= one.map_out
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)


def test_too_many_windows_is_refused():
    x, y = pair((1, 24, 24))
    t = gaussian_taps(1.0, 3.5)
    call = _call(x, y, [(t, "cs")] * (_engine.MAX_WINDOWS + 1))
    with pytest.raises(ValueError, match=rf"1 to {_engine.MAX_WINDOWS} windows, got "
                                         rf"{_engine.MAX_WINDOWS + 1}"):
        call.run(1)
    call.windows = []
    with pytest.raises(ValueError, match="1 to .* windows, got 0"):
        call.run(1)


@pytest.mark.parametrize("field, value, match", [
    ("in_type", 99, "in_type must be one of IN_"),
    ("grad", 4, "grad must be 0 or GRAD_X"),
    ("grad", 1, "grad asks for a gradient array that is None"),
    ("rowsum", np.zeros((1, 3)), "rowsum must be a C-contiguous float64 array of shape"),
    ("xsel", np.zeros(1, dtype=np.intp), "a broadcast run needs its shifts"),
    ("windows", ["not a window"], "windows must be Window objects, got str"),
    ("x", [1.0, 2.0], "x must be a NumPy array, got list"),
    ("gx", 3, "gx must be a NumPy array, got int"),
])
def test_bad_fields_are_refused_by_name(field, value, match):
    x, y = pair((1, 24, 24))
    call = _call(x, y, [(gaussian_taps(1.0, 3.5), "ssim")])
    setattr(call, field, value)
    with pytest.raises((ValueError, TypeError), match=match):
        call.run(1)


def test_window_checks_its_fields():
    g = _core._geometry((24, 24), "d", tuple(gaussian_taps(1.0, 3.5)), ((0, 24), (0, 24)),
                        ((0, 24), (0, 24)))
    with pytest.raises(ValueError, match="form must be one of FORM_"):
        _engine.Window(fwd=g[1], adj=g[2], form=7)
    with pytest.raises(ValueError, match="three bands each"):
        _engine.Window(fwd=g[1][:2], adj=g[2], form=_engine.FORM_SSIM)
    with pytest.raises(TypeError):
        _engine.Window(g[1], g[2], _engine.FORM_SSIM)  # by name only


def test_engine_call_is_filled_by_name_only():
    with pytest.raises(TypeError):
        _engine.EngineCall(None, None, 1)


def test_launch_bounds_accept_what_fits():
    _engine.check_groups([(0, _engine.MAX_WINDOWS, 3, 0, 10)], _engine.MAX_WINDOWS)
    G = _engine.MAX_GROUPS
    _engine.check_groups([(j, 1, 1, 0, 5) for j in range(G)], G)


@pytest.mark.parametrize("groups, njobs, match", [
    ([], 1, r"1 to \d+ groups of jobs, got 0"),
    ([(j, 1, 1, 0, 5) for j in range(_engine.MAX_GROUPS + 1)], _engine.MAX_GROUPS + 1,
     rf"1 to {_engine.MAX_GROUPS} groups of jobs, got {_engine.MAX_GROUPS + 1}"),
    ([(0, _engine.MAX_WINDOWS + 1, 1, 0, 5)], 16,
     rf"group 0 has {_engine.MAX_WINDOWS + 1} windows, expected 1 to {_engine.MAX_WINDOWS}"),
    ([(0, 0, 1, 0, 5)], 1, r"group 0 has 0 windows"),
    ([(0, 1, 1, 0, 5), (3, 2, 1, 0, 5)], 4, r"group 1 spans jobs \[3, 5\), outside the 4 given"),
    ([(-1, 1, 1, 0, 5)], 4, r"group 0 spans jobs \[-1, 0\)"),
    ([(0, 1, -1, 0, 5)], 1, r"group 0 has a negative plane or line count"),
    ([(0, 1, 1, 5, 2)], 1, r"group 0 has a negative plane or line count"),
])
def test_launch_bounds_refuse_an_overrun(groups, njobs, match):
    with pytest.raises(ValueError, match=match):
        _engine.check_groups(groups, njobs)
