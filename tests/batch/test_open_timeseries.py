"""Stores keep what an audit needs, open lazily as plain xarray, and name regions the same way
in Zarr, TSV and pandas outputs."""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import pandas as pd
import pytest
import zarr

from daskmasker import NiftiMapsMasker, open_timeseries, run_batch
from daskmasker.batch.bids import derivative_path

from helpers import BATCH_T_R, make_mask

PARAMS = dict(standardize="zscore_sample", detrend=True)


def sha256(path) -> str:
    return "sha256:" + hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def store(study):
    out = str(study["root"] / "out.zarr")
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **PARAMS)
    keep = np.arange(3, 38)  # the first run loses its first 3 and last 2 volumes
    result = run_batch(
        masker,
        [r["img"] for r in study["runs"]],
        out,
        confounds=[r["conf"] for r in study["runs"]],
        sample_masks=[keep, None],
    )
    assert not result.failed
    return study, out, keep


def test_a_run_keeps_what_an_audit_needs(store):
    study, out, keep = store
    run = study["runs"][0]
    ds = open_timeseries(out, run["name"])
    np.testing.assert_array_equal(ds["frame"].values, keep)
    np.testing.assert_allclose(ds["time"].values, keep * BATCH_T_R)
    assert ds["time"].attrs["units"] == "s"
    assert ds.attrs["t_r"] == BATCH_T_R and ds.attrs["t_r_source"] == "image header"
    assert list(ds["confound"].values) == ["csf", "white_matter", "fd"]
    np.testing.assert_allclose(
        ds["confounds"].values, pd.read_csv(run["conf"], sep="\t").to_numpy(), rtol=1e-15
    )
    assert ds.attrs["source"] == run["img"] and ds.attrs["checksum"] == sha256(run["img"])
    assert ds.attrs["confounds_source"] == run["conf"]
    assert ds.attrs["confounds_checksum"] == sha256(run["conf"])
    assert ds["raw_signals"].shape == (run["n"], 6) and ds["raw_signals"].dtype == np.float64
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **PARAMS).fit(run["img"])
    expected = masker.transform(run["img"], confounds=run["conf"], sample_mask=keep)
    np.testing.assert_allclose(ds["signals"].values, expected, rtol=1e-10, atol=1e-12)


def test_open_timeseries_errors_name_the_store(study, store):
    _, out, _ = store
    with pytest.raises(KeyError, match="no run 'sub-09' in .*runs: \\['sub-01_task-rest'"):
        open_timeseries(out, "sub-09")
    with pytest.raises(FileNotFoundError, match="no batch store at"):
        open_timeseries(str(study["root"] / "missing.zarr"))
    zarr.open_group(str(study["root"] / "plain.zarr"), mode="w")
    with pytest.raises(ValueError, match="not a daskmasker batch store"):
        open_timeseries(str(study["root"] / "plain.zarr"))


NAMES = ["DMN", "Visual", "Motor", "Salience", "Language", "Cerebellum"]


def labels_of(kind, root):
    if kind == "default":
        return None
    if kind == "list":
        return NAMES
    if kind == "txt":
        (root / "labels.txt").write_text("\n".join(NAMES) + "\n")
        return str(root / "labels.txt")
    table = pd.DataFrame({"index": range(1, 7), "name": NAMES, "network": ["x"] * 6})
    table.to_csv(root / "labels.tsv", sep="\t", index=False)
    return str(root / "labels.tsv")


def dropped_warning(mask_radius):
    """nilearn's warning when the mask removes maps (a small mask), else no check."""
    if mask_radius < 10:
        return pytest.warns(UserWarning, match="maps with the following indices were removed")
    return contextlib.nullcontext()


@pytest.mark.parametrize("kind", ["default", "list", "txt", "tsv"])
@pytest.mark.parametrize("mask_radius", [30.0, 6.0], ids=["all-maps", "maps-dropped"])
def test_region_names_agree_in_zarr_tsv_and_pandas(study, kind, mask_radius):
    root = study["root"]
    make_mask(radius=mask_radius, centre=(12.0, 12.0, 6.0)).to_filename(study["mask"])
    run = study["runs"][0]
    labels = labels_of(kind, root)
    masker = NiftiMapsMasker(
        study["maps"], mask_img=study["mask"], region_names=labels, standardize=None
    )
    with dropped_warning(mask_radius):
        frame = masker.set_output(transform="pandas").fit_transform(run["img"])
    columns = list(frame.columns)
    if kind != "default":
        assert set(columns) <= set(NAMES)
    assert len(columns) == (3 if mask_radius < 10 else 6)
    out = str(root / "out.zarr")
    masker = NiftiMapsMasker(
        study["maps"], mask_img=study["mask"], region_names=labels, standardize=None
    )
    with dropped_warning(mask_radius):
        run_batch(masker, [run["img"]], out, tsv_dir=str(root / "tsv"))
    zarr_names = list(open_timeseries(out, run["name"])["region_name"].values)
    tsv = root / "tsv" / f"{derivative_path(run['img'], 'maps')}.tsv"  # atlas from maps.nii.gz
    tsv_names = tsv.read_text().splitlines()[0].split("\t")
    assert zarr_names == tsv_names == columns == list(open_timeseries(out)["region_name"].values)


def test_region_names_are_checked_at_fit(study, tmp_path):
    with pytest.raises(ValueError, match="region_names has 2 names but maps_img has 6 maps"):
        NiftiMapsMasker(study["maps"], region_names=["a", "b"]).fit()
    (tmp_path / "l.txt").write_text("a\nb\na\nc\nd\ne\n")
    with pytest.raises(ValueError, match="region_names repeats names .*l.txt.*\\['a'\\]"):
        NiftiMapsMasker(study["maps"], region_names=str(tmp_path / "l.txt")).fit()
    (tmp_path / "l.tsv").write_text("index\tcolour\n1\tred\n")
    with pytest.raises(ValueError, match="has no names column"):
        NiftiMapsMasker(study["maps"], region_names=str(tmp_path / "l.tsv")).fit()


def test_region_names_is_a_parameter_of_both_maskers(study):
    from sklearn.base import clone

    from daskmasker import MultiNiftiMapsMasker

    for cls in (NiftiMapsMasker, MultiNiftiMapsMasker):
        masker = clone(cls(study["maps"], region_names=NAMES))
        assert masker.get_params()["region_names"] == NAMES
        assert list(masker.fit().get_feature_names_out()) == NAMES
