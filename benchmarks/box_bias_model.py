"""Where the float32 narrow-box SSIM bias came from (issue 10): a NumPy model.

    PYTHONPATH=<checkout> python benchmarks/box_bias_model.py [VARIANT ...]

Models the engine's float32 box-window SSIM value on scikit-image's test pairs
(camera / astronaut channel 1 with uint8 noise of sigma 20, as
tests/test_exactness.py), over the interior outputs, with the engine's shift
(fs_plane_shifts), its sources x - s, y - s, (x - y)^2, xy, and its operation
order: along a line the centre product then the paired taps by FMA
(band_loads / perm_run), across lines every tap by FMA from zero in line order
(vlin_sym4).  FMA is emulated exactly in float64.  Prints each variant's mean
minus the float64 reference (exact sums).  Variants:

  engine          the old narrow-box path: exact_mass taps, every operation rounded
  engine_nomass   taps float32(1/w), mass != 1 (the bias exact_mass removed)
  engine_exacttaps taps exactly 1/w, every operation rounded to float32
  h_engine_v_exact / h_exact_v_engine   one pass as the engine, the other exact
  exact_round32   exact moments, each rounded once to float32
  exact_round32_f64formula  the same with eq. 1 in float64 (the formula's share)
  sum32_scale64   unit-tap float32 sums, one float64 scale at the end
  sum32_scale32   unit-tap float32 sums, scaled by float32(1/w^2)
  scaled_then_summed  one division only, before the second pass's sums (biased again)
  unit_sums       the new path: unit-tap sums per pass, each scaled once (correctly rounded)
  wide_path       unit-tap sums along lines, float64 sums across (engine_box.h's wide boxes)

Measured (this model vs the engine): the old path's +2.4e-7 (camera 3) to -4.6e-8
(camera 7) matches the engine within 5e-9 in every case; taps of exactly 1/w
rounded per operation are biased by -0.6e-6 to -1.6e-6 (on integer images every
window sum is a multiple of 1/w, and the roundings of such values are not
zero-mean); unit sums scaled once per pass: 1e-9 to 5e-9; float32 sums of
values already divided (scaled_then_summed) are biased again, up to 2.2e-7
(astronaut 11): a division must follow an exact sum, once per pass.  No asserts.
"""
import numpy as np, sys
from fastssim._bands import exact_mass, uniform_taps
from skimage import data
f32, f64 = np.float32, np.float64

def fma32(a, b, c):
    return (a.astype(f64) * b.astype(f64) + c.astype(f64)).astype(f32)

