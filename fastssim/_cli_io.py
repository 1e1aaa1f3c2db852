"""Reading images and arrays for the command line, pairing folders, writing results.

Everything here turns a problem with one input file into an :class:`InputError`
whose message is one line naming the file, so that a folder run can report it as
a failed row and a single-pair run as a one-line error.  Nothing here imports an
image library at import time: Pillow, imageio, tifffile and OpenCV are optional
and imported when a file needs them.

Reading rules (no silent conversion that loses information):

- ``.npy`` / ``.npz``: NumPy, header checked against the file size first (a
  header that claims more data than the file holds is refused before anything
  is allocated); an ``.npz`` must hold exactly one array.
- ``.tif`` / ``.tiff``: tifffile when installed (8/16/32-bit integer and float,
  multi-page files become volumes), else Pillow.
- PNG, JPEG, BMP, GIF, WebP: Pillow (imageio as a fallback).  16-bit grayscale
  PNGs stay uint16.  Pillow reads 16-bit *colour* PNGs as 8-bit; those are read
  with OpenCV when it is installed and refused otherwise.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import os
import zipfile

import numpy as np

NUMPY_EXTS = (".npy", ".npz")
TIFF_EXTS = (".tif", ".tiff")
PICTURE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp") + TIFF_EXTS
KNOWN_EXTS = NUMPY_EXTS + PICTURE_EXTS

# ITU-R BT.601 luma, as MATLAB's rgb2gray (the Y of Y'CbCr that codecs score).
LUMA = np.array([0.299, 0.587, 0.114])


class InputError(Exception):
    """A problem with one input file or option; its message is one line."""


def _one_line(exc) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# --------------------------------------------------------------------------- reading


def _human_bytes(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n} bytes"  # pragma: no cover


def _npy_header(f, path):
    """(shape, dtype, fortran) from an open .npy stream, checked."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            # version 3.0 (utf-8 field names): let np.load parse it
            raise InputError(f"{path}: .npy format version {version} is not supported")
    except InputError:
        raise
    except Exception as exc:  # EOFError on an empty or cut header, ValueError on garbage
        raise InputError(f"{path}: not a valid .npy file ({_one_line(exc)})") from None
    if dtype.hasobject:
        raise InputError(f"{path}: holds Python objects (dtype {dtype}); expected a numeric array")
    return shape, dtype, fortran


def _read_npy(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        shape, dtype, _ = _npy_header(f, path)
        need = math.prod(shape) * dtype.itemsize
        have = size - f.tell()
    if need != have:
        raise InputError(
            f"{path}: truncated or corrupt .npy: its header says shape {shape} {dtype} "
            f"({_human_bytes(need)}) but the file holds {_human_bytes(have)} of data"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError) as exc:
        raise InputError(f"{path}: cannot read .npy ({_one_line(exc)})") from None


def _read_npz(path):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a valid .npz file ({_one_line(exc)})") from None
    with zf:
        names = [n for n in zf.namelist() if n.endswith(".npy")]
        if len(names) != 1:
            shown = ", ".join(n[:-4] for n in names[:5]) + (", ..." if len(names) > 5 else "")
            raise InputError(
                f"{path}: expected an .npz holding one array, found {len(names)}"
                + (f" ({shown})" if names else "")
                + "; save the image alone (np.savez(f, image))"
            )
        info = zf.getinfo(names[0])
        try:
            with zf.open(names[0]) as f:
                shape, dtype, fortran = _npy_header(f, f"{path}[{names[0][:-4]}]")
                need = math.prod(shape) * dtype.itemsize
                header = f.tell()
                if info.file_size - header != need:
                    raise InputError(
                        f"{path}: corrupt .npz: array {names[0][:-4]!r} claims shape {shape} "
                        f"{dtype} ({_human_bytes(need)}) but holds "
                        f"{_human_bytes(info.file_size - header)}"
                    )
                data = f.read(need)
        except InputError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, MemoryError) as exc:
            raise InputError(f"{path}: cannot read .npz ({_one_line(exc)})") from None
    if len(data) != need:
        raise InputError(f"{path}: corrupt .npz: array data cut short")
    a = np.frombuffer(data, dtype=dtype)
    return a.reshape(shape[::-1]).T if fortran else a.reshape(shape)


def _png_ihdr(path):
    """(bit depth, colour type) of a PNG, or None if the header is not a PNG's."""
    with open(path, "rb") as f:
        head = f.read(29)
    if len(head) < 29 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _read_with_opencv(path, why):
    try:
        import cv2
    except ImportError:
        raise InputError(
            f"{path}: {why}; Pillow and imageio read it as 8-bit, so install OpenCV "
            "(pip install opencv-python-headless) or save it as 16-bit TIFF or .npy"
        ) from None
    a = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if a is None:
        raise InputError(f"{path}: OpenCV cannot read this file")
    if a.ndim == 3:  # OpenCV's BGR(A) -> RGB(A)
        a = a[..., [2, 1, 0, 3][: a.shape[-1]]] if a.shape[-1] in (3, 4) else a
    return np.ascontiguousarray(a)


