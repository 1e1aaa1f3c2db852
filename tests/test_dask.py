"""fastssim.dask against the in-memory functions, with real Dask (issue 14).

Reference: the in-memory ``fastssim.ssim`` / ``ms_ssim`` / ``pixelwise_ms_ssim``
on the same data (their values, maps and gradients are checked against
scikit-image and central finite differences elsewhere in the suite).

Tolerances.  float64: values to 1e-12 relative (the issue's bound; measured
<= 3e-16: only the order of the float64 additions of the per-chunk sums
differs), maps and gradients to 1e-12 of their largest magnitude (measured
<= 3e-15; each chunk's engine call takes its moments about its own shift, a
rounding-level change).  float32: the suite's float32 bounds (value rtol
1e-6, map atol 4e-6 as test_batch_api's two engine paths, gradient 1e-5 of
max|grad|).  Results on two schedulers for one chunking: bitwise equal.
float32 with ``shift='image'`` (the whole image's per-plane shifts): maps
bitwise equal to the in-memory maps; with the default ``shift='block'``:
against the float64 in-memory result, no farther from it than the in-memory
float32 call (test_float32_block_shifts_nearer_float64_than_in_memory).

Schedulers: Dask's synchronous scheduler, and a distributed.LocalCluster
with 2 worker processes (one thread each), started and closed by a
module-scoped fixture.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import fastssim  # noqa: E402
import fastssim.dask as fdask  # noqa: E402

from helpers import pair  # noqa: E402

REL = 1e-12
# float32 values: the maps equal the in-memory maps bit for bit (the check that
# catches a chunk's own shift: it moved map samples by up to 9e-6), but on the
# AVX2 and baseline SIMD paths a block's value pass (and the pyramid's per-block
# sums) round some float32 samples of its region differently from the whole
# image's: measured up to 2.1e-9 (SSIM) and 7.3e-9 (MS-SSIM) relative on AVX2,
# 0 on AVX-512.  Before this check existed the tolerance here was 1e-6.
F32_REL = 1e-8


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=40)
    cl = distributed.Client(cluster)
    try:
        yield cl
    finally:
        cl.close()
        cluster.close()


def sync(*objs):
    return dask.compute(*objs, scheduler="synchronous")


def close(a, b, rel=REL):
    """a equals the reference b to rel of b's largest magnitude (same shape, dtype)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    np.testing.assert_allclose(a, b, rtol=0, atol=rel * max(np.abs(b).max(), 1e-300))


def check_result(got, ref, rel=REL):
    for g, r in zip(got, ref):
        if r is None:
            assert g is None
        else:
            close(g, r, rel)


# chunkings of a 151 x 137 image: one chunk, even, odd, narrower than the
# 11-tap window (merged), one axis unchunked, one chunk of 1 px at the end
CHUNKS = [(151, 137), (64, 64), (33, 50), (7, 45), (151, 5), (150, 136)]


@pytest.mark.parametrize("chunks", CHUNKS)
def test_ssim_value_map_gradient_match_in_memory(chunks):
    x, y = pair((151, 137), seed=1)
    ref = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both")
    # y chunked differently from x: aligned to x's chunks
    r = fdask.ssim(da.from_array(x, chunks=chunks), da.from_array(y, chunks=(40, 70)),
                   data_range=1.0, full=True, gradient="both")
    got = sync(*r)
    np.testing.assert_allclose(got[0], ref.value, rtol=REL)
    check_result(got[1:], ref[1:])


@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("window", [dict(), dict(window="uniform", win_size=7),
                                    dict(covariance="sample", sigma=2.0)])
def test_ssim_options(border, window):
    x, y = pair((90, 101), seed=2)
    ref = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="x", border=border, **window)
    r = fdask.ssim(da.from_array(x, chunks=(31, 17)), y, data_range=1.0, full=True,
                   gradient="x", border=border, **window)
    got = sync(*r)
    np.testing.assert_allclose(got[0], ref.value, rtol=REL)
    check_result(got[1:], ref[1:])


