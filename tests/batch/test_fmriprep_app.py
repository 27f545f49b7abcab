"""``daskmasker bids FMRIPREP_DIR OUT participant|group`` on a generated fMRIPrep tree.

The reference is nilearn itself: its NiftiMapsMasker fed by its load_confounds_strategy on the
same files (float64 data and maps: equal within 1e-10).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.interfaces.fmriprep import load_confounds_strategy
from nilearn.maskers import NiftiMapsMasker as NilearnMapsMasker

from daskmasker import open_timeseries
from daskmasker.cli import main
from daskmasker.synthetic import make_maps
from daskmasker.synthetic_fmriprep import SMALL_AFFINE, SMALL_SHAPE, make_fmriprep_dataset

from helpers import bids_validator_issues

SPACE = "MNI152NLin2009cAsym"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """2 subjects x 2 sessions x 2 runs, 80 volumes on a 20x24x20 grid, float64; 8 maps."""
    root = tmp_path_factory.mktemp("fmriprep")
    runs = make_fmriprep_dataset(
        root / "fmriprep", runs=("1", "2"), n_volumes=80, dtype=np.float64, seed=3
    )
    maps = make_maps(8, SMALL_SHAPE, SMALL_AFFINE, seed=1, dtype=np.float64)
    maps.to_filename(root / "difumo8.nii.gz")
    return {
        "root": root,
        "fmriprep": root / "fmriprep",
        "maps": root / "difumo8.nii.gz",
        "runs": runs,
    }


def _bids(tree, out, *options) -> int:
    return main(["-q", "bids", str(tree["fmriprep"]), str(out), *options, "--no-progress"])


def _participant(tree, out, *options) -> int:
    """The participant level on the tree's atlas (labelled DiFuMo8)."""
    return _bids(
        tree, out, "participant", "--maps", str(tree["maps"]), "--atlas-label", "DiFuMo8", *options
    )


def _tsv(out: Path, record: dict, atlas: str = "DiFuMo8", space: str = SPACE) -> Path:
    e = record["entities"]
    stem = f"sub-{e['sub']}_ses-{e['ses']}_task-{e['task']}_run-{e['run']}_space-{space}"
    return (
        out
        / f"sub-{e['sub']}"
        / f"ses-{e['ses']}"
        / "func"
        / f"{stem}_atlas-{atlas}_timeseries.tsv"
    )


def _nilearn(tree, bold, strategy, **kwargs):
    confounds, sample_mask = load_confounds_strategy(str(bold), strategy, **kwargs)
    masker = NilearnMapsMasker(str(tree["maps"]), standardize="zscore_sample", t_r=2.0)
    return masker.fit_transform(str(bold), confounds=confounds, sample_mask=sample_mask)


@pytest.mark.parametrize(
    ("strategy", "options", "kwargs"),
    [
        ("simple", [], {}),
        (
            "simple",
            ["--global-signal", "basic", "--motion", "basic"],
            {"global_signal": "basic", "motion": "basic"},
        ),
        ("scrubbing", ["--fd-threshold", "0.1", "--scrub", "3"], {"fd_threshold": 0.1, "scrub": 3}),
        ("compcor", ["--n-compcor", "4"], {"n_compcor": 4}),
        ("ica_aroma", ["--space", "MNI152NLin6Asym"], {}),
    ],
)
def test_signals_equal_nilearns_masker_fed_by_load_confounds_strategy(
    tree, tmp_path, strategy, options, kwargs
):
    out = tmp_path / "out"
    code = _participant(
        tree,
        out,
        "--participant-label",
        "sub-01",
        "--denoise-strategy",
        strategy,
        *options,
    )
    assert code == 0
    aroma = strategy == "ica_aroma"
    space = "MNI152NLin6Asym" if aroma else SPACE
    records = [r for r in tree["runs"] if r["entities"]["sub"] == "01"]
    assert len(records) == 4
    store = open_timeseries(str(out / "stores" / "atlas-DiFuMo8.zarr"))
    assert store.sizes["run"] == 4  # sub-02 left out
    for record in records:
        bold = record["aroma_bold" if aroma else "bold"]
        expected = _nilearn(tree, bold, strategy, **kwargs)
        got = pd.read_csv(_tsv(out, record, space=space), sep="\t").to_numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
        sidecar = json.loads(_tsv(out, record, space=space).with_suffix(".json").read_text())
        assert sidecar["Denoising"]["strategy"] == strategy
        for key, value in kwargs.items():
            assert sidecar["Denoising"]["load_confounds"][key] == value
        confounds, _ = load_confounds_strategy(str(bold), strategy, **kwargs)
        assert sidecar["Denoising"]["ConfoundRegressors"] == list(confounds.columns)
    # negative control: the same masker without the strategy's confounds is far from them
    bold = records[0]["aroma_bold" if aroma else "bold"]
    _, sample_mask = load_confounds_strategy(str(bold), strategy, **kwargs)
    plain = NilearnMapsMasker(str(tree["maps"]), standardize="zscore_sample", t_r=2.0)
    undenoised = plain.fit_transform(str(bold), sample_mask=sample_mask)
    got = pd.read_csv(_tsv(out, records[0], space=space), sep="\t").to_numpy()
    assert np.abs(got - undenoised).max() > 1e-2