def _pil_array(im):
    mode = im.mode
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    a = np.asarray(im)
    if a.dtype.byteorder not in ("=", "|"):
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def _read_pillow(path, ext):
    from PIL import Image

    try:
        with Image.open(path) as im:
            n = getattr(im, "n_frames", 1)
            if n > 1 and ext not in TIFF_EXTS:
                raise InputError(f"{path}: has {n} frames (an animation); expected one image")
            frames = []
            for k in range(n):
                im.seek(k)
                frames.append(_pil_array(im))
            bits = None
            if ext == ".png":
                bits = _png_ihdr(path)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{path}: not enough memory to decode it") from None
    except Exception as exc:  # decoders raise many types for bad files (OSError,
        # SyntaxError, struct.error, DecompressionBombError...): all are about the file
        raise InputError(f"{path}: cannot read image ({_one_line(exc)})") from None
    if len(frames) > 1:
        if any(f.shape != frames[0].shape or f.dtype != frames[0].dtype for f in frames):
            raise InputError(f"{path}: its {len(frames)} pages differ in size or type")
        return np.stack(frames)
    a = frames[0]
    if bits is not None and bits[0] == 16 and a.dtype == np.int32:
        a = a.astype(np.uint16)  # older Pillow: 16-bit gray PNG in mode 'I'
    return a


def _read_imageio(path):
    import imageio.v3 as iio

    try:
        return np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises many types for bad files
        raise InputError(f"{path}: cannot read image ({_one_line(exc)})") from None


def _read_tiff(path):
    try:
        import tifffile
    except ImportError:
        return None
    try:
        return np.asarray(tifffile.imread(path))
    except Exception as exc:  # tifffile raises many types for bad files
        raise InputError(f"{path}: cannot read TIFF ({_one_line(exc)})") from None


def read_array(path):
    """Read one input file.

    Returns
    -------
    array : ndarray
    picture : bool
        True for picture files (whose 2nd/4th channel of 2/4 is alpha), False
        for .npy/.npz and TIFF volumes.

    Raises
    ------
    InputError
        With a one-line message naming the file.
    """
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, expected a file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in KNOWN_EXTS:
        raise InputError(
            f"{path}: unknown file type {ext or '(none)'!r}; expected one of "
            f"{', '.join(KNOWN_EXTS)}"
        )
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise InputError(f"{path}: empty file")
    try:
        if ext == ".npy":
            return _read_npy(path), False
        if ext == ".npz":
            return _read_npz(path), False
        if ext in TIFF_EXTS:
            a = _read_tiff(path)
            if a is not None:
                return a, a.ndim == 3 and a.shape[-1] in (2, 4)
        if ext == ".png":
            ihdr = _png_ihdr(path)
            if ihdr is not None and ihdr[0] == 16 and ihdr[1] in (2, 4, 6):
                return _read_with_opencv(path, "a 16-bit colour PNG"), True
        try:
            import PIL  # noqa: F401
        except ImportError:
            try:
                import imageio  # noqa: F401
            except ImportError:
                raise InputError(
                    f"{path}: reading {ext} files needs Pillow (pip install 'fastssim[cli]'), "
                    "or save the image as .npy"
                ) from None
            return _read_imageio(path), True
        return _read_pillow(path, ext), True
    except PermissionError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except MemoryError:
        raise InputError(f"{path}: not enough memory to read it") from None


# --------------------------------------------------------------------------- layout


def layout(a, path, picture, channels):
    """Arrange one image for scoring.

    Returns ``(array, channel_axis, spatial_dims, notes)``: 2-D images are
    grayscale; ``H x W x C`` (C <= 4) colour; other 3-D arrays volumes;
    ``D x H x W x C`` colour volumes.  A picture's alpha channel is dropped.
    ``channels='gray'`` turns 3-channel colour into BT.601 luma (float64).
    """
    notes = []
    if a.dtype.kind not in "biuf":
        raise InputError(f"{path}: dtype {a.dtype} is not a real number type")
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if a.ndim == 2:
        return a, None, 2, notes
    if a.ndim in (3, 4) and a.shape[-1] <= 4:
        sdims = a.ndim - 1
        if picture and a.shape[-1] in (2, 4):
            a = a[..., :-1]
            notes.append("alpha channel ignored")
        if a.shape[-1] == 1:
            return a[..., 0], None, sdims, notes
        if channels == "gray":
            if a.shape[-1] != 3:
                raise InputError(
                    f"{path}: --channels gray needs 3 colour channels, got {a.shape[-1]}"
                )
            return a @ LUMA, None, sdims, notes
        return a, -1, sdims, notes
    if a.ndim == 3:
        return a, None, 3, notes
    raise InputError(
        f"{path}: expected a 2-D image, an H x W x C image (C <= 4), a 3-D volume or "
        f"a D x H x W x C volume, got shape {a.shape}"
    )


