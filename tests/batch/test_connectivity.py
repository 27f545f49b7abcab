"""``daskmasker.connectivity`` on the Dataset ``open_timeseries`` returns: labelled, lazy,
nilearn's numbers per run; and the BIDS relmat files ``write_relmats`` writes from it."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from nilearn.connectome import ConnectivityMeasure
from sklearn.covariance import OAS, EmpiricalCovariance

import daskmasker
from daskmasker.batch.connectome import run_stems, write_dataset_relmats
from daskmasker.compute.connectivity import KINDS

from helpers import correlated_runs, timeseries_dataset

LENGTHS = [40, 55, 30, 48, 60, 35]
ENTITIES = [
    {"subject": "01", "task": "rest", "session": "1"},
    {"subject": "01", "task": "nback", "session": "1"},
    {"subject": "02", "task": "rest", "session": ""},
    {"subject": "02", "task": "nback", "session": ""},
    {"subject": "03", "task": "rest", "session": ""},
    {"subject": "03", "task": "nback", "session": ""},
]


@pytest.fixture
def runs():
    return correlated_runs(LENGTHS, 6, seed=7)


@pytest.fixture
def ds(runs):
    return timeseries_dataset(runs, ENTITIES, chunks=2)


@pytest.mark.parametrize("kind", KINDS)
def test_connectivity_is_labelled_lazy_and_nilearns(ds, runs, kind):
    out = daskmasker.connectivity(ds, kind=kind)
    assert isinstance(out.data, da.Array)
    assert out.dims == ("run", "region", "region_")
    assert list(out["subject"].values) == [e["subject"] for e in ENTITIES]
    assert list(out["n_frames"].values) == LENGTHS
    assert list(out["region_name_"].values) == list(ds["region_name"].values)
    expected = ConnectivityMeasure(kind=kind).fit_transform(runs)
    np.testing.assert_allclose(out.values, expected, atol=1e-10 * np.abs(expected).max())
    assert out.attrs["kind"] == kind


@pytest.mark.parametrize("discard_diagonal", [False, True])
def test_vectorized_features_name_their_region_pairs(ds, runs, discard_diagonal):
    out = daskmasker.connectivity(
        ds, kind="partial correlation", vectorize=True, discard_diagonal=discard_diagonal
    )
    measure = ConnectivityMeasure(
        kind="partial correlation", vectorize=True, discard_diagonal=discard_diagonal
    )
    np.testing.assert_allclose(out.values, measure.fit_transform(runs), atol=1e-10)
    assert out.dims == ("run", "feature")
    matrices = daskmasker.connectivity(ds, kind="partial correlation").values
    rows, cols = out["region_i"].values, out["region_j"].values
    assert (rows >= cols + discard_diagonal).all()
    off = rows != cols
    np.testing.assert_array_equal(out.values[:, off], matrices[:, rows[off], cols[off]])
    assert out["region_name_i"].values[0] == ("region 1" if discard_diagonal else "region 0")


def test_mean_and_whitening_are_nilearns(ds, runs):
    measured = daskmasker.connectivity_measure(ds, kind="tangent")
    measure = ConnectivityMeasure(kind="tangent").fit(runs)
    np.testing.assert_allclose(measured["mean"].values, measure.mean_, atol=1e-10)
    np.testing.assert_allclose(measured["whitening"].values, measure.whitening_, atol=1e-10)
    assert measured["mean"].dims == ("region", "region_")


def test_runs_are_selected_with_xarray(ds, runs):
    rest = ds.where(ds.task == "rest", drop=True)
    out = daskmasker.connectivity(rest, kind="tangent")
    kept = [r for r, e in zip(runs, ENTITIES, strict=True) if e["task"] == "rest"]
    expected = ConnectivityMeasure(kind="tangent").fit_transform(kept)
    np.testing.assert_allclose(out.values, expected, atol=1e-10 * np.abs(expected).max())
    by_task = ds.groupby("task").map(lambda g: daskmasker.connectivity(g, kind="correlation"))
    assert sorted(by_task["task"].values) == sorted(e["task"] for e in ENTITIES)


@pytest.mark.parametrize("estimator", [EmpiricalCovariance(), OAS(), "empirical"])
def test_other_covariance_estimators_as_nilearn(ds, runs, estimator):
    out = daskmasker.connectivity(ds, kind="covariance", cov_estimator=estimator)
    nilearn_estimator = EmpiricalCovariance() if estimator == "empirical" else estimator
    measure = ConnectivityMeasure(kind="covariance", cov_estimator=nilearn_estimator)
    np.testing.assert_allclose(out.values, measure.fit_transform(runs), rtol=1e-10)


def test_wrong_inputs_are_named(ds):
    with pytest.raises(ValueError, match="kind must be one of"):
        daskmasker.connectivity(ds, kind="Pearson")
    with pytest.raises(ValueError, match="cov_estimator must be one of"):
        daskmasker.connectivity(ds, cov_estimator="shrunk")
    with pytest.raises(ValueError, match="must be an estimator with '.fit"):
        daskmasker.connectivity(ds, cov_estimator=3)
    with pytest.raises(ValueError, match="no 'n_frames' coordinate"):
        daskmasker.connectivity(ds.drop_vars("n_frames"))
    with pytest.raises(ValueError, match=r"dims \(run, time, region\)"):
        daskmasker.connectivity(ds["signals"].isel(run=0))


def test_relmats_are_written_beside_the_time_series(tmp_path, ds, runs):
    root = tmp_path / "bids"
    ts = root / "sub-01/ses-1/func/sub-01_ses-1_task-rest_atlas-DiFuMo64_timeseries.tsv"
    ts.parent.mkdir(parents=True)
    ts.write_text("x\n")
    written = write_dataset_relmats(ds, str(root), ["correlation", "tangent"], "DiFuMo64")
    stem = "sub-01/ses-1/func/sub-01_ses-1_task-rest_atlas-DiFuMo64"
    assert run_stems(ds, "DiFuMo64")[0] == stem
    assert run_stems(ds, "DiFuMo64")[2] == "sub-02/func/sub-02_task-rest_atlas-DiFuMo64"
    table = pd.read_csv(root / f"{stem}_meas-PearsonCorrelation_relmat.tsv", sep="\t")
    assert list(table.columns) == [f"region {j}" for j in range(6)]
    expected = ConnectivityMeasure(kind="correlation").fit_transform(runs)
    np.testing.assert_allclose(table.to_numpy(), expected[0], rtol=1e-15)
    sidecar = json.loads((root / f"{stem}_meas-Tangent_relmat.json").read_text())
    assert sidecar["Measure"] == "Tangent" and sidecar["daskmasker"]["n_frames"] == 40
    assert sidecar["Sources"] == [
        f"bids::{stem}_timeseries.tsv",
        "bids::group/atlas-DiFuMo64_meas-Tangent_desc-mean_relmat.tsv",
    ]
    measure = ConnectivityMeasure(kind="tangent").fit(runs)
    tangent = pd.read_csv(root / f"{stem}_meas-Tangent_relmat.tsv", sep="\t").to_numpy()
    np.testing.assert_allclose(tangent, measure.transform(runs)[0], atol=1e-10)
    mean = root / "group/atlas-DiFuMo64_meas-Tangent_desc-mean_relmat.tsv"
    np.testing.assert_allclose(pd.read_csv(mean, sep="\t").to_numpy(), measure.mean_, atol=1e-10)
    assert (root / "group/atlas-DiFuMo64_meas-Tangent_desc-whitening_relmat.tsv").exists()
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert len(written) == 1 + 2 * 2 * len(LENGTHS) + 2 + 4
    assert all((root / path).exists() for path in written)
    assert not list(root.rglob("*.partial"))


def test_group_files_keep_the_entities_all_runs_share(tmp_path, runs):
    ds = timeseries_dataset(runs, [{"subject": f"{i}", "task": "rest"} for i in range(6)])
    written = write_dataset_relmats(ds, str(tmp_path), ["covariance"], "X")
    assert "group/task-rest_atlas-X_meas-Covariance_desc-mean_relmat.tsv" in written


def test_relmats_refuse_clashing_names_and_foreign_folders(tmp_path, runs):
    same = timeseries_dataset(runs[:2], [{"subject": "01", "task": "rest"}] * 2, names=["a", "b"])
    with pytest.raises(ValueError, match="runs 'a' and 'b' would both be written"):
        write_dataset_relmats(same, str(tmp_path), ["correlation"], "X")
    (tmp_path / "dataset_description.json").write_text(
        json.dumps({"Name": "x", "GeneratedBy": [{"Name": "fmriprep"}]})
    )
    ds = timeseries_dataset(runs)
    with pytest.raises(ValueError, match="not generated by daskmasker"):
        write_dataset_relmats(ds, str(tmp_path), ["correlation"], "X")
    with pytest.raises(ValueError, match="kind must be one of"):
        write_dataset_relmats(ds, str(tmp_path / "new"), ["pearson"], "X")
