"""``daskmasker info`` and ``daskmasker clean`` on batch stores; ``extract --labels``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from daskmasker import NiftiMapsMasker, open_timeseries
from daskmasker.batch.bids import derivative_path
from daskmasker.cli import main

from helpers import write_confounds

NAMES = ["DMN", "Visual", "Motor", "Salience", "Language", "Cerebellum"]


@pytest.fixture
def extracted(study, capsys):
    """``extract`` of both runs with confounds, detrending, z-scoring and region labels."""
    (study["root"] / "labels.txt").write_text("\n".join(NAMES) + "\n")
    out = str(study["root"] / "out.zarr")
    code = main(
        [
            "extract",
            *(r["img"] for r in study["runs"]),
            "--maps",
            study["maps"],
            "--mask",
            study["mask"],
            "--confounds",
            *(r["conf"] for r in study["runs"]),
            "--detrend",
            "--standardize",
            "zscore_sample",
            "--labels",
            str(study["root"] / "labels.txt"),
            "--out",
            out,
            "--tsv-dir",
            str(study["root"] / "tsv"),
            "--no-progress",
            "--no-report",
        ]
    )
    assert code == 0
    capsys.readouterr()
    return study, out


def test_info_counts_one_run_in_the_singular(study, capsys):
    out = str(study["root"] / "one.zarr")
    argv = ["extract", study["runs"][0]["img"], "--maps", study["maps"], "--out", out]
    assert main([*argv, "--no-progress", "--no-report"]) == 0
    capsys.readouterr()
    assert main(["info", out]) == 0
    assert ": daskmasker batch store, 1 run (1 complete, 1 in the study's arrays)" in (
        capsys.readouterr().out
    )


def test_extract_labels_name_the_regions(extracted):
    study, out = extracted
    name = study["runs"][0]["name"]
    assert list(open_timeseries(out, name)["region_name"].values) == NAMES
    tsv = study["root"] / "tsv" / f"{derivative_path(study['runs'][0]['img'], 'maps')}.tsv"
    header = tsv.read_text()
    assert header.splitlines()[0].split("\t") == NAMES


def test_info_shows_runs_shapes_parameters_and_fingerprint_status(extracted, capsys):
    study, out = extracted
    assert main(["info", out]) == 0
    text = capsys.readouterr().out
    assert "2 runs (2 complete, 2 in the study's arrays)" in text
    assert "detrend=True" in text and "standardize=zscore_sample" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[3:]}
    assert rows["sub-01_task-rest"] == ["yes", "40x6", "40", "-", "current"]
    assert rows["sub-02_task-rest"] == ["yes", "45x6", "45", "-", "current"]
    run = study["runs"][1]
    write_confounds(run["conf"], run["n"], seed=3)
    shutil.move(study["runs"][0]["img"], study["root"] / "moved.nii.gz")
    assert main(["info", out]) == 0
    rows = {
        line.split()[0]: " ".join(line.split()[5:])
        for line in capsys.readouterr().out.splitlines()[3:]
    }
    assert rows == {"sub-01_task-rest": "image missing", "sub-02_task-rest": "confounds changed"}


def test_info_on_something_else_fails_clearly(study, capsys):
    assert main(["info", str(study["root"] / "nothing.zarr")]) == 2
    assert "no batch store at" in capsys.readouterr().err


def test_clean_recleans_without_images_as_a_fresh_extraction(extracted, capsys):
    study, out = extracted
    for path in [study["maps"], study["mask"], *(r["img"] for r in study["runs"])]:
        shutil.move(path, f"{path}.away")
    new = str(study["root"] / "new.zarr")
    args = ["clean", out, "--out", new, "--no-detrend", "--standardize", "psc", "--high-pass"]
    assert main([*args, "0.01", "--t-r", "2", "--tsv-dir", str(study["root"] / "tsv2")]) == 0
    assert "2 re-cleaned" in capsys.readouterr().out
    for path in [study["maps"], study["mask"], *(r["img"] for r in study["runs"])]:
        shutil.move(f"{path}.away", path)
    params = dict(detrend=False, standardize="psc", high_pass=0.01, t_r=2.0)
    for run in study["runs"]:
        masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **params)
        expected = masker.fit(run["img"]).transform(run["img"], confounds=run["conf"])
        got = open_timeseries(new, run["name"])
        np.testing.assert_array_equal(got["signals"].values, expected)
        assert list(got["region_name"].values) == NAMES
        tsv = study["root"] / "tsv2" / f"{derivative_path(run['img'], 'maps')}.tsv"
        np.testing.assert_array_equal(np.loadtxt(tsv, skiprows=1), expected)


def test_clean_confounds_options(extracted, capsys):
    study, out = extracted
    none = str(study["root"] / "none.zarr")
    assert main(["clean", out, "--out", none, "--no-confounds", "--all-volumes"]) == 0
    run = study["runs"][0]
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], detrend=True)
    expected = masker.set_params(standardize="zscore_sample").fit(run["img"]).transform(run["img"])
    got = open_timeseries(none, run["name"])
    np.testing.assert_array_equal(got["signals"].values, expected)
    assert "confounds" not in got
    code = main(["clean", out, "--out", str(study["root"] / "x.zarr"), "--confounds", run["conf"]])
    assert code == 2
    err = capsys.readouterr().err
    assert "one entry per run in the store's order (2 runs: ['sub-01_task-rest'" in err


@pytest.mark.parametrize(
    "flag",
    [
        ["--smoothing-fwhm", "6"],
        ["--high-variance-confounds"],
        ["--mask", "other.nii.gz"],
    ],
)
def test_clean_refuses_what_needs_the_voxels(extracted, capsys, flag):
    study, out = extracted
    new = str(study["root"] / "new.zarr")
    assert main(["clean", out, "--out", new, *flag]) == 2
    err = capsys.readouterr().err
    assert f"parameter {flag[0]} cannot be changed by re-cleaning" in err  # quotes the flag
    assert "daskmasker extract" in err