def test_scrubbing_keeps_nilearns_volumes_and_records_them(tree, tmp_path):
    out = tmp_path / "out"
    assert (
        _participant(
            tree,
            out,
            "--participant-label",
            "02",
            "--session-label",
            "ses-1",
            "--denoise-strategy",
            "scrubbing",
        )
        == 0
    )
    record = next(
        r
        for r in tree["runs"]
        if r["entities"] == {"sub": "02", "ses": "1", "task": "rest", "run": "1"}
    )
    _, sample_mask = load_confounds_strategy(str(record["bold"]), "scrubbing")
    assert 0 < len(sample_mask) < 80  # the spikes and the non-steady-state volume removed
    ds = open_timeseries(
        str(out / "stores" / "atlas-DiFuMo8.zarr"),
        run=(f"sub-02_ses-1_task-rest_run-1_space-{SPACE}"),
    )
    np.testing.assert_array_equal(ds["frame"].values, sample_mask)
    denoise = ds.attrs["denoise"]
    assert denoise["NumberOfVolumesKept"] == len(sample_mask)
    assert denoise["NumberOfVolumesDiscardedByNonsteadyStatesDetector"] == 1
    assert denoise["NumberOfVolumesDiscardedByMotionScrubbing"] == 80 - len(sample_mask) - 1
    sidecar = json.loads(_tsv(out, record).with_suffix(".json").read_text())
    assert sidecar["daskmasker"]["volumes"] == sample_mask.tolist()


