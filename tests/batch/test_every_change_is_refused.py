"""No stale results, one change at a time: every masker parameter that shapes the numbers and
every input (image, confounds, sample mask, maps, mask, region names) changed alone makes a
rerun into the same store refuse, naming what changed, from Python (``run_batch``) and from the
command line (``daskmasker extract``); the parameters that change no number (``verbose``,
``memory``, ``memory_level``, ``reports``, ``cmap``) do not.

One store is extracted per module and each case reruns against it (a refused rerun writes
nothing, which :func:`refused` checks); cases that change a file work on a copy.
"""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from daskmasker import NiftiMapsMasker, open_timeseries, run_batch
from daskmasker.batch.fingerprint import NOT_NUMBERS
from daskmasker.batch.record import StaleStoreError
from daskmasker.cli import main

from helpers import make_maps, make_mask, write_confounds, write_run, write_study

NAMES = ["DMN", "Visual", "Motor", "Salience", "Language", "Cerebellum"]
BASE = dict(
    standardize="zscore_sample",
    detrend=True,
    t_r=2.0,
    low_pass=0.1,
    high_pass=0.01,
    clean_args={"filter": "butterworth", "butterworth__order": 5, "ensure_finite": False},
)
SAMPLE_MASKS = [np.arange(2, 40), np.arange(45)]
RUNS = ["sub-01_task-rest", "sub-02_task-rest"]


def _batch(study, out, sample_masks=SAMPLE_MASKS, confounds=True, **params):
    params = {"maps_img": study["maps"], "mask_img": study["mask"], **BASE, **params}
    masker = NiftiMapsMasker(**params)
    imgs = [r["img"] for r in study["runs"]]
    confs = [r["conf"] for r in study["runs"]] if confounds else None
    return run_batch(masker, imgs, out, confounds=confs, sample_masks=sample_masks)


def _signals(out):
    return {n: open_timeseries(out, n)["signals"].values for n in RUNS}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    study = write_study(tmp_path_factory.mktemp("study"))
    out = str(study["root"] / "out.zarr")
    assert sorted(_batch(study, out).done) == RUNS
    return study, out, _signals(out)


@pytest.fixture
def extracted_copy(extracted, tmp_path):
    """The study and its store copied, for cases that change files."""
    study, _, before = extracted
    shutil.copytree(study["root"], tmp_path, dirs_exist_ok=True)
    moved = {
        **study,
        "root": tmp_path,
        "maps": study["maps"].replace(str(study["root"]), str(tmp_path)),
        "mask": study["mask"].replace(str(study["root"]), str(tmp_path)),
        "runs": [
            {**r, **{k: r[k].replace(str(study["root"]), str(tmp_path)) for k in ("img", "conf")}}
            for r in study["runs"]
        ],
    }
    return moved, str(tmp_path / "out.zarr"), before


def refused(rerun, out, before, match):
    """The rerun raises naming the change and the way out, and leaves the store as it was."""
    with pytest.raises(StaleStoreError, match=match) as info:
        rerun()
    assert "overwrite=True" in str(info.value)
    after = _signals(out)
    for name, values in before.items():
        np.testing.assert_array_equal(after[name], values)
    return str(info.value)


# (parameter, new value, what the refusal must say): each differs from BASE or the default
PARAMETER_CHANGES = [
    ("smoothing_fwhm", 6.0, "parameter 'smoothing_fwhm' was None, now 6.0"),
    ("standardize", "psc", "parameter 'standardize' was zscore_sample, now psc"),
    ("standardize_confounds", False, "parameter 'standardize_confounds' was True, now False"),
    ("high_variance_confounds", True, "parameter 'high_variance_confounds' was False, now True"),
    ("detrend", False, "parameter 'detrend' was True, now False"),
    ("low_pass", 0.15, "parameter 'low_pass' was 0.1, now 0.15"),
    ("high_pass", 0.02, "parameter 'high_pass' was 0.01, now 0.02"),
    ("t_r", 2.5, "parameter 't_r' was 2.0, now 2.5"),
    ("dtype", "float32", "parameter 'dtype' was None, now float32"),
    ("resampling_target", "maps", "parameter 'resampling_target' was data, now maps"),
    ("resampling_target", "mask", "parameter 'resampling_target' was data, now mask"),
    ("keep_masked_maps", True, "parameter 'keep_masked_maps' was False, now True"),
    ("allow_overlap", False, "parameter 'allow_overlap' was True, now False"),
    ("min_coverage", 0.5, "parameter 'min_coverage' was None, now 0.5"),
    ("clean_args", {**BASE["clean_args"], "filter": "cosine"}, "parameter 'clean_args' was"),
    ("clean_args", {**BASE["clean_args"], "butterworth__order": 3}, "parameter 'clean_args' was"),
    ("clean_args", {**BASE["clean_args"], "ensure_finite": True}, "parameter 'clean_args' was"),
    ("region_names", NAMES, r"region names were \['niftimapsmasker0', .*\], now \['DMN', 'Visual'"),
]


