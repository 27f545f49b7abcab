"""A study is one dataset: the runs of a batch store along a ``run`` axis, labelled by their
BIDS entities, opened lazily by ``open_timeseries`` and by plain ``xr.open_zarr``."""

from __future__ import annotations

import os
import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from daskmasker import NiftiMapsMasker, open_timeseries, run_batch
from daskmasker.batch.store import LegacyStoreError
from daskmasker.cli import main

from helpers import BATCH_T_R, write_confounds, write_run

PARAMS = dict(standardize="zscore_sample", detrend=True)
KEEP = np.arange(3, 38)  # the first run loses its first 3 and last 2 volumes


@pytest.fixture
def study_store(study):
    """Three runs of two subjects and two tasks (40, 45 and 42 volumes), confounds, a sample
    mask on the first."""
    root = study["root"]
    func = root / "sub-02" / "ses-1" / "func"
    func.mkdir(parents=True)
    img = func / "sub-02_ses-1_task-nback_run-2_space-MNI_desc-preproc_bold.nii.gz"
    conf = func / "sub-02_ses-1_task-nback_run-2_desc-confounds_timeseries.tsv"
    write_run(img, study["maps_img"], 42, seed=5)
    write_confounds(conf, 42, seed=15)
    runs = [*study["runs"], {"img": str(img), "conf": str(conf), "n": 42}]
    out = str(root / "out.zarr")
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **PARAMS)
    result = run_batch(
        masker,
        [r["img"] for r in runs],
        out,
        confounds=[r["conf"] for r in runs],
        sample_masks=[KEEP, None, None],
    )
    assert not result.failed and len(result.done) == 3
    return study, out, runs


def test_open_timeseries_is_one_lazy_dataset_of_the_study(study_store):
    study, out, runs = study_store
    ds = open_timeseries(out)
    names = [
        "sub-01_task-rest",
        "sub-02_ses-1_task-nback_run-2_space-MNI_desc-preproc",
        "sub-02_task-rest",
    ]
    assert list(ds["run"].values) == names
    assert ds["signals"].dims == ("run", "time", "region")
    assert isinstance(ds["signals"].data, da.Array)
    assert ds.sizes["time"] == 45 and ds.sizes["volume"] == 45
    assert list(ds["n_frames"].values) == [len(KEEP), 42, 45]
    assert list(ds["n_volumes"].values) == [40, 42, 45]
    np.testing.assert_array_equal(ds["t_r"].values, [BATCH_T_R] * 3)
    assert list(ds["subject"].values) == ["01", "02", "02"]
    assert list(ds["session"].values) == ["", "1", ""]
    assert list(ds["task"].values) == ["rest", "nback", "rest"]
    assert list(ds["bids_run"].values) == ["", "2", ""]
    assert list(ds["space"].values) == ["", "MNI", ""]
    assert list(ds["description"].values) == ["", "preproc", ""]
    assert list(ds["source"].values) == [runs[0]["img"], runs[2]["img"], runs[1]["img"]]
    # each run left-aligned, its own values bit for bit, NaN past its kept frames
    for name in names:
        alone = open_timeseries(out, name)
        row = ds.sel(run=name)
        n, v = int(row["n_frames"]), int(row["n_volumes"])
        np.testing.assert_array_equal(row["signals"].values[:n], alone["signals"].values)
        assert np.isnan(row["signals"].values[n:]).all()
        np.testing.assert_array_equal(row["frame"].values[:n], alone["frame"].values)
        assert (row["frame"].values[n:] == -1).all()
        np.testing.assert_array_equal(row["onset"].values[:n], alone["frame"].values * BATCH_T_R)
        np.testing.assert_array_equal(row["raw_signals"].values[:v], alone["raw_signals"].values)
        assert np.isnan(row["raw_signals"].values[v:]).all()
        confounds = row["confounds"].sel(confound=alone["confound"].values).values
        np.testing.assert_array_equal(confounds[:v], alone["confounds"].values)
    np.testing.assert_array_equal(ds.sel(run=names[0])["frame"].values[: len(KEEP)], KEEP)
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **PARAMS)
    want = masker.fit(runs[0]["img"]).transform(
        runs[0]["img"], confounds=runs[0]["conf"], sample_mask=KEEP
    )
    got = ds["signals"].sel(run=names[0]).isel(time=slice(0, len(KEEP)))
    np.testing.assert_allclose(got.values, want, rtol=1e-10, atol=1e-12)


def test_the_run_axis_selects_and_groups_as_xarray_does(study_store):
    _, out, _ = study_store
    ds = open_timeseries(out)
    second = ds.where(ds.subject == "02", drop=True)
    assert list(second["run"].values) == list(ds["run"].values[1:])
    assert second["signals"].dims == ("run", "time", "region")
    means = ds["signals"].groupby("task").mean(["run", "time"])
    assert sorted(means["task"].values) == ["nback", "rest"]
    rest = ds["signals"].sel(run=ds.run[ds.task == "rest"]).mean(["run", "time"])
    np.testing.assert_allclose(means.sel(task="rest").values, rest.values, rtol=1e-6)
    assert ds.sel(run="sub-02_task-rest")["n_frames"] == 45


