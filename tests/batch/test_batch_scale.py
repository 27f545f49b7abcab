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
import xarray as xr
import zarr
from fsspec.implementations.local import LocalFileSystem

from daskmasker import NiftiMapsMasker, dask_client
from daskmasker.batch.fingerprint import fingerprint_sha
from daskmasker.batch.run import run_batch
from daskmasker.batch.store import COMPLETE_ATTR, INDEX_ATTR

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
    masker = _masker(runs)
    first = run_batch(masker, runs["paths"][:120], out)
    assert len(first.done) == 120 and not first.failed

    # a run killed after finishing some items it had not yet recorded in the index
    root = zarr.open_group(str(tmp_path / "out.zarr"), mode="a")
    indexed = dict(root.attrs[INDEX_ATTR])
    assert len(indexed) == 120
    # the index holds each run's fingerprint (its sha256) and input digests
    name = sorted(indexed)[0]
    fp = root[name].attrs["fingerprint"]
    assert indexed[name]["fingerprint"] == fingerprint_sha(fp)
    assert indexed[name]["image"] == fp["image"]
    unrecorded = sorted(indexed)[:7]
    root.attrs[INDEX_ATTR] = {k: v for k, v in indexed.items() if k not in unrecorded}

    second = run_batch(masker, runs["paths"], out)
    assert sorted(second.skipped) == sorted(indexed)
    assert len(second.done) == N_RUNS - 120 and not second.failed
    for name in unrecorded:
        assert zarr.open_group(str(tmp_path / "out.zarr"), path=name).attrs[COMPLETE_ATTR]

    # everything complete: the check reads the root, lists the store once, opens no group
    CountingFileSystem.calls.clear()
    CountingFileSystem.paths.clear()
    third = run_batch(masker, runs["paths"], out)
    assert len(third.skipped) == N_RUNS and third.done == []
    calls = dict(CountingFileSystem.calls)
    assert calls.get("list", 0) == 1
    assert calls.get("read", 0) + calls.get("info", 0) <= 10, CountingFileSystem.paths
    assert not [p for p in CountingFileSystem.paths if "task-rest" in p]

    # the unrecorded items were opened one by one, and only they: reads grow with them
    root = zarr.open_group(str(tmp_path / "out.zarr"), mode="a")
    assert len(root.attrs[INDEX_ATTR]) == N_RUNS  # the resumes recorded what they found
    root.attrs[INDEX_ATTR] = {
        k: v for k, v in root.attrs[INDEX_ATTR].items() if k not in unrecorded
    }
    CountingFileSystem.calls.clear()
    CountingFileSystem.paths.clear()
    fourth = run_batch(masker, runs["paths"], out)
    assert len(fourth.skipped) == N_RUNS
    assert CountingFileSystem.calls["read"] - calls.get("read", 0) >= len(unrecorded)
    assert CountingFileSystem.calls["read"] <= calls.get("read", 0) + 3 * len(unrecorded)

    # the values are the masker's, whichever run wrote them
    for path in (runs["paths"][0], runs["paths"][150]):
        name = path.rsplit("/", 1)[-1].replace("_bold.nii.gz", "")
        got = xr.open_zarr(str(tmp_path / "out.zarr"), group=name, consolidated=False)
        np.testing.assert_allclose(got["signals"].values, masker.transform(path), atol=1e-6)


def test_a_group_removed_by_hand_is_redone(runs, tmp_path):
    import shutil

    out = str(tmp_path / "out.zarr")
    masker = _masker(runs)
    assert len(run_batch(masker, runs["paths"][:10], out).done) == 10
    shutil.rmtree(f"{out}/sub-003_task-rest")
    again = run_batch(masker, runs["paths"][:10], out)
    assert again.done == ["sub-003_task-rest"] and len(again.skipped) == 9


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
        root = zarr.open_group(zarr.storage.FsspecStore.from_url(out, storage_options=opts))
        assert len(root.attrs[INDEX_ATTR]) == 60
        got = xr.open_zarr(out, group="sub-055_task-rest", consolidated=False, storage_options=opts)
        np.testing.assert_allclose(got["signals"].values, masker.transform(paths[55]), atol=1e-6)