def shift_of(x):
    n0, n1 = x.shape
    s0, s1 = max(n0 // 32, 1), max(n1 // 32, 1)
    g = x[::s0, ::s1].astype(f64).ravel()
    mean = g.sum() / g.size
    sd = np.sqrt(((g - mean) ** 2).sum() / g.size)
    m, e = np.frexp(sd)
    q = np.ldexp(1.0, e - 1)
    return np.round(mean / q) * q

def hband_engine(c, g, r):   # along axis 1, interior outputs (valid conv)
    n = c.shape[1] - 2 * r
    C = lambda k: c[:, r + k: r + k + n]
    a = (C(0).astype(f64) * f64(g[0])).astype(f32)
    for k in range(1, r + 1):
        pair = (C(-k) + C(k)).astype(f32)
        a = fma32(pair, np.full_like(pair, g[k]), a)
    return a

def vband_engine(c, g, r):   # across lines axis 0, taps in line order, FMA from zero
    n = c.shape[0] - 2 * r
    a = np.zeros((n, c.shape[1]), f32)
    for k in range(2 * r + 1):
        t = g[abs(k - r)]
        a = fma32(c[k:k + n], np.full((n, c.shape[1]), t, f32), a)
    return a

def box_exact(c, r, dt=f64):  # float64 sums, one scale
    c = c.astype(f64)
    w = 2 * r + 1
    cs = np.cumsum(np.pad(c, ((1, 0), (1, 0))), 0).cumsum(1)
    s = cs[w:, w:] - cs[:-w, w:] - cs[w:, :-w] + cs[:-w, :-w]
    return s

def formula(mx, my, md, mp, sx, sy, C1, C2, cov, T):
    mx, my, md, mp = [np.asarray(a, T) for a in (mx, my, md, mp)]
    sx, sy, C1, C2, cov = T(sx), T(sy), T(C1), T(C2), T(cov)
    ux, uy = mx + sx, my + sy
    du = (mx - my) + (sx - sy)
    A1 = T(2) * (ux * uy) + C1; D1 = du * du
    l = np.where(D1 / (A1 + D1) < 0.5, 1 - D1 / (A1 + D1), A1 / (A1 + D1))
    dv = mx - my
    A2 = T(2) * (cov * (mp - mx * my)) + C2
    D2 = cov * np.maximum(md - dv * dv, 0)
    cs = np.where(D2 / (A2 + D2) < 0.5, 1 - D2 / (A2 + D2), A2 / (A2 + D2))
    return (l * cs).astype(f64)

def run(x, y, win, variant):
    r = win // 2
    sx, sy = shift_of(x), shift_of(y)
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    cov = win * win / (win * win - 1)
    u64, v64 = x.astype(f64) - sx, y.astype(f64) - sy
    srcs64 = [u64, v64, (u64 - v64) ** 2, u64 * v64]
    u, v = (x.astype(f32) - f32(sx)), (y.astype(f32) - f32(sy))
    srcs32 = [u, v, (u - v) * (u - v), u * v]
    n = win * win
    if variant == 'ref64':
        m = [box_exact(s, r) / n for s in srcs64]
        return formula(*m, sx, sy, C1, C2, cov, f64).mean()
    if variant == 'engine':
        g = np.array(exact_mass(uniform_taps(win), 'f'), f64)[r:].astype(f32)
        m = [vband_engine(hband_engine(s, g, r), g, r) for s in srcs32]
    elif variant == 'engine_nomass':   # plain fl32(1/w) taps (mass != 1)
        g = np.full(r + 1, f32(1 / win))
        m = [vband_engine(hband_engine(s, g, r), g, r) for s in srcs32]
    elif variant == 'exact_round32':   # exact moments, each rounded once to float32
        m = [(box_exact(s, r) / n).astype(f32) for s in srcs32]
    elif variant == 'sum32_scale64':   # float32 sums with unit taps, scaled in float64
        g = np.ones(r + 1, f32)
        m = [(vband_engine(hband_engine(s, g, r), g, r).astype(f64) / n).astype(f32) for s in srcs32]
    elif variant == 'sum32_scale32':   # float32 sums, scaled by float32(1/n)
        g = np.ones(r + 1, f32)
        m = [vband_engine(hband_engine(s, g, r), g, r) * f32(1 / n) for s in srcs32]
    elif variant == 'exact_round32_f64formula':
        m = [(box_exact(s, r) / n).astype(f32) for s in srcs32]
        return formula(*m, sx, sy, C1, C2, cov, f64).mean()
    elif variant == 'engine_exacttaps':   # engine order, taps exactly 1/w (float64), every op rounded to float32
        g = np.full(r + 1, 1 / win)
        m = [vband_engine(hband_engine(s, g, r), g, r) for s in srcs32]
    elif variant == 'h_engine_v_exact':  # engine's horizontal band, vertical exact (float64 sum, 1/w, one rounding)
        g = np.array(exact_mass(uniform_taps(win), 'f'), f64)[r:].astype(f32)
        m = []
        for s in srcs32:
            h = hband_engine(s, g, r).astype(f64)
            cs = np.cumsum(np.pad(h, ((1, 0), (0, 0))), 0)
            m.append(((cs[win:] - cs[:-win]) / win).astype(f32))
    elif variant == 'h_exact_v_engine':  # horizontal exact rounded once, engine's vertical band
        g = np.array(exact_mass(uniform_taps(win), 'f'), f64)[r:].astype(f32)
        m = []
        for s in srcs32:
            cs = np.cumsum(np.pad(s.astype(f64), ((0, 0), (1, 0))), 1)
            h = ((cs[:, win:] - cs[:, :-win]) / win).astype(f32)
            m.append(vband_engine(h, g, r))
    elif variant == 'scaled_then_summed':  # h: exact sum divided by w^2, rounded; v: float32 unit sums, no scale
        one = np.ones(r + 1, f32)
        m = [vband_engine((hband_engine(s, one, r).astype(f64) / n).astype(f32), one, r)
             for s in srcs32]
    elif variant == 'unit_sums':   # h: unit-tap float32 sum, scaled in float64, rounded; v: float32 unit-tap sum, scaled in float64
        one = np.ones(r + 1, f32)
        m = []
        for s in srcs32:
            h = (hband_engine(s, one, r).astype(f64) / win).astype(f32)
            m.append((vband_engine(h, one, r).astype(f64) / win).astype(f32))
    elif variant == 'wide_path':   # h as C1; v: float64 sum of the float32 h lines (the wide path's arithmetic)
        one = np.ones(r + 1, f32)
        m = []
        for s in srcs32:
            h = (hband_engine(s, one, r).astype(f64) / win).astype(f64)
            h = h.astype(f32).astype(f64)
            cs = np.cumsum(np.pad(h, ((1, 0), (0, 0))), 0)
            m.append(((cs[win:] - cs[:-win]) / win).astype(f32))
    return formula(*m, sx, sy, C1, C2, cov, f32).mean()

if __name__ == '__main__':
    variants = sys.argv[1:] or ['engine', 'engine_exacttaps', 'exact_round32', 'unit_sums']
    for image in ["camera", "astronaut"]:
        im = data.camera() if image == "camera" else data.astronaut()[..., 1]
        rng = np.random.default_rng(5 if image == "camera" else 6)
        noisy = np.clip(im + 20.0 * rng.standard_normal(im.shape), 0, 255).astype(np.uint8)
        a, b = im.astype(f64), noisy.astype(f64)
        for win in [3, 7, 11]:
            ref = run(a, b, win, 'ref64')
            out = [f"{image} {win}"]
            for var in variants:
                out.append(f"{var} {run(a, b, win, var) - ref:+.2e}")
            print("  ".join(out), flush=True)
