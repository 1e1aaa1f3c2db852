"""``fastssim compare``: score a pair, two folders, a reference against a folder,
or a list of pairs, with any of the three metrics.

Exit status: 0 when every pair was scored, 1 when some were not (each such
pair is a row with its reason), 2 for usage errors (bad options, a missing
REF/DIST, an unreadable ``--pairs`` list).  A single pair given as two files
keeps the original behaviour: any problem with it is a one-line error and
status 2.

How the work is spread: with several pairs, ``--workers N`` pairs are read and
scored at once, each on one engine thread (decoding images is the slow part of a
folder run, and the engine's results do not depend on the thread count); a
single pair gets all N threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np

from ._cli_io import (
    InputError,
    format_records,
    guess_format,
    layout,
    pair_paths,
    read_array,
    read_pairs_csv,
    save_array,
    summary,
    summary_lines,
)

METRICS = ("ssim", "ms-ssim", "pixelwise")
TITLES = {"ssim": "SSIM", "ms-ssim": "MS-SSIM", "pixelwise": "per-pixel MS-SSIM"}


class UsageError(Exception):
    """Bad options or arguments: one line, exit status 2."""


# --------------------------------------------------------------------------- options


def _float_list(text):
    try:
        vals = [float(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return tuple(vals)


def _range(text):
    vals = _float_list(text)
    if len(vals) != 2 or not vals[0] < vals[1] or not all(np.isfinite(vals)):
        raise argparse.ArgumentTypeError(f"expected LO,HI with LO < HI, got {text!r}")
    return vals


def _alpha(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text}")
    return v


def add_parser(sub, positive_int, positive_float, workers):
    c = sub.add_parser(
        "compare",
        help="SSIM / MS-SSIM of two images, two folders or a list of pairs",
        description=(
            "Score DIST against REF.  Each of REF and DIST is a file or a folder: two files "
            "are one pair; two folders are paired by relative path (files without a partner "
            "are reported as failed rows); a file and a folder score the file against every "
            "image in the folder.  --pairs LIST.csv gives the pairs instead.  2-D arrays are "
            "grayscale; H x W x C arrays (C <= 4) colour (a picture's alpha channel is "
            "ignored); other 3-D arrays and multi-page TIFFs are volumes.  Integer images "
            "default to their dtype's range; float images need --data-range.  Exit status: "
            "0 every pair scored, 1 some pairs failed (each a row with its reason), 2 usage "
            "error."
        ),
    )
    c.add_argument("ref", metavar="REF", nargs="?", help="reference image or folder")
    c.add_argument("dist", metavar="DIST", nargs="?",
                   help="image or folder to score (gradients are with respect to it)")
    c.add_argument("--pairs", metavar="LIST.csv", default=None,
                   help="CSV of 'ref,dist' rows (paths relative to the CSV's folder) instead of REF DIST")
    c.add_argument("--glob", metavar="PATTERN", default=None,
                   help="in folders, only files matching PATTERN (on the name, or on the relative "
                   "path if it has a '/'); default: every known image/array type")
    c.add_argument("--match", choices=("path", "stem"), default="path",
                   help="pair folder files by relative path (default) or by relative path without "
                   "the extension (a.png with a.webp)")
    c.add_argument("--metric", choices=METRICS, default="ssim",
                   help="ssim (default), ms-ssim (Wang's pyramid) or pixelwise (per-pixel MS-SSIM "
                   "of Zhao et al.)")
    c.add_argument("--data-range", type=positive_float, default=None, metavar="R",
                   help="span of the values (default: the integer dtype's range)")
    c.add_argument("--channels", choices=("rgb", "gray", "each"), default="rgb",
                   help="colour images: rgb = mean of the channel scores (default), gray = score "
                   "the BT.601 luma 0.299 R + 0.587 G + 0.114 B, each = also one score per channel")
    # --- convention presets (issue 17)
    c.add_argument("--convention", choices=tuple(_conventions()), default=None, metavar="NAME",
                   help="a peer library's conventions (fastssim.conventions): "
                   + ", ".join(_conventions()) + "; the options below override it")
    # --- end convention presets
    w = c.add_argument_group("window (ssim, ms-ssim)")
    win = w.add_mutually_exclusive_group()
    win.add_argument("--gaussian", dest="window", action="store_const", const="gaussian",
                     help="Gaussian window, sigma 1.5, 11 taps (default)")
    win.add_argument("--uniform", dest="window", action="store_const", const="uniform",
                     help="uniform (box) window of --win-size taps")
    c.set_defaults(window=None)
    w.add_argument("--win-size", type=positive_int(1), default=None, metavar="N",
                   help="side of the uniform window (odd, default 7)")
    w.add_argument("--sigma", type=positive_float, default=None, metavar="S",
                   help="Gaussian sigma (default 1.5)")
    w.add_argument("--truncate", type=positive_float, default=None, metavar="T",
                   help="Gaussian radius in sigmas (default 3.5; also for pixelwise)")
    w.add_argument("--K1", type=positive_float, default=None, metavar="K1", help="default 0.01")
    w.add_argument("--K2", type=positive_float, default=None, metavar="K2", help="default 0.03")
    w.add_argument("--covariance", choices=("population", "sample"), default=None,
                   help="population (Wang, default) or sample (NP/(NP-1), scikit-image's default)")
    m = c.add_argument_group("ms-ssim")
    m.add_argument("--weights", type=_float_list, default=None, metavar="W1,W2,...",
                   help="one exponent per scale (default Wang's 5: 0.0448,0.2856,0.3001,0.2363,0.1333)")
    m.add_argument("--downsample", choices=("symmetric", "zero", "drop", "replicate"), default=None,
                   help="odd extents: symmetric (Wang, TensorFlow; default), zero (pytorch_msssim), "
                   "drop (torchmetrics), replicate (piq)")
    m.add_argument("--negative", choices=("clamp", "simple", "none"), default=None,
                   help="negative per-scale means: clamp at 0 (default), simple (m+1)/2, none")
    m.add_argument("--fit-scales", action="store_true",
                   help="small images use as many scales as fit instead of failing")
    pw = c.add_argument_group("pixelwise")
    pw.add_argument("--sigmas", type=_float_list, default=None, metavar="S1,S2,...",
                    help="Gaussian widths, increasing (default 0.5,1,2,4,8)")
    o = c.add_argument_group("output")
    o.add_argument("--format", choices=("table", "csv", "json", "jsonl"), default=None,
                   help="stdout/--output format (default: table, or from --output's extension)")
    o.add_argument("--output", metavar="FILE", default=None, help="write the results to FILE")
    o.add_argument("--worst", type=positive_int(0), default=3, metavar="K",
                   help="list the K lowest-scoring pairs in the summary (default 3)")
    o.add_argument("--heatmap", metavar="DIR", default=None,
                   help="write a PNG of each pair's map (colour bar, score in the title)")
    o.add_argument("--heatmap-overlay", type=_alpha, nargs="?", const=0.6, default=None,
                   metavar="ALPHA", help="blend the heatmap over the reference (opacity, default 0.6)")
    o.add_argument("--heatmap-range", type=_range, default=None, metavar="LO,HI",
                   help="colour bar range (default 0,1, widened to the map's values)")
    o.add_argument("--map", metavar="PATH", default=None,
                   help="save each same-size map: a folder (one file per pair), or for one pair "
                   "a file name")
    o.add_argument("--grad", metavar="PATH", default=None,
                   help="save the exact gradient of each score with respect to DIST (as --map)")
    o.add_argument("--array-format", choices=("npy", "tiff"), default="npy",
                   help="--map/--grad files: npy (default) or 32-bit float TIFF (needs tifffile)")
    c.add_argument("--workers", type=workers, default=None, metavar="N",
                   help="threads (default: all cores)")
    # --- Dask scheduler (issue 15)
    c.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="score a folder (or --pairs) run on the Dask cluster at ADDRESS (e.g. "
                   "tcp://host:8786; needs the dask extra); the workers read and write the "
                   "files, so they must see the same paths.  Same output as a local run")
    # --- end Dask scheduler
    c.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar or notes; a single pair prints only its score")
    return c


def _conventions():
    from ._conventions import conventions

    return conventions


def _check_convention(args):
    """--convention applies to ssim and ms-ssim, for a peer that has the metric."""
    if args.convention is None:
        return
    if args.metric == "pixelwise":
        raise UsageError("--convention applies to --metric ssim and ms-ssim")
    conv = _conventions()[args.convention]
    if args.metric == "ms-ssim" and conv.ms_ssim is None:
        raise UsageError(f"--convention {args.convention}: {conv.reference} has no MS-SSIM")


def _check_options(args):
    metric = args.metric
    _check_convention(args)
    if args.pairs is not None and (args.ref is not None or args.dist is not None):
        raise UsageError("give either REF DIST or --pairs LIST.csv, not both")
    if args.pairs is None and (args.ref is None or args.dist is None):
        raise UsageError("expected REF and DIST (files or folders), or --pairs LIST.csv")
    if args.pairs is not None and (args.glob is not None or args.match != "path"):
        raise UsageError("--glob and --match select files in folders; --pairs lists them itself")
    if metric == "pixelwise":
        for name, val in (("--gaussian/--uniform", args.window), ("--win-size", args.win_size),
                          ("--sigma", args.sigma)):
            if val is not None:
                raise UsageError(f"{name} does not apply to --metric pixelwise; use --sigmas")
    elif args.sigmas is not None:
        raise UsageError("--sigmas applies to --metric pixelwise")
    if metric != "ms-ssim":
        for name, val in (("--weights", args.weights), ("--downsample", args.downsample),
                          ("--negative", args.negative), ("--fit-scales", args.fit_scales or None)):
            if val is not None:
                raise UsageError(f"{name} applies to --metric ms-ssim")
    if args.win_size is not None and args.window != "uniform":
        raise UsageError("--win-size applies to --uniform; the Gaussian window is set by --sigma "
                         "and --truncate (default sigma 1.5, 11 taps)")
    if args.sigma is not None and args.window == "uniform":
        raise UsageError("--sigma applies to the Gaussian window, not --uniform")
    if metric == "ms-ssim" and (args.map is not None or args.heatmap is not None):
        raise UsageError("--metric ms-ssim has no per-pixel map (it is a pyramid of means): use "
                         "--metric pixelwise for a per-pixel MS-SSIM map, or --grad")
    if (args.heatmap_overlay is not None or args.heatmap_range is not None) and args.heatmap is None:
        raise UsageError("--heatmap-overlay and --heatmap-range need --heatmap DIR")
    if args.heatmap is not None:
        try:
            import PIL  # noqa: F401
        except ImportError:
            raise UsageError("--heatmap needs Pillow (pip install 'fastssim[cli]')") from None
    if args.array_format == "tiff" and (args.map or args.grad):
        try:
            import tifffile  # noqa: F401
        except ImportError:
            raise UsageError("--array-format tiff needs tifffile (pip install tifffile)") from None


def _metric_kwargs(args):
    conv = getattr(args, "convention", None)
    if conv is None:  # the defaults, written out (they are in the JSON/CSV options record)
        kw = dict(K1=0.01 if args.K1 is None else args.K1, K2=0.03 if args.K2 is None else args.K2,
                  covariance=args.covariance or "population")
    else:  # only what was given: the preset sets the rest
        kw = {k: v for k, v in (("K1", args.K1), ("K2", args.K2), ("covariance", args.covariance))
              if v is not None}
        kw["convention"] = conv
    if args.metric == "pixelwise":
        if args.sigmas is not None:
            kw["sigmas"] = args.sigmas
        if args.truncate is not None:
            kw["truncate"] = args.truncate
        return kw
    if args.window == "uniform":
        kw.update(window="uniform", win_size=args.win_size)
    else:
        if args.sigma is not None:
            kw["sigma"] = args.sigma
        if args.truncate is not None:
            kw["truncate"] = args.truncate
    if args.metric == "ms-ssim":
        if args.weights is not None:
            kw["weights"] = args.weights
        if conv is None:
            kw.update(downsample=args.downsample or "symmetric", negative=args.negative or "clamp",
                      fit_scales=args.fit_scales)
        else:
            kw.update({k: v for k, v in (("downsample", args.downsample),
                                         ("negative", args.negative)) if v is not None})
            if args.fit_scales:
                kw["fit_scales"] = True
    return kw


def _describe_window(args):
    if getattr(args, "convention", None) is not None:
        return f"convention {args.convention}"
    if args.metric == "pixelwise":
        s = args.sigmas or (0.5, 1, 2, 4, 8)
        return f"Gaussian sigmas {','.join(f'{v:g}' for v in s)}"
    if args.window == "uniform":
        n = args.win_size or 7
        return f"uniform {n}x{n} window"
    return f"Gaussian sigma {args.sigma or 1.5:g} window"


# --------------------------------------------------------------------------- one pair


def _data_range(ta, tb, args):
    """(data_range, its description) from --data-range or the files' integer dtypes
    (``ta``, ``tb``: the dtypes as read, before any conversion to luma)."""
    if args.data_range is not None:
        return args.data_range, f"{args.data_range:g}"
    conv = getattr(args, "convention", None)
    if (ta.kind == "f" or tb.kind == "f") and conv is not None:
        preset = _conventions()[conv].options("ssim" if args.metric == "ssim" else "ms_ssim")
        if preset.get("data_range") is not None:  # the peer's default, for float images
            dr = float(preset["data_range"])
            return dr, f"{dr:g} (convention {conv})"
    if ta.kind == "f" or tb.kind == "f":
        raise InputError(
            "floating-point images need --data-range (the span of their values, e.g. 1.0 or 255)"
        )
    if ta != tb:
        raise InputError(f"the images differ in dtype ({ta}, {tb}): pass --data-range")
    info = np.iinfo(ta)
    dr = float(info.max) - float(info.min)
    return dr, f"{dr:g} (from dtype {ta})"


def _score(args, a, b, cax, sdims, dr, want_map, want_grad, workers):
    """(score, per-channel scores or None, map or None, grad or None)."""
    import fastssim

    fn = {"ssim": fastssim.ssim, "ms-ssim": fastssim.ms_ssim,
          "pixelwise": fastssim.pixelwise_ms_ssim}[args.metric]
    kw = _metric_kwargs(args)
    kw.update(data_range=dr, spatial_dims=sdims, workers=workers,
              gradient="y" if want_grad else None)
    if want_map:
        kw["full"] = True
    each = args.channels == "each" and cax is not None
    if each:  # channels as a batch: one value per channel
        a, b = np.moveaxis(a, -1, 0), np.moveaxis(b, -1, 0)
    else:
        kw["channel_axis"] = cax
    try:
        res = fn(a, b, **kw)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from None
    value = res if not (want_map or want_grad) else res.value
    value = np.asarray(value, dtype=np.float64)
    smap = getattr(res, "map", None) if want_map else None
    grad = res.grad_y if want_grad else None
    if each:
        nch = value.shape[0]
        chans = [float(v) for v in value]
        score = float(value.mean())
        smap = np.moveaxis(smap, 0, -1) if smap is not None else None
        grad = np.moveaxis(grad, 0, -1) / nch if grad is not None else None
        return score, chans, smap, grad
    return float(value), None, smap, grad


def _display_map(smap, cax, sdims):
    """2-D map for the heatmap (channel mean; a volume's middle slice) and a note."""
    m = np.asarray(smap, dtype=np.float64)
    note = ""
    if cax is not None:
        m = m.mean(axis=-1)
    if sdims == 3:
        k = m.shape[0] // 2
        note = f", slice {k} of {m.shape[0]}"
        m = m[k]
    return m, note


def _gray(a, cax, sdims):
    g = np.asarray(a, dtype=np.float64)
    if cax is not None:
        g = g[..., :3] @ np.array([0.299, 0.587, 0.114]) if g.shape[-1] >= 3 else g.mean(-1)
    if sdims == 3:
        g = g[g.shape[0] // 2]
    lo, hi = np.nanmin(g), np.nanmax(g)
    return (g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)


def _out_path(spec, key, single):
    """File stem for a pair's --map/--grad output (no extension)."""
    if single and not (os.path.isdir(spec) or spec.endswith(("/", os.sep))):
        root, ext = os.path.splitext(spec)
        return root if ext.lower() in (".npy", ".tif", ".tiff") else spec
    return os.path.join(spec, key)


def score_pair(args, ref, dist, key, single, workers):
    """A result record for one pair.

    Raises InputError for a problem with the pair; the record as far as it got
    (shape, dtype...) is attached to the exception as ``record``.
    """
    rec = _failed(ref, dist, None)
    try:
        _score_into(rec, args, ref, dist, key, single, workers)
    except InputError as exc:
        rec["error"] = str(exc)
        exc.record = rec
        raise
    return rec


def _score_into(rec, args, ref, dist, key, single, workers):
    a, pa = read_array(ref)
    b, pb = read_array(dist)
    ta, tb = (np.dtype(np.uint8) if t.kind == "b" else t for t in (a.dtype, b.dtype))
    a, cax, sdims, notes = layout(a, ref, pa, args.channels)
    b, _, _, notes_b = layout(b, dist, pb, args.channels)
    rec["note"] = "; ".join(sorted(set(notes) | set(notes_b))) or None
    rec["dtype"] = str(a.dtype) if a.dtype == b.dtype else f"{a.dtype}/{b.dtype}"
    if a.shape != b.shape:
        raise InputError(f"the images differ in shape: {ref} {a.shape}, {dist} {b.shape} "
                         "(fastssim never resizes or crops)")
    rec["shape"] = "x".join(map(str, a.shape))
    dr, dr_text = _data_range(ta, tb, args)
    rec["data_range"] = dr
    want_map = args.map is not None or args.heatmap is not None
    want_grad = args.grad is not None
    score, chans, smap, grad = _score(args, a, b, cax, sdims, dr, want_map, want_grad, workers)
    rec.update(score=score, channels=chans)
    rec["_info"] = (a, cax, sdims, dr_text)
    written = []
    try:
        if args.map is not None:
            written.append(("map", save_array(_out_path(args.map, key, single), smap,
                                              args.array_format)))
        if args.grad is not None:
            written.append(("gradient", save_array(_out_path(args.grad, key, single), grad,
                                                   args.array_format)))
        if args.heatmap is not None:
            from . import _heatmap

            m, where = _display_map(smap, cax, sdims)
            path = os.path.join(args.heatmap, key + ".png")
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            bg = _gray(a, cax, sdims) if args.heatmap_overlay is not None else None
            title = f"{TITLES[args.metric]} {score:.4f}  {os.path.basename(dist)}{where}"
            _heatmap.render(path, m, title=title, vrange=args.heatmap_range, background=bg,
                            alpha=args.heatmap_overlay or 0.6, score=score)
            written.append(("heatmap", path))
    except OSError as exc:
        raise InputError(f"cannot write output for {dist}: {exc.strerror or exc}") from None
    rec["_written"] = written
    rec["status"] = "ok"
    rec["error"] = None


def _failed(ref, dist, reason):
    return {"ref": ref or "", "dist": dist or "", "status": "error", "score": None,
            "channels": None, "shape": None, "dtype": None, "data_range": None,
            "error": reason, "note": None}


# --------------------------------------------------------------------------- progress


class _Progress:
    """tqdm when installed, else a plain one-line bar; only on a terminal."""

    def __init__(self, total, enabled):
        self.total, self.done, self.bar = total, 0, None
        self.enabled = enabled
        self.lock = threading.Lock()
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            try:  # a terminal that reports no size (0 x 0: tqdm would hide the bar) gets 80 x 24
                cols = os.get_terminal_size(sys.stderr.fileno()).columns
            except (OSError, ValueError):
                cols = 0
            size = {"dynamic_ncols": True} if cols > 0 else {"ncols": 80, "nrows": 24}
            self.bar = tqdm(total=total, unit="pair", file=sys.stderr, desc="fastssim compare",
                            **size)
        else:
            self._draw()

    def _draw(self):
        width = 30
        filled = width * self.done // max(self.total, 1)
        pct = 100 * self.done // max(self.total, 1)
        sys.stderr.write(f"\rfastssim compare [{'#' * filled}{'.' * (width - filled)}] "
                         f"{self.done}/{self.total} pairs {pct:3d}%")
        sys.stderr.flush()

    def update(self):
        if not self.enabled:
            return
        with self.lock:
            self.done += 1
            if self.bar is not None:
                self.bar.update(1)
            else:
                self._draw()

    def close(self):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()


# --------------------------------------------------------------------------- run


def _options_record(args):
    o = {"metric": args.metric, "channels": args.channels, "data_range": args.data_range}
    o.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in _metric_kwargs(args).items()})
    return o


