"""Many small runs: a resume skips and counts what is complete, in a bounded number of reads.

Timing is the benchmark's job (benchmarks/bench_batch.py); here the store's operations are
counted through a counting fsspec file system (local files behind a ``counting://`` URL), and
the same resume runs on S3 (moto on 127.0.0.1) with a 2-worker cluster.
"""

from __future__ import annotations

import collections
from typing import ClassVar

import fsspec
import nibabel as nib
import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem

from daskmasker import NiftiMapsMasker, dask_client, open_timeseries
from daskmasker.batch.fingerprint import fingerprint_sha
from daskmasker.batch.index import read_index, write_index
from daskmasker.batch.run import run_batch
from daskmasker.io.fs import Location

from s3server import s3_server, storage_options

N_RUNS = 200
SHAPE = (10, 12, 10)


class CountingFileSystem(LocalFileSystem):
    """Local files under ``counting://``; counts the calls that read or list the store."""

    protocol = ("counting",)
    calls: ClassVar[collections.Counter] = collections.Counter()

    def __init__(self, **kwargs):
        super().__init__(**{"auto_mkdir": True, **kwargs})

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, str) and path.startswith("counting://"):
            path = path[len("counting://") :]
        return super()._strip_protocol(path)

    paths: ClassVar[list] = []
    listing = False

    def cat_file(self, path, start=None, end=None, **kwargs):
        self.calls["read"] += 1
        self.paths.append(path)
        return super().cat_file(path, start=start, end=end, **kwargs)

    def ls(self, path, detail=False, **kwargs):
        self.calls["list"] += 1
        self.listing = True  # a local listing stats each entry: part of the one listing
        try:
            return super().ls(path, detail=detail, **kwargs)
        finally:
            self.listing = False

    def info(self, path, **kwargs):
        if not self.listing:
            self.calls["info"] += 1
            self.paths.append(path)
        return super().info(path, **kwargs)


fsspec.register_implementation("counting", CountingFileSystem, clobber=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """200 small runs (10x12x10 voxels, 12 volumes) and 5 maps."""
    root = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(0)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    maps = np.clip(rng.normal(size=(*SHAPE, 5)), 0, None).astype(np.float32)
    nib.Nifti1Image(maps, affine).to_filename(root / "maps.nii.gz")
    paths = []
    for i in range(N_RUNS):
        path = root / f"sub-{i:03d}_task-rest_bold.nii.gz"
        data = (100 + rng.normal(size=(*SHAPE, 12))).astype(np.float32)
        nib.Nifti1Image(data, affine).to_filename(path)
        paths.append(str(path))
    return {"maps": str(root / "maps.nii.gz"), "paths": paths}


def _masker(runs):
    return NiftiMapsMasker(runs["maps"], standardize="zscore_sample", detrend=True).fit(
        runs["paths"][0]
    )


def test_resume_of_200_runs_skips_complete_ones_in_bounded_reads(runs, tmp_path):
    out = f"counting://{tmp_path}/out.zarr"
    local = Location(str(tmp_path / "out.zarr"))
    masker = _masker(runs)
    first = run_batch(masker, runs["paths"][:120], out)
    assert len(first.done) == 120 and not first.failed

    # a run killed after finishing some items it had not yet recorded in the index
    indexed = read_index(local)
    assert len(indexed) == 120
    # the index holds each run's fingerprint (its sha256) and input digests
    name = sorted(indexed)[0]
    fp = open_timeseries(str(tmp_path / "out.zarr"), name).attrs["fingerprint"]
    assert indexed[name]["fingerprint"] == fingerprint_sha(fp)
    assert indexed[name]["image"] == fp["image"]
    unrecorded = sorted(indexed)[:7]
    write_index(local, {k: v for k, v in indexed.items() if k not in unrecorded})

    second = run_batch(masker, runs["paths"], out)
    assert sorted(second.skipped) == sorted(indexed)
    assert len(second.done) == N_RUNS - 120 and not second.failed
    assert len(read_index(local)) == N_RUNS  # the resume recorded what it found

    # everything complete: the check reads the root and the index, lists the runs once, and
    # opens no run
    CountingFileSystem.calls.clear()
    CountingFileSystem.paths.clear()
    third = run_batch(masker, runs["paths"], out)
    assert len(third.skipped) == N_RUNS and third.done == []
    calls = dict(CountingFileSystem.calls)
    assert calls.get("list", 0) <= 2, CountingFileSystem.paths
    assert calls.get("read", 0) + calls.get("info", 0) <= 10, CountingFileSystem.paths
    assert not [p for p in CountingFileSystem.paths if p.endswith(".npz")]

    # unrecorded runs are read (and only they): reads grow with them
    write_index(local, {k: v for k, v in read_index(local).items() if k not in unrecorded})
    CountingFileSystem.calls.clear()
    CountingFileSystem.paths.clear()
    fourth = run_batch(masker, runs["paths"], out)
    assert len(fourth.skipped) == N_RUNS
    opened = sorted(p.rsplit("/", 1)[-1] for p in CountingFileSystem.paths if p.endswith(".npz"))
    assert opened == [f"{n}.npz" for n in unrecorded]

    # the values are the masker's, whichever run wrote them
    study = open_timeseries(str(tmp_path / "out.zarr"))
    for path in (runs["paths"][0], runs["paths"][150]):
        name = path.rsplit("/", 1)[-1].replace("_bold.nii.gz", "")
        got = study["signals"].sel(run=name).values
        np.testing.assert_allclose(got, masker.transform(path), atol=1e-6)


def test_a_group_removed_by_hand_is_redone(runs, tmp_path):
    import os

    out = str(tmp_path / "out.zarr")
    masker = _masker(runs)
    assert len(run_batch(masker, runs["paths"][:10], out).done) == 10
    before = open_timeseries(out)["signals"].load()
    os.remove(f"{out}/runs/sub-003_task-rest.npz")
    again = run_batch(masker, runs["paths"][:10], out)
    assert again.done == ["sub-003_task-rest"] and len(again.skipped) == 9
    after = open_timeseries(out)["signals"]
    assert list(after["run"].values) == list(before["run"].values)
    np.testing.assert_array_equal(after.values, before.values)


def test_resume_on_s3_with_a_cluster(runs):
    """The same on an object store, the items run whole on 2 worker processes."""
    with s3_server() as endpoint:
        import s3fs

        opts = storage_options(endpoint)
        s3fs.S3FileSystem(**opts).mkdir("many-runs")
        out = "s3://many-runs/many.zarr"
        masker = _masker(runs)
        paths = runs["paths"][:60]
        with dask_client(workers=2) as client:
            first = run_batch(masker, paths[:40], out, storage_options=opts, client=client)
            second = run_batch(masker, paths, out, storage_options=opts, client=client)
        assert len(first.done) == 40 and not first.failed
        assert len(second.skipped) == 40 and len(second.done) == 20 and not second.failed
        assert len(read_index(Location(out, opts))) == 60
        study = open_timeseries(out, storage_options=opts)
        assert study.sizes["run"] == 60
        got = study["signals"].sel(run="sub-055_task-rest").values
        np.testing.assert_allclose(got, masker.transform(paths[55]), atol=1e-6)