@pytest.mark.parametrize(
    ("name", "value", "match"),
    PARAMETER_CHANGES,
    ids=[f"{name}={value!r}"[:40] for name, value, _ in PARAMETER_CHANGES],
)
def test_each_changed_parameter_is_refused(extracted, name, value, match):
    study, out, before = extracted
    message = refused(lambda: _batch(study, out, **{name: value}), out, before, match)
    assert all(f"run {run}:" in message for run in RUNS)
    assert message.count("parameter ") + message.count("region names") == len(RUNS)  # alone


# (parameter, new value): the parameters that change no number
NO_NUMBER_CHANGES = [
    ("verbose", 1),
    ("memory", "nilearn_cache"),
    ("memory_level", 2),
    ("reports", False),
    ("cmap", "gray"),
]
INPUT_PARAMETERS = {"maps_img", "mask_img"}
"""Parameters that are inputs: changed by content and by path in the file tests below."""


def test_every_masker_parameter_is_changed_in_turn():
    """The cases come from the masker's own parameter list: a parameter added to the masker
    and to no case list fails here, so none can be forgotten."""
    changed = {name for name, _, _ in PARAMETER_CHANGES}
    no_number = {name for name, _ in NO_NUMBER_CHANGES}
    assert no_number == set(NOT_NUMBERS)
    assert not changed & no_number
    assert changed | no_number | INPUT_PARAMETERS == set(NiftiMapsMasker(None).get_params())


@pytest.mark.parametrize(("name", "value"), NO_NUMBER_CHANGES)
def test_parameters_that_change_no_number_are_not_a_difference(extracted, name, value, tmp_path):
    study, out, _ = extracted
    extra = {"memory_level": 1} if name == "memory" else {}  # nilearn warns without a level
    if name == "memory":
        value = str(tmp_path / value)
    again = _batch(study, out, **{name: value}, **extra)
    assert again.done == [] and not again.failed
    assert sorted(again.skipped) == RUNS


def test_the_same_sample_mask_given_as_a_list_is_no_difference(extracted):
    study, out, _ = extracted
    again = _batch(study, out, sample_masks=[list(m) for m in SAMPLE_MASKS])
    assert sorted(again.skipped) == RUNS


@pytest.mark.parametrize(
    ("sample_masks", "changed"),
    [
        ([np.arange(3, 40), SAMPLE_MASKS[1]], ["sub-01_task-rest"]),
        ([SAMPLE_MASKS[0], None], ["sub-02_task-rest"]),
        (None, RUNS),
    ],
    ids=["other-volumes", "dropped-from-one-run", "none"],
)
def test_a_changed_sample_mask_is_refused(extracted, sample_masks, changed):
    study, out, before = extracted
    message = refused(
        lambda: _batch(study, out, sample_masks=sample_masks), out, before, "sample_mask changed"
    )
    assert [run for run in RUNS if f"run {run}:" in message] == changed


def _change_image(study):
    run = study["runs"][0]
    write_run(run["img"], study["maps_img"], run["n"], seed=42)
    return "run sub-01_task-rest: image content changed", ["sub-01_task-rest"]


def _change_image_header_only(study):
    """The same voxels, another TR in the header."""
    path = study["runs"][1]["img"]
    img = nib.load(path)
    img = nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header)
    img.header.set_zooms((*img.header.get_zooms()[:3], 2.5))
    img.to_filename(path)
    return "run sub-02_task-rest: image content changed", ["sub-02_task-rest"]


def _change_confounds(study):
    run = study["runs"][1]
    write_confounds(run["conf"], run["n"], seed=99)
    return "run sub-02_task-rest: confounds content changed", ["sub-02_task-rest"]


def _change_maps(study):
    make_maps(dtype=np.float64, seed=5).to_filename(study["maps"])
    return r"maps content changed: was .*maps\.nii\.gz", RUNS


def _change_mask(study):
    make_mask(radius=10.0).to_filename(study["mask"])
    return r"mask content changed: was .*mask\.nii\.gz", RUNS


@pytest.mark.parametrize(
    "change",
    [_change_image, _change_image_header_only, _change_confounds, _change_maps, _change_mask],
    ids=lambda f: f.__name__[len("_change_") :],
)
def test_each_changed_input_file_is_refused(extracted_copy, change):
    study, out, before = extracted_copy
    match, changed = change(study)
    message = refused(lambda: _batch(study, out), out, before, match)
    assert [run for run in RUNS if f"run {run}:" in message] == changed