def _single(args, nthreads):
    """Two files: the original one-pair output; any problem is a usage error (2)."""
    try:
        rec = score_pair(args, args.ref, args.dist, os.path.splitext(os.path.basename(args.dist))[0],
                         True, nthreads)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    if args.format is None and args.output is None:
        a, cax, sdims, dr_text = rec["_info"]
        if args.quiet:
            print(f"{rec['score']:.12f}")
        else:
            for n in (rec["note"] or "").split("; "):
                if n:
                    print(f"note: {n}", file=sys.stderr)
            what = "volume" if sdims == 3 else "image"
            if cax is not None:
                what = (f"{a.shape[-1]}-channel {what}, channels "
                        + ("scored separately" if args.channels == "each" else "averaged"))
            print(f"{args.ref} vs {args.dist}: {rec['shape']} {rec['dtype']} {what}; "
                  f"data_range {dr_text}; {_describe_window(args)}")
            print(f"{TITLES[args.metric]} = {rec['score']:.12f}")
            if rec["channels"]:
                print("per channel: " + "  ".join(f"{v:.12f}" for v in rec["channels"]))
    else:
        _emit(args, [rec])
    if not args.quiet:
        for what, path in rec["_written"]:
            print(f"wrote {what} to {path}", file=sys.stderr)
    return 0