def test_every_dimension_has_a_coordinate_and_every_variable_cf_labels(study_store):
    _, out, _ = study_store
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning from a plain open, nor from ours
        plain = xr.open_zarr(out)
        ds = open_timeseries(out)
    assert set(plain.variables) == set(ds.variables)
    for name in ("n_frames", "subject", "t_r", "frame", "region_name"):
        assert name in plain.coords  # coordinates, not data, for a plain open too
    for dim in ds.dims:
        assert dim in ds.coords, dim
    for name, var in ds.variables.items():
        for key in ("long_name", "units", "description"):
            assert var.attrs.get(key), (name, key)
    assert ds["t_r"].attrs["units"] == "s" and ds["onset"].attrs["units"] == "s"
    assert "NaN past" in ds["signals"].attrs["description"]


def test_each_run_adds_one_object(study_store):
    study, out, runs = study_store
    files = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs]
    packed = [f for f in files if f.endswith(".npz")]
    assert len(packed) == 3
    before = len(files)
    more = study["root"] / "more.zarr"
    imgs = [r["img"] for r in runs] * 4  # 12 runs (names made unique)
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **PARAMS)
    confs = [r["conf"] for r in runs] * 4
    assert len(run_batch(masker, imgs, str(more), confounds=confs).done) == 12
    count = sum(len(fs) for _, _, fs in os.walk(more))
    assert count == before + 9  # nine runs more: nine objects more


def test_a_store_of_the_previous_layout_is_refused_and_upgraded(study_store, capsys):
    study, out, runs = study_store
    old = str(study["root"] / "old.zarr")
    _write_previous_layout(out, old)
    for call in (
        lambda: open_timeseries(old),
        lambda: run_batch(
            NiftiMapsMasker(study["maps"], mask_img=study["mask"], **PARAMS),
            [r["img"] for r in runs],
            old,
        ),
    ):
        with pytest.raises(LegacyStoreError, match=f"daskmasker upgrade {old} NEW_STORE"):
            call()
    assert main(["info", old]) == 2
    assert "daskmasker upgrade" in capsys.readouterr().err
    new = str(study["root"] / "new.zarr")
    assert main(["upgrade", old, new]) == 0
    assert "3 runs" in capsys.readouterr().out
    got, want = open_timeseries(new), open_timeseries(out)
    for name in ("signals", "raw_signals", "confounds", "frame", "subject", "n_frames"):
        np.testing.assert_array_equal(got[name].values, want[name].values)
    again = run_batch(
        NiftiMapsMasker(study["maps"], mask_img=study["mask"], **PARAMS),
        [r["img"] for r in runs],
        new,
        confounds=[r["conf"] for r in runs],
        sample_masks=[KEEP, None, None],
    )
    assert len(again.skipped) == 3 and not again.done  # fingerprints carried over
    assert main(["upgrade", old, new]) == 2  # never over an existing store
    assert "exists" in capsys.readouterr().err


def _write_previous_layout(store: str, old: str) -> None:
    """The layout of daskmasker before the study store: one Zarr group per run, marked
    ``complete``, the root's attrs naming the batch (no ``layout``)."""
    import zarr

    ds = open_timeseries(store)
    root = zarr.open_group(old, mode="w", zarr_format=3)
    batch = dict(ds.attrs["daskmasker_batch"])
    root.attrs["daskmasker_batch"] = {k: batch[k] for k in ("parameters", "versions")}
    for name in ds["run"].values:
        run = open_timeseries(store, str(name)).drop_vars(["volume", "time"])
        for var in run.variables.values():
            var.attrs.clear()
        run.to_zarr(old, group=str(name), mode="w", zarr_format=3, consolidated=False)
        zarr.open_group(old, path=str(name), mode="a").attrs["complete"] = True


def test_open_lists_the_runs_only_while_a_batch_has_not_gathered_them(study_store, monkeypatch):
    """A batch marks the store (``runs/.pending``) when it opens it and unmarks it when its runs
    are gathered: a gathered store opens without listing ``runs/`` (10 requests in turn at
    10,000 runs on S3); one whose batch was killed before gathering lists them and warns."""
    from daskmasker.batch import read
    from daskmasker.batch.store import (
        Location,
        is_pending,
        mark_pending,
        open_output,
        open_run,
        write_run,
    )
    from daskmasker.batch.study import gather

    study, out, _ = study_store
    location = Location(out)
    assert not is_pending(location) and not os.path.exists(os.path.join(out, "runs", ".pending"))
    listings = []
    listed_runs = read.listed_runs
    monkeypatch.setattr(read, "listed_runs", lambda loc: listings.append(1) or listed_runs(loc))
    assert open_timeseries(out).sizes["run"] == 3 and listings == []
    # a batch opens the store, a worker writes a run, the batch is killed before gathering
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **PARAMS).fit()
    location = open_output(out, masker.extraction_spec().attrs, False, None)
    assert not is_pending(location)  # opening writes nothing
    mark_pending(location)  # as every writer does before its first run
    write_run(location, "sub-03_task-rest", open_run(location, "sub-02_task-rest"))
    assert is_pending(location)
    with pytest.warns(UserWarning, match="1 complete runs are not in the study's arrays yet"):
        assert open_timeseries(out).sizes["run"] == 3
    assert listings == [1]
    assert gather(location) == ["sub-03_task-rest"]
    assert not is_pending(location)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_timeseries(out).sizes["run"] == 4
    assert listings == [1]