def test_other_input_files_and_none_are_refused(extracted, tmp_path):
    study, out, before = extracted
    other = tmp_path / "other_maps.nii.gz"
    make_maps(dtype=np.float64, seed=5).to_filename(other)
    refused(lambda: _batch(study, out, maps_img=str(other)), out, before, "maps content changed")
    refused(lambda: _batch(study, out, mask_img=None), out, before, r"mask was .*, now none")
    refused(lambda: _batch(study, out, confounds=False), out, before, r"confounds was .*now none")


def test_changed_in_memory_inputs_are_refused(tmp_path):
    """Images and confounds given in memory are hashed by value (an image's header TR too: it
    is the run's TR when ``t_r`` is not given)."""
    maps = make_maps(dtype=np.float64)
    images = []
    for seed in (1, 2):
        write_run(tmp_path / f"run{seed}.nii.gz", maps, 40, seed=seed)
        images.append(nib.load(tmp_path / f"run{seed}.nii.gz"))
    images = [nib.Nifti1Image(np.asarray(i.dataobj), i.affine, i.header) for i in images]
    confounds = [np.random.default_rng(s).normal(size=(40, 2)) for s in (3, 4)]
    out = str(tmp_path / "out.zarr")

    def batch():
        masker = NiftiMapsMasker(maps, **BASE)
        return run_batch(masker, images, out, confounds=confounds)

    assert len(batch().done) == 2
    assert len(batch().skipped) == 2
    original = images[1]
    data = np.asarray(original.dataobj).copy()
    data[5, 5, 5, 3] += 1
    images[1] = nib.Nifti1Image(data, original.affine, original.header)
    with pytest.raises(StaleStoreError, match="run item-0001: image content changed") as info:
        batch()
    assert "item-0000" not in str(info.value)
    # the same voxels, another TR in the header: the TR of the run (its time coordinate)
    header = original.header.copy()
    header.set_zooms((*header.get_zooms()[:3], 2.5))
    images[1] = nib.Nifti1Image(np.asarray(original.dataobj), original.affine, header)
    with pytest.raises(StaleStoreError, match="run item-0001: image content changed"):
        batch()
    images[1] = original
    confounds[0] = confounds[0] * 1.0001
    with pytest.raises(StaleStoreError, match="run item-0000: confounds content changed") as info:
        batch()
    assert "item-0001" not in str(info.value)


# -- the command line --------------------------------------------------------------------------

CLI_BASE = ["--t-r", "2", "--low-pass", "0.1", "--high-pass", "0.01", "--detrend"]
CLI_BASE += ["--standardize", "zscore_sample", "--no-progress", "--no-report"]


def _cli(study, out, *extra, drop=(), confounds=True, maps=None):
    args = ["extract", *(r["img"] for r in study["runs"]), "--out", out]
    args += ["--maps", maps or study["maps"], "--mask", study["mask"]]
    if confounds:
        args += ["--confounds", *(r["conf"] for r in study["runs"])]
    return main([*args, *(a for a in CLI_BASE if a not in drop), *extra])


@pytest.fixture(scope="module")
def cli_extracted(tmp_path_factory):
    study = write_study(tmp_path_factory.mktemp("cli_study"))
    (study["root"] / "labels.txt").write_text("\n".join(NAMES) + "\n")
    out = str(study["root"] / "cli.zarr")
    assert _cli(study, out) == 0
    return study, out, _signals(out)


def _cli_refused(capsys, out, before, code, match):
    assert code == 2
    err = capsys.readouterr().err
    assert match in err, err
    assert "--overwrite" in err and "Python" not in err
    after = _signals(out)
    for name, values in before.items():
        np.testing.assert_array_equal(after[name], values)