# --------------------------------------------------------------------------- pairing


def _walk(folder, pattern):
    """Sorted relative POSIX paths of the files under ``folder``."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if pattern is None:
                if os.path.splitext(name)[1].lower() not in KNOWN_EXTS:
                    continue
            elif not (fnmatch.fnmatchcase(rel, pattern) if "/" in pattern
                      else fnmatch.fnmatchcase(name, pattern)):
                continue
            out.append(rel)
    return sorted(out)


def pair_paths(ref, dist, pattern=None, match="path"):
    """Pairs to score from two paths (files or folders).

    Returns a list of ``(ref_path, dist_path, key, problem)``: ``key`` names the
    pair's outputs (the relative path in folder runs), ``problem`` is None or
    why the pair cannot be scored (a file without a partner).

    file + file: one pair.  folder + folder: matched by relative path (or by
    relative path without its extension, ``match='stem'``).  file + folder: the
    reference against every file of the folder.  folder + file: an error.
    """
    for p, side in ((ref, "REF"), (dist, "DIST")):
        if not os.path.exists(p):
            raise InputError(f"{side} {p}: no such file or folder")
    rdir, ddir = os.path.isdir(ref), os.path.isdir(dist)
    if not rdir and not ddir:
        return [(ref, dist, os.path.splitext(os.path.basename(dist))[0], None)]
    if rdir and not ddir:
        raise InputError(
            f"REF {ref} is a folder but DIST {dist} is a file: give two folders, two files, "
            "or a reference file and a folder of distorted images"
        )
    dfiles = _walk(dist, pattern)
    if not rdir:
        return [(ref, os.path.join(dist, rel), os.path.splitext(rel)[0], None) for rel in dfiles]
    rfiles = _walk(ref, pattern)

    def keyed(files):
        groups = {}
        for rel in files:
            k = os.path.splitext(rel)[0] if match == "stem" else rel
            groups.setdefault(k, []).append(rel)
        return groups

    rk, dk = keyed(rfiles), keyed(dfiles)
    pairs = []
    for k in sorted(set(rk) | set(dk)):
        rs, ds = rk.get(k, []), dk.get(k, [])
        name = os.path.splitext(k)[0] if match == "path" else k
        rp = os.path.join(ref, rs[0]) if rs else None
        dp = os.path.join(dist, ds[0]) if ds else None
        if len(rs) > 1 or len(ds) > 1:
            many = rs if len(rs) > 1 else ds
            pairs.append((rp, dp, name, f"ambiguous match: {', '.join(many)} share the name {k!r}"))
        elif not ds:
            pairs.append((rp, None, name, f"no partner in DIST {dist}"))
        elif not rs:
            pairs.append((None, dp, name, f"no partner in REF {ref}"))
        else:
            pairs.append((rp, dp, name, None))
    return pairs


_HEADERS = {("ref", "dist"), ("reference", "distorted"), ("ref", "test"), ("reference", "test")}


def read_pairs_csv(path):
    """Pairs from a two-column CSV (``ref,dist``; relative paths are relative to
    the CSV's folder; a header row ``ref,dist`` and lines starting with ``#`` are
    skipped).  Raises InputError for a malformed file (a usage error)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--pairs {path}: cannot read ({_one_line(exc)})") from None
    base = os.path.dirname(os.path.abspath(path))
    pairs = []
    for i, row in enumerate(rows, 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 2:
            raise InputError(f"--pairs {path}: line {i}: expected 2 columns (ref,dist), got {len(row)}")
        r, d = (c.strip() for c in row)
        if not pairs and i == next(j for j, rr in enumerate(rows, 1) if rr) and \
                (r.lower(), d.lower()) in _HEADERS:
            continue
        rp = r if os.path.isabs(r) else os.path.join(base, r)
        dp = d if os.path.isabs(d) else os.path.join(base, d)
        pairs.append((rp, dp, os.path.splitext(os.path.basename(d))[0], None))
    if not pairs:
        raise InputError(f"--pairs {path}: no pairs in the file")
    return pairs


# --------------------------------------------------------------------------- saving arrays


def save_array(path_noext, arr, fmt):
    """Save ``arr`` as ``path_noext + '.npy'`` or ``'.tif'`` (32-bit float TIFF);
    returns the path written."""
    os.makedirs(os.path.dirname(os.path.abspath(path_noext)), exist_ok=True)
    if fmt == "tiff":
        import tifffile

        path = path_noext + ".tif"
        tifffile.imwrite(path, np.ascontiguousarray(arr, dtype=np.float32))
    else:
        path = path_noext + ".npy"
        np.save(path, arr)
    return path


# --------------------------------------------------------------------------- results


def _fmt(v):
    return "" if v is None else (f"{v:.6f}" if isinstance(v, float) else str(v))


def columns(records):
    """The columns of a run's rows: fixed ones plus one per channel in 'each' mode."""
    nch = max((len(r["channels"]) for r in records if r.get("channels")), default=0)
    return (["ref", "dist", "status", "score"] + [f"channel_{c}" for c in range(nch)]
            + ["shape", "dtype", "data_range", "error", "note"])


def _row(rec, cols):
    out = {}
    for c in cols:
        if c.startswith("channel_"):
            ch = rec.get("channels") or []
            k = int(c.split("_")[1])
            out[c] = ch[k] if k < len(ch) else None
        else:
            out[c] = rec.get(c)
    return out


def summary(records, worst=3):
    """count, failed, mean, median, min and the ``worst`` lowest-scoring pairs."""
    ok = [r for r in records if r["status"] == "ok" and r["score"] is not None]
    scores = np.array([r["score"] for r in ok], dtype=np.float64)
    finite = scores[np.isfinite(scores)]
    s = {"pairs": len(records), "scored": len(ok), "failed": len(records) - len(ok)}
    if finite.size:
        s.update(mean=float(finite.mean()), median=float(np.median(finite)),
                 min=float(finite.min()), max=float(finite.max()))
    else:
        s.update(mean=None, median=None, min=None, max=None)
    s["nan"] = int(scores.size - finite.size)
    order = sorted((r for r in ok if math.isfinite(r["score"])), key=lambda r: r["score"])
    s["worst"] = [{"ref": r["ref"], "dist": r["dist"], "score": r["score"]} for r in order[:worst]]
    return s


def summary_lines(s, metric):
    lines = [f"{s['scored']} of {s['pairs']} pairs scored"
             + (f", {s['failed']} failed" if s["failed"] else "")
             + (f", {s['nan']} NaN" if s["nan"] else "")]
    if s["mean"] is not None:
        lines.append(f"{metric}: mean {s['mean']:.6f}  median {s['median']:.6f}  "
                     f"min {s['min']:.6f}  max {s['max']:.6f}")
        if s["worst"]:
            lines.append("worst: " + "; ".join(f"{w['dist']} {w['score']:.6f}" for w in s["worst"]))
    return lines


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def format_records(records, fmt, metric, options, summ):
    """The whole output of a run as text, in ``fmt``: table, csv, json or jsonl."""
    cols = columns(records)
    if fmt == "json":
        doc = {"metric": metric, "options": options,
               "pairs": [{k: _json_safe(v) for k, v in _row(r, cols).items()} for r in records],
               "summary": {k: _json_safe(v) for k, v in summ.items()}}
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps({k: _json_safe(v) for k, v in _row(r, cols).items()}) + "\n"
                       for r in records)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in records:
            row = _row(r, cols)
            w.writerow(["" if row[c] is None else (repr(row[c]) if isinstance(row[c], float)
                                                   else row[c]) for c in cols])
        return buf.getvalue()
    # table: the reference and score columns first, the error text last
    tcols = [c for c in cols if c not in ("data_range", "note")]
    if not any(r.get("error") for r in records):
        tcols.remove("error")
    head = {"ref": "REF", "dist": "DIST", "status": "STATUS", "score": metric.upper(),
            "shape": "SHAPE", "dtype": "DTYPE", "error": "ERROR"}
    cells = [[head.get(c, c.replace("channel_", "CH")) for c in tcols]]
    for r in records:
        row = _row(r, tcols)
        cells.append([_fmt(row[c]) for c in tcols])
    widths = [max(len(line[i]) for line in cells) for i in range(len(tcols))]
    numeric = {i for i, c in enumerate(tcols) if c == "score" or c.startswith("channel_")}
    lines = []
    for line in cells:
        parts = [(v.rjust(w) if i in numeric else v.ljust(w)) for i, (v, w) in
                 enumerate(zip(line, widths))]
        lines.append("  ".join(parts).rstrip())
    lines.append("")
    lines.extend(summary_lines(summ, metric))
    return "\n".join(lines) + "\n"


def guess_format(path):
    ext = os.path.splitext(path)[1].lower()
    return {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(ext, "table")


__all__ = ["InputError", "read_array", "layout", "pair_paths", "read_pairs_csv", "save_array",
           "format_records", "summary", "summary_lines", "guess_format"]