def _emit(args, records):
    fmt = args.format or (guess_format(args.output) if args.output else "table")
    summ = summary(records, args.worst)
    text = format_records(records, fmt, TITLES[args.metric], _options_record(args), summ)
    if args.output is not None:
        try:
            with open(args.output, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # `fastssim compare ... | head`: the reader left
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return
    if not args.quiet and (args.output is not None or fmt in ("csv", "jsonl")):
        for line in summary_lines(summ, TITLES[args.metric]):
            print(line, file=sys.stderr)


# --- Dask scheduler (issue 15)


def _cluster_job(args, ref, dist, key, workers):
    """One pair's record, computed in a Dask worker by the local run's own code
    (so the output is the same); the image it keeps for the single-pair
    printout stays in the worker."""
    try:
        rec = score_pair(args, ref, dist, key, False, workers)
    except InputError as exc:
        rec = exc.record
    except MemoryError:
        rec = _failed(ref, dist, "not enough memory for this pair")
    rec.pop("_info", None)
    return rec


def _connect(address):
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs Dask's distributed: pip install 'fastssim[dask]'") from None
    try:
        return Client(address, timeout=30, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"--scheduler {address}: cannot connect ({exc})") from None


def _run_on_cluster(args, pairs, todo, records, progress):
    """Score the pairs ``todo`` on the cluster at ``args.scheduler``, one task
    per pair (each reads its two files in the worker), into ``records``."""
    from distributed import as_completed as done

    client = _connect(args.scheduler)
    try:
        # engine threads per task: --workers if given, else 1 (the cluster's
        # workers already run tasks side by side, as fastssim.dask.score_files)
        per_task = 1 if args.workers is None else args.workers
        futures = {}
        for i in todo:
            ref, dist, key, _ = pairs[i]
            fut = client.submit(_cluster_job, args, ref, dist, key, per_task, pure=False,
                                key=f"fastssim-compare-{i}-{os.getpid()}-{id(records)}")
            futures[fut] = i
        for fut in done(list(futures), loop=client.loop):
            i = futures[fut]
            try:
                records[i] = fut.result()
            except Exception as exc:  # a worker lost, a failure outside the pair's own code
                ref, dist, _, _ = pairs[i]
                records[i] = _failed(ref, dist, f"cluster task failed: {type(exc).__name__}: {exc}")
            progress.update()
    finally:
        client.close()


# --- end Dask scheduler


def _unique_keys(pairs):
    """Output names: a repeated one (two list rows with the same DIST name) gets _2, _3..."""
    seen, out = {}, []
    for ref, dist, key, problem in pairs:
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append((ref, dist, key if n == 0 else f"{key}_{n + 1}", problem))
    return out


def run(args):
    from ._validation import resolve_workers

    _check_options(args)
    try:
        nthreads = resolve_workers(args.workers)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    if args.output is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise UsageError(f"cannot write {args.output}: no such folder")
    try:
        if args.pairs is not None:
            pairs = read_pairs_csv(args.pairs)
        else:
            if os.path.isfile(args.ref) and os.path.isfile(args.dist):
                if args.scheduler is not None:
                    raise UsageError("--scheduler runs folder comparisons (or --pairs LIST.csv); "
                                     "score a single pair without it")
                return _single(args, nthreads)
            pairs = pair_paths(args.ref, args.dist, args.glob, args.match)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    for spec, opt in ((args.map, "--map"), (args.grad, "--grad")):
        if spec is not None and os.path.exists(spec) and not os.path.isdir(spec):
            raise UsageError(f"{opt} {spec}: expected a folder for a run of several pairs")
    pairs = _unique_keys(pairs)
    if not pairs:
        raise UsageError("no files to compare" + (f" match --glob {args.glob!r}" if args.glob else ""))

    records = [None] * len(pairs)
    todo = []
    for i, (ref, dist, key, problem) in enumerate(pairs):
        if problem is not None:
            records[i] = _failed(ref, dist, problem)
        else:
            todo.append(i)
    pool = max(1, min(nthreads, len(todo)))
    per_pair = max(1, nthreads // pool)
    progress = _Progress(len(pairs), enabled=not args.quiet and sys.stderr.isatty())
    for i in range(len(pairs)):
        if records[i] is not None:
            progress.update()
    if args.scheduler is not None:
        try:
            _run_on_cluster(args, pairs, todo, records, progress)
        finally:
            progress.close()
        _emit(args, records)
        return 0 if all(r["status"] == "ok" for r in records) else 1

    def job(i):
        ref, dist, key, _ = pairs[i]
        try:
            return score_pair(args, ref, dist, key, False, per_pair)
        except InputError as exc:
            return exc.record
        except MemoryError:
            return _failed(ref, dist, "not enough memory for this pair")

    try:
        with ThreadPoolExecutor(max_workers=pool) as ex:
            futures = {ex.submit(job, i): i for i in todo}
            for fut in as_completed(futures):
                records[futures[fut]] = fut.result()
                progress.update()
    finally:
        progress.close()
    _emit(args, records)
    return 0 if all(r["status"] == "ok" for r in records) else 1