# (parameter, flags added, flags dropped from CLI_BASE, what the refusal must say: the CLI
# names its flags)
FLAG_CHANGES = [
    (
        "smoothing_fwhm",
        ["--smoothing-fwhm", "6"],
        [],
        "parameter --smoothing-fwhm was None, now 6.0",
    ),
    (
        "standardize",
        ["--standardize", "psc"],
        [],
        "parameter --standardize was zscore_sample, now psc",
    ),
    (
        "standardize_confounds",
        ["--no-standardize-confounds"],
        [],
        "parameter --standardize-confounds was True, now False",
    ),
    (
        "high_variance_confounds",
        ["--high-variance-confounds"],
        [],
        "parameter --high-variance-confounds was False, now True",
    ),
    ("detrend", [], ["--detrend"], "parameter --detrend was True, now False"),
    ("low_pass", ["--low-pass", "0.15"], [], "parameter --low-pass was 0.1, now 0.15"),
    ("high_pass", ["--high-pass", "0.02"], [], "parameter --high-pass was 0.01, now 0.02"),
    ("t_r", ["--t-r", "2.5"], [], "parameter --t-r was 2.0, now 2.5"),
    ("dtype", ["--dtype", "float32"], [], "parameter --dtype was None, now float32"),
    (
        "resampling_target",
        ["--resampling-target", "maps"],
        [],
        "parameter --resampling-target was data, now maps",
    ),
    (
        "keep_masked_maps",
        ["--keep-masked-maps"],
        [],
        "parameter --keep-masked-maps was False, now True",
    ),
    (
        "allow_overlap",
        ["--no-allow-overlap"],
        [],
        "parameter allow-overlap (--no-allow-overlap) was True",
    ),
    (
        "clean_args",
        ["--filter", "cosine"],
        [],
        "parameter --filter was None, now {'filter': 'cosine'}",
    ),
    (
        "region_names",
        ["--labels", "LABELS"],
        [],
        "region names (--labels) were ['niftimapsmasker0'",
    ),
    (None, ["--confounds-columns", "csf,fd"], [], "confounds content changed"),
]
NOT_EXTRACT_OPTIONS = {"min_coverage": "--min-coverage"}
"""Parameters ``extract`` does not expose (``bids`` does: tests/batch/test_fmriprep_app.py)."""


def test_every_masker_parameter_is_changed_in_turn_from_the_command_line(capsys):
    """Every parameter that shapes the numbers has a flag change below (maps and mask: the
    input tests), or ``extract`` has no flag for it."""
    flagged = {name for name, _, _, _ in FLAG_CHANGES if name is not None}
    numbers = set(NiftiMapsMasker(None).get_params()) - set(NOT_NUMBERS) - INPUT_PARAMETERS
    assert flagged | set(NOT_EXTRACT_OPTIONS) == numbers
    assert not flagged & set(NOT_EXTRACT_OPTIONS)
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    usage = capsys.readouterr().out
    assert "--smoothing-fwhm" in usage
    assert not [flag for flag in NOT_EXTRACT_OPTIONS.values() if flag in usage]


@pytest.mark.parametrize(
    ("name", "added", "dropped", "match"),
    FLAG_CHANGES,
    ids=[" ".join(a) or f"no {' '.join(d)}" for _, a, d, _ in FLAG_CHANGES],
)
def test_cli_refuses_each_changed_flag(cli_extracted, capsys, name, added, dropped, match):
    study, out, before = cli_extracted
    added = [str(study["root"] / "labels.txt") if a == "LABELS" else a for a in added]
    _cli_refused(capsys, out, before, _cli(study, out, *added, drop=dropped), match)


def test_cli_refuses_changed_inputs(cli_extracted, capsys, tmp_path):
    study, out, before = cli_extracted
    maps = tmp_path / "other_maps.nii.gz"
    make_maps(dtype=np.float64, seed=5).to_filename(maps)
    code = _cli(study, out, maps=str(maps))
    _cli_refused(capsys, out, before, code, "maps content changed")
    _cli_refused(capsys, out, before, _cli(study, out, confounds=False), "confounds was ")
    (tmp_path / "copy").mkdir()
    copy = write_study(tmp_path / "copy")
    shutil.copytree(out, tmp_path / "copy.zarr")
    changes = (
        (_change_image, "image content"),
        (_change_confounds, "confounds con"),
        (_change_mask, "mask content changed"),
    )
    for change, match in changes:
        change(copy)
        code = _cli(copy, str(tmp_path / "copy.zarr"))
        _cli_refused(capsys, str(tmp_path / "copy.zarr"), before, code, match)


def test_cli_options_that_change_no_number_are_not_a_difference(cli_extracted, capsys):
    study, out, _ = cli_extracted
    assert _cli(study, out, "-v", drop=("--no-report",)) == 0
    assert "0 extracted, 2 already complete, 0 failed" in capsys.readouterr().err


def test_cli_with_several_atlases_refuses_a_changed_flag(cli_extracted, capsys, tmp_path):
    """``extract`` with two ``--maps`` keeps a store per atlas, each refusing what changed."""
    study, _, _ = cli_extracted
    other = tmp_path / "other_maps.nii.gz"
    make_maps(dtype=np.float64, seed=5).to_filename(other)
    out = str(tmp_path / "atlases")
    several = ["--maps", str(other)]
    assert _cli(study, out, *several) == 0
    before = _signals(f"{out}/maps.zarr")
    capsys.readouterr()
    _cli_refused(
        capsys,
        f"{out}/maps.zarr",
        before,
        _cli(study, out, *several, "--t-r", "2.5"),
        "parameter --t-r was 2.0, now 2.5",
    )
    assert _cli(study, out, *several, "-q") == 0
