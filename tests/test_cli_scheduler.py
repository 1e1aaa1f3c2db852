"""``fastssim compare ... --scheduler ADDRESS`` (issue 15): a folder run on a Dask
cluster gives the output of the local run.

The reference is the local run itself: the same folders (good pairs in colour
and gray, a 16-bit pair, a pair of different sizes, a corrupt file, a file
without a partner) scored by a ``fastssim compare`` subprocess locally and by
another that connects to a ``distributed.LocalCluster``'s scheduler address;
the CSV and JSON outputs must be equal, byte for byte (the scores are the same
library calls, whose results do not depend on the thread count), and so must
the exit status.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import noisy, run_sub, write_problem_pairs

distributed = pytest.importorskip("distributed")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def cluster():
    # worker processes: the tasks run in other interpreters than the test's,
    # as on a real cluster (they find fastssim as this process does)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, protocol="tcp") as c:
        yield c


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(21)
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    (ref / "sub").mkdir(parents=True)
    (dist / "sub").mkdir(parents=True)
    for name, shape, amount in (("a.png", (48, 64, 3), 10), ("b.png", (40, 52), 40),
                                ("sub/c.png", (60, 60, 3), 80)):
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(a).save(ref / name)
        Image.fromarray(noisy(rng, a, amount)).save(dist / name)
    write_problem_pairs(rng, ref, dist)
    return ref, dist


def _env():
    """The subprocess imports fastssim as this process does (its environment as
    is: in CI the installed package; never the source folder, which has no
    compiled engine)."""
    return None


def _tasks_run(cluster):
    """How many CLI pair tasks the cluster's scheduler has run to completion."""
    tp = cluster.scheduler.task_prefixes.get("fastssim-compare")
    return 0 if tp is None else tp.state_counts["forgotten"]


@pytest.mark.parametrize("extra,formats", [
    ([], ("csv", "json")),
    (["--metric", "ms-ssim", "--weights", "0.5,0.5"], ("json",)),
    (["--channels", "each", "--convention", "skimage"], ("json",))])
def test_same_output_as_local(cluster, folders, tmp_path, extra, formats):
    ref, dist = folders
    outs = {}
    for where, more in (("local", []), ("cluster", ["--scheduler", cluster.scheduler_address])):
        for fmt in formats:
            out = tmp_path / f"{where}.{fmt}"
            before = _tasks_run(cluster)
            p = run_sub("compare", ref, dist, *extra, *more, "--format", fmt, "--output", out,
                        "-q", cwd=tmp_path, env=_env(), timeout=300)
            outs[where, fmt] = (p.returncode, out.read_text())
            # the cluster run really ran there: one task per pair with both files
            # (6; the file without a partner is an error row before any task)
            assert _tasks_run(cluster) - before == (6 if where == "cluster" else 0)
    assert outs["local", formats[0]][0] == 1  # the size, corrupt and partner rows
    for fmt in formats:
        assert outs["cluster", fmt] == outs["local", fmt]
    rows = json.loads(outs["cluster", "json"][1])["pairs"]
    assert sum(r["status"] == "ok" for r in rows) == 4 and len(rows) == 7


def test_maps_are_written_by_the_workers(cluster, folders, tmp_path):
    ref, dist = folders
    for where, more in (("local", []), ("cluster", ["--scheduler", cluster.scheduler_address])):
        p = run_sub("compare", ref, dist, "--map", tmp_path / f"maps_{where}", "-q", *more,
                    cwd=tmp_path, env=_env(), timeout=300)
        assert p.returncode == 1
    for name in ("a.npy", "b.npy", "sub/c.npy", "g16.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "maps_cluster" / name),
                                      np.load(tmp_path / "maps_local" / name))


def test_usage_errors(folders, tmp_path):
    ref, dist = folders
    p = run_sub("compare", ref / "a.png", dist / "a.png", "--scheduler", "tcp://127.0.0.1:9",
                cwd=tmp_path, env=_env(), timeout=120)
    assert p.returncode == 2 and "--scheduler runs folder comparisons" in p.stderr
    # nothing listens there: a usage error naming the address, not a traceback
    p = run_sub("compare", ref, dist, "--scheduler", "tcp://127.0.0.1:9", cwd=tmp_path,
                env=_env(), timeout=120)
    assert p.returncode == 2 and "--scheduler tcp://127.0.0.1:9: cannot connect" in p.stderr
    assert "Traceback" not in p.stderr
