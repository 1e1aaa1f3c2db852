"""Command-line interface: ``fastssim demo``, ``fastssim compare``, ``fastssim config``.

``compare`` lives in ``_cli_compare`` (reading in ``_cli_io``, heatmaps in
``_heatmap``).

Also reachable as ``python -m fastssim``.  Mistakes in the user's input (a
missing file, an unreadable image, mismatched shapes, a bad option) print one
line on stderr and exit with status 2, like argparse's own usage errors (whose
usage block is left out: one line too); ``compare`` on folders or lists
reports each pair it could not score as a row and exits with status 1.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

__all__ = ["main"]

PROG = "fastssim"


class UserError(Exception):
    """A problem with the user's input: reported in one line, exit status 2."""


# --------------------------------------------------------------------------- helpers


def _positive_int(minimum):
    def parse(text):
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {n}")
        return n

    return parse


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (v > 0 and np.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return v


def _workers(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _checked(fn, *args, **kwargs):
    """Call into fastssim; its validation errors (which name the argument and
    the fix) become one-line user errors."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        raise UserError(str(exc)) from None


def _median_ms(fn, budget_s=0.5, max_runs=15, min_runs=1):
    """Median wall time of ``fn()`` in ms, over as many runs as ``budget_s`` allows.

    The first call is timed too but, when there is time for more, it is
    treated as a warm-up (thread pool start, page faults) and dropped.
    """
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first > budget_s and min_runs <= 1:
        return first * 1e3, 1
    runs = max(min_runs, min(max_runs, int(budget_s / max(first, 1e-6))))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3, runs


def _blur(img):
    """Separable 5-tap binomial blur [1 4 6 4 1]/16 with reflected borders (NumPy only)."""
    k = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    out = img
    for axis in (0, 1):
        p = np.pad(out, [(2, 2) if a == axis else (0, 0) for a in range(out.ndim)], mode="symmetric")
        n = out.shape[axis]
        out = sum(k[i] * np.take(p, np.arange(i, i + n), axis=axis) for i in range(5))
    return out


def _synthetic_image(n):
    """A deterministic n x n test image in [0, 1]: shapes, edges, gratings and texture."""
    yy, xx = np.mgrid[0:n, 0:n] / n
    img = 0.25 + 0.35 * xx * (1 - yy)                                          # smooth ramp
    img = img + 0.15 * np.sin(2 * np.pi * (6 * xx + 2 * yy))                   # grating
    img = np.where((xx - 0.35) ** 2 + (yy - 0.4) ** 2 < 0.04, 0.9, img)       # bright disk
    img = np.where((abs(xx - 0.72) < 0.12) & (abs(yy - 0.7) < 0.18), 0.1, img)  # dark box
    chirp = 0.5 + 0.5 * np.sin(2 * np.pi * 40 * (xx**2))                       # fine detail
    img = np.where(yy > 0.85, chirp, img)
    texture = np.random.default_rng(2004).random((n, n))
    img = img + 0.08 * (_blur(texture) - 0.5)
    return np.clip(img, 0.0, 1.0)


def _sample_image(size):
    """(image in [0, 1] float64, description, skimage module or None)."""
    try:
        import skimage
        from skimage import data
    except ImportError:
        return _synthetic_image(size), f"synthetic {size}x{size} test image (scikit-image not installed)", None
    cam = data.camera().astype(np.float64) / 255.0
    desc = "scikit-image sample 'camera' (512x512 uint8, scaled to [0, 1])"
    if cam.shape != (size, size):
        from skimage.transform import resize

        cam = np.clip(resize(cam, (size, size), order=1, anti_aliasing=size < cam.shape[0]), 0.0, 1.0)
        desc = f"scikit-image sample 'camera', resized to {size}x{size}, in [0, 1]"
    return cam, desc, skimage


def _distort(img):
    """Blur plus Gaussian noise (sigma 0.05), seeded, clipped to [0, 1]."""
    rng = np.random.default_rng(20040413)
    return np.clip(_blur(img) + rng.normal(0.0, 0.05, img.shape), 0.0, 1.0)


# --------------------------------------------------------------------------- demo


def _cmd_demo(args):
    import fastssim
    from ._validation import resolve_workers

    nthreads = _checked(resolve_workers, args.workers)
    fastssim.show_config()
    print()
    dtype = np.dtype(args.dtype)
    x, desc, skimage = _sample_image(args.size)
    y = _distort(x)
    x = x.astype(dtype)
    y = y.astype(dtype)
    print(f"image:     {desc}")
    print("distorted: 5-tap binomial blur + Gaussian noise (sigma 0.05, fixed seed), clipped to [0, 1]")
    print(f"dtype {dtype}, data_range 1.0, Gaussian window (sigma 1.5, 11 taps), population covariance")
    print()

    kw = dict(data_range=1.0, workers=args.workers)
    value = fastssim.ssim(x, y, **kw)
    res = fastssim.ssim(x, y, gradient="y", **kw)
    g = res.grad_y
    print(f"fastssim.ssim(x, y)                   = {float(value):.15f}")
    print(f"fastssim.ssim(x, y, gradient='y')     : value {float(res.value):.15f}, "
          f"grad_y {g.shape} {g.dtype}, max|grad| {np.abs(g).max():.3e}")

    # The gradient is exact: compare one entry with a central difference (float64).
    i, j = np.unravel_index(np.argmax(np.abs(g)), g.shape)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    h = 1e-5
    yp, ym = y64.copy(), y64.copy()
    yp[i, j] += h
    ym[i, j] -= h
    fd = (fastssim.ssim(x64, yp, data_range=1.0) - fastssim.ssim(x64, ym, data_range=1.0)) / (2 * h)
    exact = fastssim.ssim(x64, y64, data_range=1.0, gradient="y").grad_y[i, j]
    print(f"central difference at pixel ({i}, {j}): {fd:.6e} vs analytic {exact:.6e} "
          f"(rel. diff {abs(fd - exact) / abs(exact):.1e})")
    print()

    t_val, n_val = _median_ms(lambda: fastssim.ssim(x, y, **kw))
    t_grad, n_grad = _median_ms(lambda: fastssim.ssim(x, y, gradient="y", **kw))

    if skimage is None:
        print("scikit-image is not installed: no comparison (pip install scikit-image).")
        print(f"{'':24s}{'fastssim':>12s}")
        print(f"{'SSIM value':24s}{t_val:9.2f} ms")
        print(f"{'value + gradient':24s}{t_grad:9.2f} ms")
        return 0

    from skimage.metrics import structural_similarity as sk_ssim

    skw = dict(gaussian_weights=True, use_sample_covariance=False, data_range=1.0)
    sk_value = sk_ssim(x, y, **skw)
    sk_value_g, sk_grad = sk_ssim(x, y, gradient=True, **skw)
    print(f"skimage structural_similarity(x, y)   = {float(sk_value):.15f}   "
          f"(gaussian_weights=True, use_sample_covariance=False)")
    print(f"|fastssim - scikit-image|             = {abs(float(value) - float(sk_value)):.1e}")
    # scikit-image's grad is not the gradient of the value it returns: it
    # differentiates the mean of the uncropped map.  ssim_vjp with a uniform
    # cotangent over the whole map reproduces that convention.
    rel = np.abs(g - sk_grad).max() / np.abs(sk_grad).max()
    w = np.full(x.shape, 1.0 / x.size, dtype=x.dtype)
    sk_like = fastssim.ssim_vjp(x, y, w, wrt="y", **kw)
    rel_vjp = np.abs(sk_like - sk_grad).max() / np.abs(sk_grad).max()
    print(f"gradients: scikit-image's grad differs from the exact gradient of its value by "
          f"{rel:.2f} (max, relative);")
    print(f"           fastssim.ssim_vjp with its convention (cotangent 1/size on the whole map) "
          f"matches it to {rel_vjp:.1e}")
    print()

    t_sk, n_sk = _median_ms(lambda: sk_ssim(x, y, **skw), budget_s=1.0, max_runs=5)
    t_skg, n_skg = _median_ms(lambda: sk_ssim(x, y, gradient=True, **skw), budget_s=1.0, max_runs=5)
    from ._config import config

    threads = (f"{nthreads} thread{'s' if nthreads > 1 else ''}" if config()["openmp"]
               else "1 thread, serial build")
    print(f"median wall time, {x.shape[0]}x{x.shape[1]} {dtype} "
          f"(fastssim workers={args.workers} -> {threads}; scikit-image is single-threaded):")
    print(f"{'':22s}{'fastssim':>12s}{'scikit-image':>15s}{'speed-up':>11s}")
    print(f"{'SSIM value':22s}{t_val:9.2f} ms{t_sk:12.2f} ms{t_sk / t_val:10.1f}x")
    print(f"{'value + gradient':22s}{t_grad:9.2f} ms{t_skg:12.2f} ms{t_skg / t_grad:10.1f}x")
    print(f"(runs: fastssim {n_val}/{n_grad}, scikit-image {n_sk}/{n_skg})")
    return 0


# --------------------------------------------------------------------------- config


def _cmd_config(args):
    import fastssim

    fastssim.show_config()
    return 0


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``fastssim compare: error: ... (see
    fastssim compare --help)`` on stderr, exit status 2 (argparse's own status),
    instead of the usage block followed by the error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser():
    p = _Parser(
        prog=PROG,
        description="Fast SSIM values and exact analytic gradients (Cython + OpenMP).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser(
        "demo",
        help="SSIM and its gradient on a sample image, timed beside scikit-image",
        description="SSIM value and exact gradient of a sample image and a blurred, noisy copy "
        "(scikit-image's 'camera' if scikit-image is installed, else a synthetic image), "
        "timed beside skimage.metrics.structural_similarity when it is available.",
    )
    d.add_argument("--size", type=_positive_int(11), default=512, metavar="N",
                   help="image side in pixels (default 512; at least 11)")
    d.add_argument("--workers", type=_workers, default=None, metavar="N",
                   help="fastssim threads (default: all cores, honouring OMP_NUM_THREADS)")
    d.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="compute type (default float64)")
    d.set_defaults(func=_cmd_demo)

    from ._cli_compare import add_parser as _add_compare

    _add_compare(sub, _positive_int, _positive_float, _workers)

    g = sub.add_parser("config", help="show version, OpenMP, threads and SIMD path",
                       description="Print fastssim.show_config().")
    g.set_defaults(func=_cmd_config)
    return p


def main(argv=None):
    """Run the command line; returns the exit status.

    0: success; 1: ``compare`` could not score some pairs (each is a row with
    its reason); 2: a usage error or bad input, reported in one line.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "compare":
        from ._cli_compare import UsageError, run

        try:
            return run(args)
        except UsageError as exc:
            print(f"{PROG} compare: error: {exc}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except UserError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