def test_ssim_volume_and_batch_chunked_together():
    x, y = pair((2, 40, 37, 45), seed=3)
    ref = fastssim.ssim(x, y, data_range=1.0, spatial_dims=3, full=True, gradient="y")
    r = fdask.ssim(da.from_array(x, chunks=(1, 13, 20, 16)), da.from_array(y, chunks=(2, 40, 17, 45)),
                   data_range=1.0, spatial_dims=3, full=True, gradient="y")
    got = sync(*r)
    assert got[0].shape == (2,)
    np.testing.assert_allclose(got[0], ref.value, rtol=REL)
    check_result(got[1:], ref[1:])


@pytest.mark.parametrize("cax", [-1, 1])
def test_ssim_colour_uint8(cax):
    x, y = pair((3, 70, 66, 3), dtype=np.uint8, seed=4)
    if cax == 1:
        x, y = np.moveaxis(x, -1, 1).copy(), np.moveaxis(y, -1, 1).copy()
    ref = fastssim.ssim(x, y, channel_axis=cax, full=True, gradient="both", border="valid")
    chunks = (2, 33, 20, 3) if cax == -1 else (2, 1, 33, 20)  # channels split: kept whole
    r = fdask.ssim(da.from_array(x, chunks=chunks), y, channel_axis=cax, full=True,
                   gradient="both", border="valid")
    got = sync(*r)
    np.testing.assert_allclose(got[0], ref.value, rtol=REL)
    check_result(got[1:], ref[1:])