def test_rerun_skips_subset_adds_changed_strategy_refused_killed_run_redone(tree, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["participant", "--maps", str(tree["maps"]), "--atlas-label", "DiFuMo8"]
    assert _bids(tree, out, *args, "--participant-label", "01") == 0
    store = out / "stores" / "atlas-DiFuMo8.zarr"
    assert open_timeseries(str(store)).sizes["run"] == 4
    # the other participant: added to the same store, sub-01's runs skipped
    assert main(["bids", str(tree["fmriprep"]), str(out), *args, "--no-progress"]) == 0
    assert "4 extracted, 4 already complete, 0 failed" in capsys.readouterr().err
    assert open_timeseries(str(store)).sizes["run"] == 8
    # the same again: everything skipped
    assert main(["bids", str(tree["fmriprep"]), str(out), *args, "--no-progress"]) == 0
    assert "0 extracted, 8 already complete" in capsys.readouterr().err
    # another strategy: refused, naming what differs
    assert _bids(tree, out, *args, "--denoise-strategy", "compcor") == 2
    err = capsys.readouterr().err
    assert "denoising 'strategy' was simple, now compcor" in err and "--overwrite" in err
    # a run killed midway (its packed object never written, see docs/store.md) is redone
    from daskmasker.batch.index import read_index, write_index
    from daskmasker.batch.store import pack_path
    from daskmasker.io.fs import Location

    name = f"sub-02_ses-2_task-rest_run-2_space-{SPACE}"
    location = Location(str(store))
    Path(pack_path(location, name)).unlink()
    index = read_index(location)
    index.pop(name)
    write_index(location, index)
    before = pd.read_csv(_tsv(out, tree["runs"][-1]), sep="\t")
    _tsv(out, tree["runs"][-1]).unlink()
    assert main(["bids", str(tree["fmriprep"]), str(out), *args, "--no-progress"]) == 0
    assert "1 extracted, 7 already complete" in capsys.readouterr().err
    pd.testing.assert_frame_equal(pd.read_csv(_tsv(out, tree["runs"][-1]), sep="\t"), before)


def test_a_rerun_that_scrubs_other_volumes_or_changes_min_coverage_is_refused(
    tree, tmp_path, capsys
):
    """From the command line the sample mask comes from the denoising strategy: another
    threshold scrubs other volumes, and the refusal names both the option and the sample mask
    (issue 29: the sample mask dropped from the fingerprint fails here); ``--min-coverage``,
    a masker parameter only ``bids`` exposes, is refused naming its flag."""
    out = tmp_path / "out"
    scrub = ["--participant-label", "01", "--denoise-strategy", "scrubbing", "--scrub", "0"]
    assert _participant(tree, out, *scrub, "--fd-threshold", "0.2") == 0
    store = open_timeseries(str(out / "stores" / "atlas-DiFuMo8.zarr"))
    before = store["signals"].values
    capsys.readouterr()
    assert _participant(tree, out, *scrub, "--fd-threshold", "0.1") == 2
    err = capsys.readouterr().err
    assert "denoising 'load_confounds' was {" in err and "'fd_threshold': 0.1" in err, err
    assert "'strategy': ['high_pass', 'motion'" in err and "[--high-pass" not in err, err
    assert "sample_mask changed (other volumes kept)" in err, err
    assert _participant(tree, out, *scrub, "--fd-threshold", "0.2", "--min-coverage", "0.5") == 2
    err = capsys.readouterr().err
    assert "parameter --min-coverage was None, now 0.5" in err and "--overwrite" in err, err
    after = open_timeseries(str(out / "stores" / "atlas-DiFuMo8.zarr"))["signals"].values
    np.testing.assert_array_equal(after, before)  # nothing written by the refused reruns


def _coverage(mask_path, maps_path) -> np.ndarray:
    maps = np.abs(np.asarray(nib.load(maps_path).dataobj, dtype=np.float64))
    inside = np.asarray(nib.load(mask_path).dataobj) > 0
    return maps[inside].sum(0) / maps.reshape(-1, maps.shape[-1]).sum(0)


def test_min_coverage_regions_are_nan_named_and_coverage_stored(tree, tmp_path, capsys):
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert (
            _participant(
                tree,
                out,
                "--participant-label",
                "02",
                "--min-coverage",
                "0.9",
            )
            == 0
        )
    store = str(out / "stores" / "atlas-DiFuMo8.zarr")
    messages = " ".join(str(w.message) for w in caught)
    low_seen = 0
    for record in [r for r in tree["runs"] if r["entities"]["sub"] == "02"]:
        expected = _coverage(record["mask"], tree["maps"])
        e = record["entities"]
        name = f"sub-02_ses-{e['ses']}_task-rest_run-{e['run']}_space-{SPACE}"
        ds = open_timeseries(store, run=name).load()
        np.testing.assert_allclose(ds["coverage"].values, expected, rtol=1e-12)
        low = np.flatnonzero(expected < 0.9)
        low_seen += low.size
        assert ds.attrs["low_coverage_regions"] == low.tolist()
        signals = pd.read_csv(_tsv(out, record), sep="\t")
        nan_columns = [c for c in signals.columns if signals[c].isna().all()]
        assert nan_columns == [f"niftimapsmasker{k}" for k in low]
        assert not signals.drop(columns=nan_columns).isna().any().any()
        sidecar = json.loads(_tsv(out, record).with_suffix(".json").read_text())
        assert sidecar["daskmasker"]["coverage"]["BelowMinCoverage"] == nan_columns
        for k in low:
            assert f"niftimapsmasker{k} ({expected[k]:.2f})" in messages
    assert low_seen > 0, "the tree's brain masks must leave some maps below 0.9"
    assert main(["info", store]) == 0
    text = capsys.readouterr().out
    assert "coverage min (below)" in text
    for line in text.splitlines()[3:]:
        float(line.split()[4])
        assert line.split()[5].startswith("(")
    # negative control: without --min-coverage, no region is NaN (coverage still stored)
    plain = tmp_path / "plain"
    assert (
        _participant(
            tree,
            plain,
            "--participant-label",
            "02",
        )
        == 0
    )
    for record in [r for r in tree["runs"] if r["entities"]["sub"] == "02"]:
        assert not pd.read_csv(_tsv(plain, record), sep="\t").isna().any().any()


def test_min_coverage_masker_parameter_defaults_off(tree):
    from daskmasker import NiftiMapsMasker

    bold = str(tree["runs"][0]["bold"])
    smallest = min(tree["runs"], key=lambda r: np.asarray(nib.load(r["mask"]).dataobj).sum())
    mask = nib.load(smallest["mask"])
    expected = _coverage(smallest["mask"], tree["maps"])
    masker = NiftiMapsMasker(str(tree["maps"]), mask_img=mask, min_coverage=0.9, standardize=None)
    assert NiftiMapsMasker().get_params()["min_coverage"] is None
    with pytest.warns(UserWarning, match="cover less than min_coverage=0.9") as record:
        got = masker.fit_transform(bold)
    low = np.flatnonzero(expected < 0.9)
    assert low.size and np.isnan(got[:, low]).all()
    assert not np.isnan(np.delete(got, low, axis=1)).any()
    assert all(f"niftimapsmasker{k}" in str(record[0].message) for k in low)
    reference = NilearnMapsMasker(str(tree["maps"]), mask_img=mask, standardize=None)
    reference = reference.fit_transform(bold)
    np.testing.assert_allclose(
        np.delete(got, low, axis=1), np.delete(reference, low, axis=1), atol=1e-10
    )
    with pytest.raises(ValueError, match=r"'min_coverage' must be in \[0, 1\]"):
        NiftiMapsMasker(str(tree["maps"]), min_coverage=1.5).fit(bold)


def test_bids_validator_accepts_the_outputs(tree, tmp_path):
    out = tmp_path / "out"
    assert (
        _participant(
            tree,
            out,
            "--participant-label",
            "01",
            "--session-label",
            "1",
            "--denoise-strategy",
            "scrubbing",
            "--min-coverage",
            "0.5",
        )
        == 0
    )
    _bids(tree, out, "group")  # the summary and the connectomes, validated with the rest
    assert (out / "group" / "atlas-DiFuMo8_summary.tsv").is_file()
    issues = bids_validator_issues(out, tmp_path)
    errors = [i for i in issues if i["severity"] == "error"]
    assert not errors, errors
    warned = {i["code"] for i in issues if i["severity"] == "warning"}
    assert warned <= {"README_FILE_MISSING", "TOO_FEW_AUTHORS", "UNKNOWN_BIDS_VERSION"}
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Name"] == "daskmasker"
    assert description["DatasetLinks"]["source"] == str(tree["fmriprep"])


def test_group_writes_the_study_summary_and_the_connectomes(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert _bids(tree, out, "group") == 2
    assert "run the participant level first" in capsys.readouterr().err
    assert (
        _participant(
            tree,
            out,
            "--participant-label",
            "01",
            "--denoise-strategy",
            "scrubbing",
        )
        == 0
    )
    code = main(["bids", str(tree["fmriprep"]), str(out), "group"])
    assert code == 0, capsys.readouterr().err
    relmats = list((out / "group" / "atlas-DiFuMo8").rglob("*relmat.tsv"))
    assert len(relmats) >= 4, relmats  # one per run at least (and the group mean)
    summary = pd.read_csv(out / "group" / "atlas-DiFuMo8_summary.tsv", sep="\t", dtype={"sub": str})
    assert len(summary) == 4 and set(summary["sub"]) == {"01"}
    assert (summary["denoise_strategy"] == "scrubbing").all()
    assert (summary["n_volumes"] == 80).all() and (summary["n_volumes_kept"] < 80).all()


def test_wrong_inputs_are_named(tree, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    base = ["participant", "--maps", str(tree["maps"])]
    assert _bids(tree, out, *base, "--participant-label", "07") == 2
    err = capsys.readouterr().err
    assert "sub ['07'] not found" in err and "(present: ['01', '02'])" in err
    assert _bids(tree, out, *base, "--denoise-strategy", "simple", "--scrub", "3") == 2
    assert "does not take scrub" in capsys.readouterr().err
    assert _bids(tree, out, *base, "--denoise-strategy", "ica_aroma") == 2
    assert "--space MNI152NLin6Asym" in capsys.readouterr().err
    filter_file = tmp_path / "filter.json"
    filter_file.write_text(json.dumps({"bold": {"session": "2", "run": 1}}))
    assert (
        _bids(tree, out, *base, "--atlas-label", "A", "--bids-filter-file", str(filter_file)) == 0
    )
    assert set(open_timeseries(str(out / "stores" / "atlas-A.zarr"))["run"].values) == {
        f"sub-0{s}_ses-2_task-rest_run-1_space-{SPACE}" for s in (1, 2)
    }
    monkeypatch.setitem(sys.modules, "nilearn.interfaces", None)
    assert _bids(tree, tmp_path / "other", *base) == 2
    assert "pip install 'daskmasker[fmriprep]'" in capsys.readouterr().err


def test_runs_on_a_distributed_scheduler(tree, tmp_path):
    from distributed import LocalCluster

    local = tmp_path / "local"
    args = [
        "participant",
        "--maps",
        str(tree["maps"]),
        "--atlas-label",
        "DiFuMo8",
        "--participant-label",
        "01",
        "--denoise-strategy",
        "scrubbing",
    ]
    assert _bids(tree, local, *args) == 0
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        remote = tmp_path / "remote"
        assert _bids(tree, remote, *args, "--scheduler", cluster.scheduler_address) == 0
        worker_logs = cluster.get_logs()
    assert worker_logs  # the cluster ran
    for record in [r for r in tree["runs"] if r["entities"]["sub"] == "01"]:
        pd.testing.assert_frame_equal(
            pd.read_csv(_tsv(remote, record), sep="\t"),
            pd.read_csv(_tsv(local, record), sep="\t"),
            rtol=0,
            atol=1e-12,
        )


def test_a_killed_participant_run_resumes(tree, tmp_path):
    """SIGKILL once a run is complete: the rerun keeps the complete runs and does the rest."""
    import signal
    import time

    from daskmasker.batch.store import listed_runs
    from daskmasker.io.fs import Location

    out = tmp_path / "out"
    store = out / "stores" / "atlas-DiFuMo8.zarr"
    cmd = [
        sys.executable, "-m", "daskmasker", "-q", "bids", str(tree["fmriprep"]), str(out),
        "participant", "--maps", str(tree["maps"]), "--atlas-label", "DiFuMo8", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.monotonic() + 300
    complete: list[str] = []
    while not complete and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if (store / "runs").is_dir():  # a run is complete once its packed object is there
            complete = sorted(listed_runs(Location(str(store))))
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = listed_runs(Location(str(store)))
    assert 1 <= len(finished) < 8
    args = ["participant", "--maps", str(tree["maps"]), "--atlas-label", "DiFuMo8"]
    assert main(["bids", str(tree["fmriprep"]), str(out), *args, "--no-progress"]) == 0
    ts = open_timeseries(str(store))
    assert ts.sizes["run"] == 8
    # the resumed store equals a fresh one
    fresh = tmp_path / "fresh"
    assert _bids(tree, fresh, *args) == 0
    for record in tree["runs"]:
        pd.testing.assert_frame_equal(
            pd.read_csv(_tsv(out, record), sep="\t"), pd.read_csv(_tsv(fresh, record), sep="\t")
        )
