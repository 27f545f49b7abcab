"""BIDS-derivatives outputs of a batch: names, TSV, sidecars, dataset_description, checksums.

Read back with pybids (it must index the files with the right entities) and checked with the
BIDS validator (bids-validator-deno, the schema-based validator shipped as a wheel).
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from daskmasker import NiftiMapsMasker, open_timeseries
from daskmasker.batch import bids
from daskmasker.batch.run import run_batch
from daskmasker.cli import main
from daskmasker.io.checksum import checksum
from daskmasker.io.convert import to_zarr

from helpers import bids_validator_issues, make_data, make_maps, make_mask
from s3server import s3_server, storage_options

PARAMS = dict(standardize="zscore_sample", detrend=True)
SOURCE = "sub-01_ses-1_task-rest_run-1_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
EXPECTED = "sub-01_ses-1_task-rest_run-1_space-MNI152NLin2009cAsym_atlas-DiFuMo6_timeseries"


def _save(img: nib.Nifti1Image, path: Path, t_r: float) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.header.set_zooms((*img.header.get_zooms()[:3], t_r))
    img.header.set_xyzt_units("mm", "sec")
    img.to_filename(path)
    return str(path)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """A raw BIDS tree: a session run (TR 2 s), a run without session (TR 0: unknown) and a
    run outside BIDS naming."""
    root = tmp_path_factory.mktemp("raw")
    maps = make_maps(dtype=np.float64)
    maps.to_filename(root / "DiFuMo_6.nii.gz")
    make_mask().to_filename(root / "mask.nii.gz")
    runs = {
        "session": _save(
            make_data(maps, n_scans=30, seed=1), root / "sub-01" / "ses-1" / "func" / SOURCE, 2.0
        ),
        "no_tr": _save(
            make_data(maps, n_scans=25, seed=2),
            root / "sub-02" / "func" / "sub-02_task-rest_acq-fast_echo-2_bold.nii.gz",
            0.0,
        ),
        "plain": _save(make_data(maps, n_scans=20, seed=3), root / "run1.nii.gz", 1.5),
    }
    return {"root": root, "maps": str(root / "DiFuMo_6.nii.gz"), "runs": runs}


@pytest.fixture(scope="module")
def derivatives(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    masker = NiftiMapsMasker(raw["maps"], mask_img=str(raw["root"] / "mask.nii.gz"), **PARAMS)
    with pytest.warns(UserWarning, match="'run1' is not a BIDS file name|is not a BIDS file"):
        result = run_batch(
            masker, list(raw["runs"].values()), str(out / "ts.zarr"), tsv_dir=str(out / "bids")
        )
    assert not result.failed and len(result.done) == 3
    return {"root": out / "bids", "store": str(out / "ts.zarr"), "masker": masker}


def test_names_keep_source_entities_in_schema_order():
    assert bids.derivative_path(f"/d/sub-01/ses-1/func/{SOURCE}", "DiFuMo6") == (
        f"sub-01/ses-1/func/{EXPECTED}"
    )
    # res and den follow atlas in the schema's order; desc and the suffix are dropped
    got = bids.derivative_path("sub-2_task-a_res-2_den-91k_desc-x_bold.nii.gz", "A")
    assert got == "sub-2/func/sub-2_task-a_atlas-A_res-2_den-91k_timeseries"
    assert bids.derivative_path("/x/sub-3/perf/sub-3_cbf.nii", "A").startswith("sub-3/perf/")


def test_non_bids_names_fall_back_with_a_warning():
    with pytest.warns(UserWarning, match="'run1.nii.gz' is not a BIDS file name"):
        assert (
            bids.derivative_path("run1.nii.gz", "A") == "sub-run1/func/sub-run1_atlas-A_timeseries"
        )
    with pytest.warns(UserWarning, match=r"entities \['foo'\] are not BIDS entities"):
        assert bids.derivative_path("sub-1_foo-2_bold.nii", "A") == (
            "sub-1/func/sub-1_atlas-A_timeseries"
        )


def test_atlas_label_from_option_or_maps_name():
    assert bids.atlas_label("/a/DiFuMo_64dim.nii.gz") == "DiFuMo64dim"
    assert bids.atlas_label("tpl-MNI_atlas-Schaefer_res-2_dseg.nii.gz") == "Schaefer"
    assert bids.atlas_label("/a/maps.nii.gz", "Mine2") == "Mine2"
    with pytest.raises(ValueError, match="atlas label 'my atlas' is not a BIDS label"):
        bids.atlas_label("/a/maps.nii.gz", "my atlas")
    with pytest.warns(UserWarning, match="pass atlas_label"):
        assert bids.atlas_label(make_maps()) == "maps"


def test_tsv_matches_the_masker_and_the_store(raw, derivatives):
    masker = derivatives["masker"]
    tsv = derivatives["root"] / "sub-01" / "ses-1" / "func" / f"{EXPECTED}.tsv"
    table = pd.read_csv(tsv, sep="\t", na_values="n/a", keep_default_na=False)
    expected = (
        NiftiMapsMasker(raw["maps"], mask_img=str(raw["root"] / "mask.nii.gz"), **PARAMS)
        .set_output(transform="pandas")
        .fit_transform(raw["runs"]["session"])
    )
    assert list(table.columns) == list(expected.columns) == list(masker.get_feature_names_out())
    np.testing.assert_allclose(table.to_numpy(), expected.to_numpy(), rtol=1e-12, atol=1e-12)
    group = SOURCE.replace("_bold.nii.gz", "")
    stored = open_timeseries(derivatives["store"], group)
    np.testing.assert_array_equal(table.to_numpy(), stored["signals"].values)


def test_missing_values_are_na():
    text = bids.tsv_text(np.array([[1.5, np.nan], [np.nan, -2.0]]), ["a", "b"])
    assert text == "a\tb\n1.5\tn/a\nn/a\t-2.0\n"
    assert bids.to_json({"x": float("nan"), "y": None, "z": np.float32(1)}) == (
        '{\n  "x": null,\n  "y": null,\n  "z": 1.0\n}'
    )


def test_sidecars(raw, derivatives):
    root = derivatives["root"]
    side = json.loads((root / "sub-01" / "ses-1" / "func" / f"{EXPECTED}.json").read_text())
    assert side["SamplingFrequency"] == 0.5 and side["StartTime"] == 0.0
    columns = list(derivatives["masker"].get_feature_names_out())
    assert side["Columns"] == columns
    for k, column in enumerate(columns):
        assert f"map {k} of {raw['maps']}" in side[column]["Description"]
    assert side["Sources"] == [f"bids:source:sub-01/ses-1/func/{SOURCE}"]
    digest = hashlib.sha256(Path(raw["runs"]["session"]).read_bytes()).hexdigest()
    assert side["daskmasker"]["checksum"] == f"sha256:{digest}"
    assert side["daskmasker"]["parameters"]["low_pass"] is None
    # TR 0 in the header: unknown, so null (JSON null, never "None" or NaN)
    text = (
        root / "sub-02" / "func" / "sub-02_task-rest_acq-fast_echo-2_atlas-DiFuMo6_timeseries.json"
    ).read_text()
    assert json.loads(text)["SamplingFrequency"] is None
    assert '"SamplingFrequency": null' in text
    assert "None" not in text and "NaN" not in text


def test_dataset_description(raw, derivatives):
    desc = json.loads((derivatives["root"] / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["BIDSVersion"] == bids.bids_version()
    assert desc["GeneratedBy"] == [{"Name": "daskmasker", "Version": version("daskmasker")}]
    assert desc["DatasetLinks"] == {"source": str(raw["root"])}
    assert desc["SourceDatasets"] == [{"URL": str(raw["root"])}]


def test_pybids_indexes_the_outputs_with_their_entities(derivatives):
    from bids import BIDSLayout

    layout = BIDSLayout(derivatives["root"], validate=False, is_derivative=True)
    found = layout.get(suffix="timeseries", extension=".tsv")
    entities = sorted(
        (
            f.entities["subject"],
            f.entities.get("session"),
            f.entities.get("run"),
            f.entities.get("atlas"),
            f.entities.get("space"),
        )
        for f in found
    )
    assert entities == [
        ("01", "1", 1, "DiFuMo6", "MNI152NLin2009cAsym"),
        ("02", None, None, "DiFuMo6", None),
        ("run1", None, None, "DiFuMo6", None),
    ]
    sub02 = layout.get(subject="02", suffix="timeseries", extension=".tsv")[0]
    assert sub02.entities["acquisition"] == "fast" and str(sub02.entities["echo"]) == "2"
    sub01 = layout.get(subject="01", suffix="timeseries", extension=".tsv")[0]
    assert sub01.get_metadata()["SamplingFrequency"] == 0.5


def test_bids_validator_finds_no_error(derivatives, tmp_path):
    """The validator's schema has no rule for functional *_timeseries.tsv derivatives yet
    (BEP012; fMRIPrep's desc-confounds_timeseries.tsv are NOT_INCLUDED alike): that code is
    ignored for them, everything else must pass."""
    issues = bids_validator_issues(derivatives["root"], tmp_path)
    errors = [(i["code"], i.get("location")) for i in issues if i["severity"] == "error"]
    assert errors == []
    warnings = {i["code"] for i in issues if i["severity"] == "warning"}
    # UNKNOWN_BIDS_VERSION: the validator bundles BIDS 1.11.1, bidsschematools (whose version
    # we write) is at 1.11.2 or later
    assert warnings <= {"README_FILE_MISSING", "TOO_FEW_AUTHORS", "UNKNOWN_BIDS_VERSION"}
    ignored = {i["location"] for i in issues if i["severity"] == "ignore"}
    assert len(ignored) == 6  # 3 runs x (tsv, json), each matched by nothing but the ignore


def test_two_runs_with_one_name_fail_before_computing(raw, tmp_path):
    session = raw["runs"]["session"]
    masker = NiftiMapsMasker(raw["maps"])
    with pytest.raises(ValueError, match=f"would both be written to .*{EXPECTED}.tsv"):
        run_batch(masker, [session, session], str(tmp_path / "o.zarr"), tsv_dir=str(tmp_path))
    assert not (tmp_path / "o.zarr" / "item-0000").exists()


def test_refuses_another_pipelines_folder(raw, tmp_path):
    (tmp_path / "dataset_description.json").write_text(
        json.dumps({"Name": "x", "BIDSVersion": "1.10.0", "GeneratedBy": [{"Name": "fMRIPrep"}]})
    )
    with pytest.raises(ValueError, match="not generated by daskmasker"):
        run_batch(
            NiftiMapsMasker(raw["maps"]),
            [raw["runs"]["session"]],
            str(tmp_path / "o.zarr"),
            tsv_dir=str(tmp_path),
        )


def test_resume_with_tsv_dir_exports_complete_runs(raw, derivatives, tmp_path):
    """A store made without --tsv-dir: a rerun with it writes the TSVs from the store."""
    masker = NiftiMapsMasker(raw["maps"], mask_img=str(raw["root"] / "mask.nii.gz"), **PARAMS)
    runs = [raw["runs"]["session"], raw["runs"]["no_tr"]]
    store = str(tmp_path / "ts.zarr")
    assert len(run_batch(masker, runs, store).done) == 2
    again = run_batch(masker, runs, store, tsv_dir=str(tmp_path / "bids"))
    assert again.done == [] and len(again.skipped) == 2
    for relative in (
        f"sub-01/ses-1/func/{EXPECTED}",
        "sub-02/func/sub-02_task-rest_acq-fast_echo-2_atlas-DiFuMo6_timeseries",
    ):
        for ext in (".tsv", ".json"):
            a = (tmp_path / "bids" / f"{relative}{ext}").read_text()
            b = (derivatives["root"] / f"{relative}{ext}").read_text()
            if ext == ".json":
                a, b = json.loads(a), json.loads(b)
                for side in (a, b):
                    del side["daskmasker"]["versions"]["written"]
            assert a == b


def test_cli_bids_dir_and_atlas_label(raw, tmp_path):
    code = main(
        [
            "extract",
            raw["runs"]["session"],
            "--maps",
            raw["maps"],
            "--out",
            str(tmp_path / "o.zarr"),
            "--bids-dir",
            str(tmp_path / "bids"),
            "--atlas-label",
            "Custom7",
            "--no-progress",
            "--no-report",
        ]
    )
    assert code == 0
    name = EXPECTED.replace("DiFuMo6", "Custom7")
    assert (tmp_path / "bids" / "sub-01" / "ses-1" / "func" / f"{name}.tsv").exists()
    assert (
        main(
            [
                "extract",
                raw["runs"]["session"],
                "--maps",
                raw["maps"],
                "--out",
                str(tmp_path / "p.zarr"),
                "--bids-dir",
                str(tmp_path),
                "--atlas-label",
                "a-b",
            ]
        )
        == 2
    )


def test_checksums_are_the_bytes_digest_local_or_on_s3(raw, tmp_path):
    """The one checksum of the store's attrs, the fingerprints and the sidecars
    (io/checksum.py; in-memory inputs and Zarr copies: tests/batch/test_fingerprint.py)."""
    nii_gz = raw["runs"]["session"]
    assert checksum(nii_gz) == "sha256:" + hashlib.sha256(Path(nii_gz).read_bytes()).hexdigest()
    nii = tmp_path / "run.nii"
    nib.load(nii_gz).to_filename(nii)
    assert checksum(str(nii)) == "sha256:" + hashlib.sha256(nii.read_bytes()).hexdigest()
    store = to_zarr(nii_gz, str(tmp_path / "run.zarr"))
    # a URL (S3) gives the bytes' digest, as the local file does
    with s3_server() as endpoint:
        import s3fs

        opts = storage_options(endpoint)
        fs = s3fs.S3FileSystem(**opts)
        fs.mkdir("checksums")
        fs.put(nii_gz, "checksums/run.nii.gz")
        fs.put(store, "checksums/run.zarr", recursive=True)
        assert checksum("s3://checksums/run.nii.gz", opts) == checksum(nii_gz)
        assert checksum("s3://checksums/run.zarr", opts) == checksum(store)