def ramp_pair(shape, seed):
    """float32 data whose chunks have different means (a ramp plus noise): a
    chunk's own per-plane shift would differ from the whole image's."""
    rng = np.random.default_rng(seed)
    ramp = sum(np.linspace(0, 3 - k, n).reshape([-1 if i == k else 1 for i in range(len(shape))])
               for k, n in enumerate(shape))
    x = (ramp + rng.random(shape)).astype(np.float32)
    return x, (x + 0.3 * rng.standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("chunks", [(40, 37), (64, 64), (200, 30), (17, 190)])
def test_float32_maps_equal_in_memory_bitwise(chunks):
    """float32, ``shift='image'``: every block takes its moments about the whole
    image's per-plane shift (the in-memory engine's), so the map is the in-memory map bit for
    bit and the value differs only by the order of the float64 additions
    (1e-12 relative; a chunk's own shift gave 3e-9 and map differences of
    9e-6 on this ramp; the per-pixel MS-SSIM's value: see below).  The gradient: 1e-6 of max|grad| (measured 2e-7: the
    adjoint's regions are the block's)."""
    x, y = ramp_pair((200, 190), seed=3)
    X, Y = da.from_array(x, chunks=chunks), da.from_array(y, chunks=chunks)
    ref = fastssim.ssim(x, y, data_range=4.0, full=True, gradient="x")
    got = sync(*fdask.ssim(X, Y, data_range=4.0, full=True, gradient="x", shift="image"))
    np.testing.assert_allclose(got[0], ref.value, rtol=F32_REL)
    assert got[1].dtype == got[2].dtype == np.float32
    np.testing.assert_array_equal(got[1], ref.map)
    np.testing.assert_allclose(got[2], ref.grad_x, rtol=0, atol=1e-6 * np.abs(ref.grad_x).max())
    ref = fastssim.pixelwise_ms_ssim(x, y, data_range=4.0, full=True)
    got = sync(*fdask.pixelwise_ms_ssim(X, Y, data_range=4.0, full=True, shift="image")[:2])
    # the value sums parts of the 57-tap windows' reflected border per region:
    # 1e-8 (measured 6e-10 with chunks of 64, 0 with the others)
    np.testing.assert_allclose(got[0], ref.value, rtol=1e-8)
    np.testing.assert_array_equal(got[1], ref.map)
    ref = fastssim.ms_ssim(x, y, data_range=4.0, gradient="y")
    got = sync(*fdask.ms_ssim(X, Y, data_range=4.0, gradient="y", shift="image")[:3])
    np.testing.assert_allclose(got[0], ref.value, rtol=F32_REL)
    np.testing.assert_allclose(got[2], ref.grad_y, rtol=0, atol=1e-6 * np.abs(ref.grad_y).max())


@pytest.mark.parametrize("chunks", [(40, 37), (64, 64), (17, 190)])
def test_float32_block_shifts_nearer_float64_than_in_memory(chunks):
    """float32, ``shift='block'`` (the default): each block's moments about its
    own shift.  Reference: the float64 in-memory result on the same (float32)
    data.  The map and gradient are within the suite's float32 bounds of it
    (map 4e-6; gradient 1e-5 of max|grad|; measured 2.5e-6 and 6.4e-7) and no
    farther from it than the in-memory float32 call's (measured 9.1e-6 and
    2e-6 on this ramp, whose planes' mean is far from most blocks'); values:
    the suite's float32 rtol 1e-6 (measured <= 7.6e-9; in memory 9.8e-9)."""
    x, y = ramp_pair((200, 190), seed=3)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    X, Y = da.from_array(x, chunks=chunks), da.from_array(y, chunks=chunks)
    ref = fastssim.ssim(x64, y64, data_range=4.0, full=True, gradient="x")
    mem = fastssim.ssim(x, y, data_range=4.0, full=True, gradient="x")
    got = sync(*fdask.ssim(X, Y, data_range=4.0, full=True, gradient="x"))
    assert got[1].dtype == got[2].dtype == np.float32
    np.testing.assert_allclose(got[0], ref.value, rtol=1e-6)
    gmax = np.abs(ref.grad_x).max()
    err_map, err_grad = np.abs(got[1] - ref.map).max(), np.abs(got[2] - ref.grad_x).max()
    assert err_map <= 4e-6 and err_map <= np.abs(mem.map - ref.map).max(), err_map
    assert err_grad <= 1e-5 * gmax and err_grad <= np.abs(mem.grad_x - ref.grad_x).max(), err_grad
    ref = fastssim.ms_ssim(x64, y64, data_range=4.0, gradient="y")
    got = sync(*fdask.ms_ssim(X, Y, data_range=4.0, gradient="y")[:3])
    np.testing.assert_allclose(got[0], ref.value, rtol=1e-6)
    np.testing.assert_allclose(got[2], ref.grad_y, rtol=0, atol=1e-5 * np.abs(ref.grad_y).max())
    ref = fastssim.pixelwise_ms_ssim(x64, y64, data_range=4.0, full=True)
    got = sync(*fdask.pixelwise_ms_ssim(X, Y, data_range=4.0, full=True)[:2])
    np.testing.assert_allclose(got[0], ref.value, rtol=1e-6)
    np.testing.assert_allclose(got[1], ref.map, rtol=0, atol=4e-6)


def test_float32_rgb_volume_shifts_per_plane():
    """Per-plane shifts of a chunked colour stack: as above."""
    x, y = ramp_pair((3, 70, 66, 3), seed=4)
    X = da.from_array(x, chunks=(2, 30, 25, 3))
    ref = fastssim.ssim(x, y, data_range=4.0, channel_axis=-1, full=True)
    got = sync(*fdask.ssim(X, y, data_range=4.0, channel_axis=-1, full=True, shift="image")[:2])
    np.testing.assert_allclose(got[0], ref.value, rtol=F32_REL)
    np.testing.assert_array_equal(got[1], ref.map)


def _avx2_path():
    from fastssim import _engine
    return _engine.simd_path().startswith("x86-64-v3")


@pytest.mark.xfail(condition=_avx2_path(), strict=True,
                   reason="issue 14, open: on the AVX2 path a chunked float32 volume's map "
                   "differs from the in-memory map by up to 4.3e-6 (equal bit for bit on "
                   "AVX-512 and baseline). Localised, not explained: only 3-D blocks whose "
                   "halo'd extent along the last axis is 16 or 17 (6-7 valid outputs, fewer "
                   "than one 8-lane float32 vector) differ, on all their valid columns; "
                   "last-axis chunks of 13, 14, 16, 18 and 2-D blocks of those widths agree")
def test_float32_volume_shifts_per_plane():
    v, w = ramp_pair((30, 33, 35), seed=5)
    ref = fastssim.ssim(v, w, data_range=4.0, spatial_dims=3, full=True)
    got = sync(*fdask.ssim(da.from_array(v, chunks=(11, 15, 12)), w, data_range=4.0,
                           spatial_dims=3, full=True, shift="image")[:2])
    np.testing.assert_allclose(got[0], ref.value, rtol=F32_REL)
    np.testing.assert_array_equal(got[1], ref.map)


def test_stack_chunked_along_n_gives_one_value_per_pair():
    x, y = pair((10, 60, 62), seed=6)
    X = da.from_array(x, chunks=(3, 60, 62))
    for f, kw in ((fdask.ssim, {}), (fdask.pixelwise_ms_ssim, {}),
                  (fdask.ms_ssim, dict(weights=(0.5, 0.5)))):
        v = f(X, y, data_range=1.0, **kw)
        assert isinstance(v, da.Array) and v.shape == (10,) and v.chunks == ((3, 3, 3, 1),)
        np.testing.assert_allclose(v.compute(scheduler="synchronous"),
                                   getattr(fastssim, f.__name__)(x, y, data_range=1.0, **kw),
                                   rtol=REL)
    r = fdask.ms_ssim(X, y, data_range=1.0, weights=(0.5, 0.5), gradient="both", return_scales=True)
    ref = fastssim.ms_ssim(x, y, data_range=1.0, weights=(0.5, 0.5), gradient="both",
                           return_scales=True)
    check_result(sync(*r), ref)


CONV = ["symmetric", "zero", "drop", "replicate"]


@pytest.mark.parametrize("downsample", CONV)
@pytest.mark.parametrize("chunks", [(171, 165), (64, 64), (37, 50), (9, 170)])
def test_ms_ssim_pyramid_across_chunks(downsample, chunks):
    # 171 x 165: odd extents at several scales (171, 86, 43, 22, 11 / 165, 83, 42, 21, 11)
    x, y = pair((171, 165), seed=7)
    fit = downsample == "drop"  # 'drop' needs 176 px for 5 scales: 4 fit
    ref = fastssim.ms_ssim(x, y, data_range=1.0, downsample=downsample, gradient="both",
                           return_scales=True, fit_scales=fit)
    r = fdask.ms_ssim(da.from_array(x, chunks=chunks), da.from_array(y, chunks=(50, 50)),
                      data_range=1.0, downsample=downsample, gradient="both",
                      return_scales=True, fit_scales=fit)
    got = sync(*r)
    np.testing.assert_allclose(got[0], ref.value, rtol=REL)
    check_result(got[1:], ref[1:])


@pytest.mark.parametrize("downsample", CONV)
@pytest.mark.parametrize("shape,chunks", [
    ((171, 165), (171, 165)),  # one chunk per image
    ((171, 165), (64, 64)),    # the coarse levels' chunks get narrower than the window
    ((171, 165), (37, 50)),    # odd chunks: boundaries moved at the first level
    ((171, 165), (9, 170)),    # narrower than the window: merged
    ((704, 704), (176, 176)),  # even chunk sides down to 11: every level in the chunk tasks
    ((353, 337), (88, 84)),    # odd sides from the first level on
])
def test_ms_ssim_value_pyramid_in_chunk_tasks(downsample, shape, chunks):
    # the value without a gradient runs every level a chunk holds in its own
    # task (and hands the rest on); the scale means and the value must be the
    # in-memory function's (float64: the order of additions only)
    x, y = pair(shape, seed=7)
    fit = downsample == "drop"
    ref = fastssim.ms_ssim(x, y, data_range=1.0, downsample=downsample, return_scales=True,
                           fit_scales=fit)
    X = da.from_array(x, chunks=chunks)
    r = fdask.ms_ssim(X, da.from_array(y, chunks=(50, 50)), data_range=1.0,
                      downsample=downsample, return_scales=True, fit_scales=fit)
    value, scales = sync(r.value, r.scales)
    np.testing.assert_allclose(value, ref.value, rtol=REL)
    np.testing.assert_allclose(scales, ref.scales, rtol=REL)
    v = sync(fdask.ms_ssim(X, y, data_range=1.0, downsample=downsample, fit_scales=fit))[0]
    np.testing.assert_allclose(v, ref.value, rtol=REL)


@pytest.mark.parametrize("downsample", CONV)
def test_ms_ssim_downsampling_in_bands(downsample, monkeypatch):
    # a chunk is downsampled in bands of rows (each through both axes before
    # the next): bands of a few rows here, so that band edges fall next to the
    # conventions' irregular first and last outputs; the pyramid must stay the
    # in-memory one (values and scale means), float32 and float64 (float32 with
    # the whole image's shifts: a block's own shift rounds float32 moments
    # differently, by up to 1.9e-8 relative on the baseline SIMD path)
    monkeypatch.setattr(fdask, "_DOWN_BAND", 3 * 60)
    for dtype, rel in ((np.float64, REL), (np.float32, F32_REL)):
        x, y = pair((171, 165), dtype=dtype, seed=18)
        fit = downsample == "drop"
        ref = fastssim.ms_ssim(x, y, data_range=1.0, downsample=downsample, return_scales=True,
                               fit_scales=fit)
        r = fdask.ms_ssim(da.from_array(x, chunks=(90, 100)), y, data_range=1.0,
                          downsample=downsample, return_scales=True, fit_scales=fit,
                          shift="image" if dtype == np.float32 else "block")
        value, scales = sync(r.value, r.scales)
        np.testing.assert_allclose(value, ref.value, rtol=rel)
        np.testing.assert_allclose(scales, ref.scales, rtol=rel)


def test_ms_ssim_value_float32_batch_colour_volume():
    x, y = pair((3, 200, 190, 3), dtype=np.float32, seed=16)
    ref = fastssim.ms_ssim(x, y, data_range=1.0, channel_axis=-1)
    X = da.from_array(x, chunks=(2, 64, 70, 3))
    for shift in ("block", "image"):
        got = sync(fdask.ms_ssim(X, y, data_range=1.0, channel_axis=-1, shift=shift))[0]
        np.testing.assert_allclose(got, ref, rtol=F32_REL)
    v, w = pair((60, 66, 70), seed=17)
    kw = dict(data_range=1.0, spatial_dims=3, weights=(0.4, 0.6), window="uniform", win_size=7)
    ref = fastssim.ms_ssim(v, w, return_scales=True, **kw)
    got = sync(*fdask.ms_ssim(da.from_array(v, chunks=(20, 33, 35)), w, return_scales=True,
                              **kw))
    np.testing.assert_allclose(got[0], ref.value, rtol=REL)
    np.testing.assert_allclose(got[3], ref.scales, rtol=REL)


def test_ms_ssim_colour_volume_float32():
    x, y = pair((2, 81, 70, 3), dtype=np.uint8, seed=8)
    ref = fastssim.ms_ssim(x, y, channel_axis=-1, weights=(0.2, 0.3, 0.5), gradient="y",
                           return_scales=True)
    got = sync(*fdask.ms_ssim(da.from_array(x, chunks=(1, 30, 25, 3)), y, channel_axis=-1,
                              weights=(0.2, 0.3, 0.5), gradient="y", return_scales=True))
    np.testing.assert_allclose(got[0], ref.value, rtol=REL)
    check_result(got[1:], ref[1:])
    v, w = pair((30, 33, 35), seed=9)
    kw = dict(data_range=1.0, spatial_dims=3, weights=(0.4, 0.6), window="uniform", win_size=7)
    ref = fastssim.ms_ssim(v, w, gradient="x", **kw)
    got = sync(*fdask.ms_ssim(da.from_array(v, chunks=(11, 15, 8)), w, gradient="x", **kw))
    np.testing.assert_allclose(got[0], ref.value, rtol=REL)
    check_result(got[1:], ref[1:])
    x, y = pair((170, 180), dtype=np.float32, seed=10)
    ref = fastssim.ms_ssim(x, y, data_range=1.0, gradient="x")
    got = sync(*fdask.ms_ssim(da.from_array(x, chunks=(45, 60)), y, data_range=1.0, gradient="x"))
    np.testing.assert_allclose(got[0], ref.value, rtol=F32_REL)
    assert got[1].dtype == np.float32
    np.testing.assert_allclose(got[1], ref.grad_x, rtol=0, atol=1e-6 * np.abs(ref.grad_x).max())


@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("chunks", [(120, 97), (40, 33), (57, 10)])
def test_pixelwise_ms_ssim(border, chunks):
    x, y = pair((120, 97), seed=11)
    ref = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, border=border, full=True, gradient="both")
    got = sync(*fdask.pixelwise_ms_ssim(da.from_array(x, chunks=chunks), y, data_range=1.0,
                                        border=border, full=True, gradient="both"))
    np.testing.assert_allclose(got[0], ref.value, rtol=REL)
    check_result(got[1:], ref[1:])


