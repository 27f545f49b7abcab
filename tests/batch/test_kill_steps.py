"""A batch killed after any single write leaves no half-written run taken for complete, and
its resume gives the store an uninterrupted batch gives (issue 29).

Every write of a batch's store protocol (each run's object, the resume index, each object of
the study's arrays) goes through the local file system's ``pipe_file``/``mv`` or zarr's
``LocalStore.set``; the test kills the writer at write ``k`` — for every ``k`` — leaving half
of that write's bytes where it was writing, then resumes.  Runs are written from precomputed
Datasets (extraction is tested elsewhere), as ``run_batch`` writes them.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import zarr
from fsspec.implementations.local import LocalFileSystem

from daskmasker import NiftiMapsMasker, open_timeseries, run_batch
from daskmasker.batch.index import completed, entry_of
from daskmasker.batch.pack import unpack
from daskmasker.batch.run import finish
from daskmasker.batch.store import (
    listed_runs,
    mark_pending,
    open_output,
    open_run,
    read_packs,
    write_run,
)
from daskmasker.io.fs import Location

from helpers import write_run as write_image

VARIABLES = ("signals", "raw_signals", "confounds", "frame", "onset", "n_frames", "subject")


class Killed(BaseException):
    """The process dies: nothing after it runs (not an Exception: no handler catches it)."""


@contextlib.contextmanager
def killed_after(k: int):
    """Writes 0..k-1 happen, then the process dies: a file write cut short leaves half its bytes
    (``pipe_file`` writes in place); zarr's ``LocalStore.set`` (written beside and renamed, as
    an object store's PUT is whole) dies before its write."""
    count = {"n": 0}
    pipe_file, mv, store_set = (
        LocalFileSystem.pipe_file,
        LocalFileSystem.mv,
        zarr.storage.LocalStore.set,
    )

    def step():
        count["n"] += 1
        return count["n"] - 1 == k

    def cut_pipe(self, path, value, *args, **kwargs):
        if step():
            pipe_file(self, path, value[: len(value) // 2], *args, **kwargs)
            raise Killed(path)
        return pipe_file(self, path, value, *args, **kwargs)

    def cut_mv(self, *args, **kwargs):
        if step():
            raise Killed(args)
        return mv(self, *args, **kwargs)

    async def cut_set(self, key, value):
        if step():
            raise Killed(key)
        return await store_set(self, key, value)

    patches = [
        (LocalFileSystem, "pipe_file", cut_pipe),
        (LocalFileSystem, "mv", cut_mv),
        (zarr.storage.LocalStore, "set", cut_set),
    ]
    for owner, name, fn in patches:
        setattr(owner, name, fn)
    try:
        yield count
    finally:
        LocalFileSystem.pipe_file, LocalFileSystem.mv = pipe_file, mv
        zarr.storage.LocalStore.set = store_set


def write_batch(store: str, runs: dict, params: dict) -> None:
    """The store protocol of ``run_batch``: skip complete runs, mark the store pending before
    the first run is written, write the others, finish (a new index only when runs were
    written or found unindexed, as ``run_batch``'s: a resume of complete runs relies on the
    pending marker alone to gather what a killed batch left ungathered)."""
    location = open_output(store, params, False, None)
    done = completed(location)
    todo = {name: ds for name, ds in runs.items() if name not in done}
    if todo:
        mark_pending(location)
    updates = {}
    for name, ds in todo.items():
        write_run(location, name, ds)
        updates[name] = entry_of(ds.attrs["fingerprint"])
    finish(location, {**done, **updates} if updates or done.extra else None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Three runs of three lengths, extracted once; their Datasets and the uninterrupted store."""
    root = tmp_path_factory.mktemp("kill")
    from helpers import make_maps

    maps = make_maps(dtype=np.float64)
    maps.to_filename(root / "maps.nii.gz")
    imgs = []
    for i, n in enumerate((20, 24, 22)):
        imgs.append(str(root / f"sub-0{i}_task-rest_bold.nii.gz"))
        write_image(imgs[-1], maps, n, seed=i)
    out = str(root / "ref.zarr")
    masker = NiftiMapsMasker(str(root / "maps.nii.gz"), detrend=True)
    assert len(run_batch(masker, imgs, out).done) == 3
    location = Location(out)
    runs = {name: open_run(location, name) for name in sorted(listed_runs(location))}
    params = open_timeseries(out).attrs["daskmasker_batch"]["parameters"]
    return {"runs": runs, "params": params, "store": out}


@pytest.mark.parametrize("first", [0, 1], ids=["new-store", "grown-study"])
def test_a_kill_after_any_write_leaves_complete_runs_whole_and_resumes_equal(
    reference, tmp_path, first
):
    """``first`` runs (the last by name) are gathered by an earlier batch, uninterrupted; then a
    batch of all runs is killed after its write ``k``, for every ``k``, and resumed."""
    runs, params = reference["runs"], reference["params"]
    earlier = dict(list(runs.items())[len(runs) - first :])

    def both(out, killed_at):
        write_batch(out, earlier, params)
        with killed_after(killed_at) as count:
            write_batch(out, runs, params)
        return count["n"]

    n_writes = both(str(tmp_path / "whole.zarr"), 10**9)
    assert n_writes > 2 * (len(runs) - first)
    whole = open_timeseries(str(tmp_path / "whole.zarr"))
    for k in range(n_writes):
        out = str(tmp_path / f"k{k}.zarr")
        with pytest.raises(Killed):
            both(out, k)
        location = Location(out)
        # every run taken for complete holds all its arrays, as written
        for name, data in read_packs(location, listed_runs(location)).items():
            _equal_runs(unpack(data), runs[name], f"write {k}: run {name}")
        # and every run the committed study shows is the run's own
        with (
            contextlib.suppress(FileNotFoundError, ValueError, KeyError),
            warnings.catch_warnings(),
        ):
            warnings.filterwarnings("ignore", message=".* complete runs are not in the study")
            shown = open_timeseries(out)
            for name in shown["run"].values:
                row, want = shown.sel(run=name), whole.sel(run=name)
                for var in VARIABLES:  # the committed extents may be shorter
                    got = row[var].values
                    cut = want[var].values[tuple(slice(0, n) for n in got.shape)]
                    np.testing.assert_array_equal(got, cut, err_msg=f"write {k}: {name} {var}")
        write_batch(out, runs, params)  # the resume
        resumed = open_timeseries(out)
        assert list(resumed["run"].values) == list(whole["run"].values), f"write {k}"
        for var in resumed.variables:
            np.testing.assert_array_equal(
                resumed[var].values, whole[var].values, err_msg=f"write {k}: {var}"
            )
        for name in runs:
            _equal_runs(open_run(location, name), runs[name], f"resumed after write {k}")


def _equal_runs(got, want, where: str) -> None:
    assert set(got.variables) == set(want.variables), where
    for var in want.variables:
        np.testing.assert_array_equal(got[var].values, want[var].values, err_msg=where)
    assert got.attrs == want.attrs, where