def test_pixelwise_colour():
    x, y = pair((60, 64, 3), seed=12)
    kw = dict(data_range=1.0, channel_axis=-1, sigmas=(0.5, 1.0, 2.0), full=True, gradient="x")
    ref = fastssim.pixelwise_ms_ssim(x, y, **kw)
    got = sync(*fdask.pixelwise_ms_ssim(da.from_array(x, chunks=(20, 25, 3)), y, **kw))
    np.testing.assert_allclose(got[0], ref.value, rtol=REL)
    check_result(got[1:], ref[1:])


class _Store:
    """An array-like store (as zarr or h5py arrays are to ``da.from_array``)."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.ndim = a, a.shape, a.dtype, a.ndim

    def __getitem__(self, key):
        return self.a[key]


@pytest.mark.parametrize("fn", ["ssim", "ms_ssim"])
def test_value_graph_reads_each_chunk_pair_in_its_task(fn):
    # the value's chunk task fuses the reads of its x and y chunks (so the pair
    # is never moved between workers): one task per chunk (and one that hands
    # it its plans), one per line of chunks, and no task of its own per chunk
    # read; the value stays in-memory's
    x, y = pair((200, 190), seed=19)
    X = da.from_array(_Store(x), chunks=(50, 64))
    Y = da.from_array(_Store(y), chunks=(50, 64))
    v = getattr(fdask, fn)(X, Y, data_range=1.0, **({"weights": (0.5, 0.5)} if fn == "ms_ssim"
                                                     else {}))
    (opt,) = dask.optimize(v)
    names = [str(k[0] if isinstance(k, tuple) else k) for k in dict(opt.__dask_graph__())]
    chunk_tasks = [n for n in names if n.startswith("_chain_task")]
    assert len(chunk_tasks) == 4 * 3, names
    assert sum(n.startswith("_lines_task") for n in names) == 4, names
    reads = [n for n in names if n in (X.name, Y.name)]
    assert not reads, names
    # one light task per chunk hands it its plans; the stores' handles; the final sums
    assert sum(n.startswith("fastssim-plans") for n in names) == 4 * 3, names
    assert len(names) <= 2 * 4 * 3 + 4 + 2 + 6, names
    ref = getattr(fastssim, fn)(x, y, data_range=1.0, **({"weights": (0.5, 0.5)}
                                                         if fn == "ms_ssim" else {}))
    np.testing.assert_allclose(v.compute(scheduler="sync"), ref, rtol=REL)


def test_value_does_not_depend_on_chunking_or_workers():
    x, y = pair((200, 190), seed=13)
    vals = [fdask.ssim(da.from_array(x, chunks=c), y, data_range=1.0).compute(scheduler="sync")
            for c in [(200, 190), (50, 50), (23, 61), (11, 190)]]
    np.testing.assert_allclose(vals, vals[0], rtol=REL)
    X = da.from_array(x, chunks=(50, 50))
    one = sync(*fdask.ssim(X, y, data_range=1.0, full=True, gradient="y"))
    two = sync(*fdask.ssim(X, y, data_range=1.0, full=True, gradient="y", workers=2))
    for a, b in zip(one, two):  # the engine is bitwise identical for every thread count
        if a is not None:
            assert np.array_equal(a, b)
    assert fdask.DEFAULT_TASK_WORKERS == 1


def test_distributed_equals_synchronous_bitwise(client):
    x, y = pair((151, 137), seed=14)
    X, Y = da.from_array(x, chunks=(76, 60)), da.from_array(y, chunks=(76, 60))
    for res in (fdask.ssim(X, Y, data_range=1.0, full=True, gradient="both"),
                fdask.ms_ssim(X, Y, data_range=1.0, weights=(0.3, 0.3, 0.4), gradient="x",
                              return_scales=True),
                fdask.ms_ssim(X, Y, data_range=1.0, weights=(0.3, 0.3, 0.4),
                              return_scales=True),
                fdask.pixelwise_ms_ssim(X, Y, data_range=1.0, sigmas=(1.0, 2.0), full=True)):
        a = sync(*res)
        b = client.compute(list(res), sync=True)
        for u, v in zip(a, b):
            if u is not None:
                assert np.array_equal(u, v)
    ref = fastssim.ssim(x, y, data_range=1.0)
    np.testing.assert_allclose(client.compute(fdask.ssim(X, Y, data_range=1.0), sync=True),
                               ref, rtol=REL)


def test_one_process_two_threads_equals_synchronous_bitwise():
    # the layout the README recommends for one machine (one worker process,
    # one thread per core, engine workers=1 per task): two chunk tasks run at
    # once in one process, each with its own pyramid level buffers; results
    # bitwise those of the synchronous scheduler, values the in-memory ones
    x, y = pair((260, 250), dtype=np.float32, seed=21)
    X, Y = da.from_array(x, chunks=(64, 64)), da.from_array(y, chunks=(64, 64))
    kw = dict(data_range=1.0, weights=(0.3, 0.3, 0.4))
    calls = [fdask.ssim(X, Y, data_range=1.0), fdask.ms_ssim(X, Y, return_scales=True, **kw)]
    ref = sync(*calls)
    with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=2,
                                  dashboard_address=":0", silence_logs=40) as cluster, \
            distributed.Client(cluster) as cl:
        got = cl.compute(calls, sync=True)
        assert list(cl.nthreads().values()) == [2]
    assert np.array_equal(got[0], ref[0])
    for u, v in zip(got[1], ref[1]):
        if v is not None:
            assert np.array_equal(u, v)
    np.testing.assert_allclose(ref[0], fastssim.ssim(x, y, data_range=1.0), rtol=F32_REL)
    np.testing.assert_allclose(ref[1].value, fastssim.ms_ssim(x, y, **kw), rtol=F32_REL)


def test_ms_ssim_chunk_tasks_reuse_level_buffers():
    # a chunk task downsamples into buffers its thread keeps for the next task
    # (one per level and side): two pairs in a row on the same chunking, and a
    # third on other chunk shapes, each the in-memory value (float64: 1e-12)
    fdask._buffers.pool = {}
    kw = dict(data_range=1.0, weights=(0.2, 0.3, 0.5))
    for seed, chunks in ((22, (64, 64)), (23, (64, 64)), (24, (90, 70))):
        x, y = pair((256, 256), seed=seed)
        got = fdask.ms_ssim(da.from_array(x, chunks=chunks), y, **kw).compute(scheduler="sync")
        np.testing.assert_allclose(got, fastssim.ms_ssim(x, y, **kw), rtol=REL)
        # the buffers were used (levels 0 and 1 downsampled in the chunk tasks)
        assert sorted(fdask._buffers.pool) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def _write_dataset(tmp_path):
    from PIL import Image

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    rng = np.random.default_rng(15)
    expect = {}
    for i in range(7):
        im = rng.integers(0, 256, (48, 40), dtype=np.uint8)
        im2 = np.clip(im + rng.integers(-40, 40, im.shape), 0, 255).astype(np.uint8)
        Image.fromarray(im).save(a / f"{i}.png")
        Image.fromarray(im2).save(b / f"{i}.png")
        expect[f"{i}.png"] = fastssim.ssim(im, im2)
    rgb = rng.integers(0, 256, (2, 30, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb[0]).save(a / "rgb.png")
    Image.fromarray(rgb[1]).save(b / "rgb.png")
    expect["rgb.png"] = fastssim.ssim(rgb[0], rgb[1], channel_axis=-1)
    v = rng.random((2, 16, 17, 18))
    np.save(a / "vol.npy", v[0])
    np.save(b / "vol.npy", v[1])
    (b / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n corrupt")   # a corrupt file
    (a / "lonely.png").write_bytes((a / "0.png").read_bytes())  # no partner in b
    return a, b, expect, v


def test_score_files_on_cluster_with_a_corrupt_file(client, tmp_path):
    pytest.importorskip("PIL")
    a, b, expect, v = _write_dataset(tmp_path)
    rows = fdask.score_files(a, b, client=client, pairs_per_task=3, as_frame=False)
    by = {os.path.basename(r["x"]): r for r in rows}
    assert [os.path.basename(r["x"]) for r in rows] == sorted(by)
    assert set(by) == set(expect) | {"vol.npy", "lonely.png"}
    for name, val in expect.items():
        if name == "3.png":
            assert np.isnan(by[name]["value"]) and "3.png: cannot read image" in by[name]["error"]
        else:
            assert by[name]["error"] is None
            np.testing.assert_allclose(by[name]["value"], val, rtol=REL)
    assert "no such file" in by["lonely.png"]["error"]
    assert "data_range is required" in by["vol.npy"]["error"]  # float volume, no data_range
    # lists of files, MS-SSIM options, the default (synchronous here) scheduler
    xs, ys = [a / "vol.npy", a / "0.png"], [b / "vol.npy", b / "missing.png"]
    rows = fdask.score_files(xs, ys, metric="ms_ssim", data_range=1.0, weights=(0.5, 0.5),
                             win_size=5, window="uniform", as_frame=False)
    ref = fastssim.ms_ssim(v[0], v[1], data_range=1.0, weights=(0.5, 0.5), win_size=5,
                           window="uniform", spatial_dims=3)
    np.testing.assert_allclose(rows[0]["value"], ref, rtol=REL)
    assert "missing.png: no such file" in rows[1]["error"]


def test_score_files_dataframe(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("PIL")
    a, b, expect, _ = _write_dataset(tmp_path)
    df = fdask.score_files(a, b)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["x", "y", "value", "error"]
    assert len(df) == len(expect) + 2 and df["error"].notna().sum() == 3


def test_errors(tmp_path):
    x = da.zeros((40, 40), chunks=10)
    with pytest.raises(ValueError, match="same shape"):
        fdask.ssim(x, da.zeros((40, 41)), data_range=1.0)
    with pytest.raises(ValueError, match="data_range is required"):
        fdask.ssim(x, x)
    with pytest.raises(ValueError, match="11-tap window exceeds the image extent"):
        fdask.ssim(da.zeros((40, 9)), da.zeros((40, 9)), data_range=1.0)
    with pytest.raises(ValueError, match="spatial_dims: expected 2"):
        fdask.ssim(x, x, data_range=1.0, spatial_dims=4)
    with pytest.raises(ValueError, match="border: expected"):
        fdask.ssim(x, x, data_range=1.0, border="same")
    for f in (fdask.ssim, fdask.ms_ssim, fdask.pixelwise_ms_ssim):
        with pytest.raises(ValueError, match="shift: expected 'block'.*or 'image'.*got 'plane'"):
            f(x, x, data_range=1.0, shift="plane")
    with pytest.raises(ValueError, match="workers: 0"):
        fdask.ssim(x, x, data_range=1.0, workers=0)
    with pytest.raises(TypeError, match="real numeric array"):
        fdask.ssim(x.astype(complex), x, data_range=1.0)
    with pytest.raises(ValueError, match="needs at least 161 px"):
        fdask.ms_ssim(x, x, data_range=1.0)
    with pytest.raises(ValueError, match="downsample: expected"):
        fdask.ms_ssim(x, x, data_range=1.0, downsample="bilinear")
    with pytest.raises(ValueError, match="widest sigma"):
        fdask.pixelwise_ms_ssim(x, x, data_range=1.0)
    with pytest.raises(ValueError, match="metric: expected"):
        fdask.score_files([], [], metric="psnr")
    with pytest.raises(TypeError, match="takes no argument"):
        fdask.score_files([], [], sigmas=(1, 2))
    with pytest.raises(ValueError, match="as many files"):
        fdask.score_files(["a.npy"], [])
    with pytest.raises(TypeError, match="two folders or two sequences"):
        fdask.score_files(tmp_path, ["a.npy"])
    with pytest.raises(ValueError, match="pairs_per_task"):
        fdask.score_files([], [], pairs_per_task=0)


def test_chunk_merging():
    # chunks narrower than the window are merged with their neighbours, never below it
    assert fdask._merge_small((5, 5, 5, 5, 3), 11) == (23,)
    assert fdask._merge_small((7, 9, 30, 2), 11) == (16, 32)
    assert fdask._merge_small((64, 64, 1), 11) == (64, 65)
    assert fdask._merge_small((3,), 11) == (3,)


def test_import_fastssim_does_not_import_dask():
    code = "import sys, fastssim; print('dask' in sys.modules, 'distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(__file__)).stdout
    assert out.strip() == "False False"


def test_docstring_example():
    import doctest

    res = doctest.testmod(fdask, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0
