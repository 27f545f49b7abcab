"""The ``daskmasker`` command end to end: fast help, checks before reading, the header's TR,
fMRIPrep confounds, progress on stderr, and every command (demo, convert, extract locally, on
``--workers`` and on a separately started ``--scheduler``)."""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import time

import dask
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed import Client
from nilearn.maskers import NiftiMapsMasker as NilearnMasker

import daskmasker
from daskmasker import NiftiMapsMasker, open_timeseries
from daskmasker.batch.items import item_name
from daskmasker.cli import _get_parser, main
from daskmasker.compute.grid import _affine_text

from helpers import make_data, stop_processes, write_maps_and_mask

HEAVY = ("dask", "distributed", "sklearn", "matplotlib", "pandas", "xarray", "nibabel", "zarr")
N_SCANS = 60
# fMRIPrep's layout: derivative and power columns start with n/a
CONFOUND_COLUMNS = ("trans_x", "trans_x_derivative1", "rot_y", "rot_y_power2", "csf")


def with_tr(img: nib.Nifti1Image, t_r: float) -> nib.Nifti1Image:
    out = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    out.header.set_zooms((*out.header.get_zooms()[:3], t_r))
    out.header.set_xyzt_units("mm", "sec")
    return out


def write_confounds(path, seed: int, n_scans: int = N_SCANS, interior_na: bool = False) -> None:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        rng.normal(size=(n_scans, len(CONFOUND_COLUMNS))), columns=CONFOUND_COLUMNS
    )
    table.loc[0, ["trans_x_derivative1", "rot_y_power2"]] = np.nan
    if interior_na:
        table.loc[7, "csf"] = np.nan
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    paths = write_maps_and_mask(root)
    maps = paths.pop("maps_img")
    paths["runs"], paths["confounds"] = [], []
    for i in range(2):
        run = str(root / f"sub-{i:02d}_task-rest_bold.nii")
        with_tr(make_data(maps, n_scans=N_SCANS, seed=i, dtype=np.float64), 2.0).to_filename(run)
        paths["runs"].append(run)
        conf = str(root / f"sub-{i:02d}_task-rest_desc-confounds_timeseries.tsv")
        write_confounds(conf, seed=10 + i)
        paths["confounds"].append(conf)
    paths["no_tr"] = str(root / "sub-09_task-rest_bold.nii")
    with_tr(nib.load(paths["runs"][0]), 0.0).to_filename(paths["no_tr"])
    paths["corrupt"] = str(root / "sub-00_task-rest_bold.nii.gz")
    with open(paths["corrupt"], "wb") as f:
        f.write(b"this is not a NIfTI file" * 20)
    return paths


def api_signals(files, run, **params) -> np.ndarray:
    """The Python API's numbers (``standardize=None``: the CLI's default ``--standardize none``)."""
    params = {"standardize": None, **params}
    return NiftiMapsMasker(files["maps"], mask_img=files["mask"], **params).fit_transform(run)


def stored(out, run) -> np.ndarray:
    return open_timeseries(out, item_name(run, 0))["signals"].values


def progress_lines(stderr: str, label: str) -> list[int]:
    return [int(p) for p in re.findall(rf"^{label}: +(\d+)% \(", stderr, flags=re.M)]


# --- fast --help and --version ----------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["extract", "--help"]])
def test_help_and_version_import_no_heavy_module(argv):
    """``python -X importtime`` lists every module imported: none of the heavy ones."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "daskmasker", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", run.stderr, re.M))
    assert "daskmasker.cli" in imported  # negative control: the probe sees the CLI's imports
    top = {name.split(".")[0] for name in imported}
    assert not top & set(HEAVY), sorted(top & set(HEAVY))
    if argv == ["--version"]:
        assert run.stdout == f"daskmasker {daskmasker.__version__}\n"
    else:
        assert "usage: daskmasker" in run.stdout


def subcommands() -> dict:
    parser = _get_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


# each command's shortest valid command line: a misspelt option added to it is the only error
COMMAND_LINES = {
    "convert": ["convert", "a.nii", "o.zarr"],
    "extract": ["extract", "a.nii", "--maps", "m.nii", "--out", "o"],
    "demo": ["demo"],
    "info": ["info", "s.zarr"],
    "clean": ["clean", "s.zarr", "--out", "o"],
    "upgrade": ["upgrade", "old.zarr", "new.zarr"],
    "connectivity": ["connectivity", "s.zarr", "--kind", "correlation", "--out", "o"],
    "bids": ["bids", "fmriprep", "out", "participant"],
}


def test_the_lists_hold_every_command():
    assert set(COMMAND_LINES) == set(subcommands())


@pytest.mark.parametrize("name", ["", *COMMAND_LINES])
def test_every_option_has_help_and_shows_its_default(name):
    parser = subcommands()[name] if name else _get_parser()
    formatter = parser._get_formatter()
    options = [a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")]
    assert options  # negative control: the probe sees the options
    for action in options:
        assert action.help, f"{name} {action.option_strings[0]} has no help"
        text = formatter._expand_help(action)
        assert re.search(r"\(default: |\(required\)|default: ", text), (action.option_strings, text)


def test_defaults_shown_are_the_values_used():
    extract = subcommands()["extract"]
    text = " ".join(extract.format_help().split())
    assert "--resampling-target {data,maps,mask,none} the grid" in text
    assert "(default: data)" in text and "(default: off)" in text
    demo = " ".join(subcommands()["demo"].format_help().split())
    assert "folder to write into (default: daskmasker-demo)" in demo
    assert "(default: 120)" in demo and "(default: 64)" in demo


@pytest.mark.parametrize(
    ("argv", "usage", "suggestion"),
    [
        (
            ["extract", "a.nii", "--maps", "m.nii", "--out", "o", "--hihg-pass", "0.01"],
            "usage: daskmasker extract",
            "did you mean --high-pass?",
        ),
        (
            ["extract", "a.nii", "--maps", "m.nii", "--out", "o", "--resampling-targte=none"],
            "usage: daskmasker extract",
            "did you mean --resampling-target?",
        ),
        (
            ["clean", "s.zarr", "--out", "o", "--standardise", "none"],
            "usage: daskmasker clean",
            "did you mean --standardize?",
        ),
        (["extrct", "a.nii"], "usage: daskmasker [-h]", "did you mean extract?"),
    ],
)
def test_a_misspelt_flag_shows_the_command_usage_and_the_closest_flag(
    argv, usage, suggestion, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage), err
    assert suggestion in err, err


def misspelt(option: str) -> str:
    """``option`` with its last letter typed twice (never a prefix of an option, which argparse
    would take for an abbreviation)."""
    return option + option[-1]


@pytest.mark.parametrize("name", list(COMMAND_LINES))
def test_every_misspelt_option_of_every_command_names_the_command_and_the_option(name, capsys):
    parser = subcommands()[name]
    options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    assert len(options) >= 2  # negative control: the probe sees the options
    for option in options:
        wrong = misspelt(option)
        assert not any(o.startswith(wrong) for o in options), (option, wrong)
        with pytest.raises(SystemExit) as exit_info:
            main([*COMMAND_LINES[name], f"{wrong}=1"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, (option, err)
        assert err.startswith(f"usage: daskmasker {name} "), (option, err)
        assert f"unrecognized arguments: {wrong}=1 (did you mean {option}?)" in err, (option, err)


@pytest.mark.parametrize("name", list(COMMAND_LINES))
def test_a_misspelt_required_option_is_named_with_the_one_meant(name, capsys):
    """argparse alone says only "required: --maps" when the user typed --mapss: the misspelt
    option is named first, with the required option it most likely meant."""
    parser = subcommands()[name]
    required = [a.option_strings[-1] for a in parser._actions if a.required and a.option_strings]
    for option in required:
        argv = list(COMMAND_LINES[name])
        at = argv.index(option)
        argv[at] = misspelt(option)
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, (option, err)
        assert err.startswith(f"usage: daskmasker {name} "), (option, err)
        assert f"unrecognized arguments: {argv[at]} (did you mean {option}?); " in err, err
        assert f"the following arguments are required: {option}" in err, err
    # negative control, and a transposition: --mpas means --maps (the missing one), not --mask
    if name == "extract":
        with pytest.raises(SystemExit):
            main(["extract", "a.nii", "--mpas", "m.nii", "--out", "o"])
        assert "--mpas (did you mean --maps?)" in capsys.readouterr().err


def test_an_unknown_flag_with_nothing_close_suggests_nothing(capsys):
    with pytest.raises(SystemExit):
        main(["extract", "a.nii", "--maps", "m.nii", "--out", "o", "--zzzzqqq"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: --zzzzqqq" in err and "did you mean" not in err


def test_console_script_matches_python_m():
    script = os.path.join(os.path.dirname(sys.executable), "daskmasker")
    got = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert got.stdout == f"daskmasker {daskmasker.__version__}\n"


# --- parameters checked before any image is read ----------------------------------------------


def extract_args(files, img, out, *extra):
    return ["extract", img, "--maps", files["maps"], "--mask", files["mask"], "--out", out, *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--low-pass", "0.3", "--t-r", "2"], "--low-pass 0.3 Hz is not below the Nyquist"),
        (["--high-pass", "0.3", "--t-r", "2"], "--high-pass 0.3 Hz is not below the Nyquist"),
        (
            ["--high-pass", "0.1", "--low-pass", "0.05", "--t-r", "2"],
            "--high-pass 0.1 Hz must be lower than --low-pass 0.05 Hz",
        ),
        (["--confounds", "a.tsv", "b.tsv"], "--confounds: 2 file(s) for 1 image(s)"),
        (["--confounds-columns", "csf"], "--confounds-columns needs --confounds"),
        (["--confounds", "{missing}"], "--confounds: no such file or directory"),
        (["--mask", "{missing}"], "--mask: no such file or directory"),
        (
            ["--out", "{not_ours}"],
            "--out '{not_ours}' exists and is not a daskmasker batch store; choose another",
        ),
    ],
)
def test_wrong_parameters_fail_before_the_image_is_read(files, tmp_path, capsys, extra, message):
    """The image is not a NIfTI file, yet the parameter's error comes first, naming its flag."""
    not_ours = tmp_path / "not-ours"
    not_ours.mkdir()
    (not_ours / "data.txt").write_text("keep me")
    subs = {"missing": str(tmp_path / "missing.nii.gz"), "not_ours": str(not_ours)}
    extra = [e.format(**subs) for e in extra]
    code = main(extract_args(files, files["corrupt"], str(tmp_path / "o.zarr"), *extra))
    err = capsys.readouterr().err
    assert code == 2
    assert f"daskmasker extract: error: {message.format(**subs)}" in err
    assert (not_ours / "data.txt").read_text() == "keep me"


def test_a_mask_on_another_grid_names_both_files_shapes_affines_and_choices(
    files, tmp_path, capsys
):
    mask = nib.load(files["mask"])
    shifted = str(tmp_path / "mask_shifted.nii.gz")
    affine = mask.affine.copy()
    affine[:3, 3] += 4.0
    nib.Nifti1Image(np.asarray(mask.dataobj)[1:], affine).to_filename(shifted)
    argv = ["extract", files["runs"][0], "--maps", files["maps"], "--mask", shifted]
    code = main([*argv, "--out", str(tmp_path / "o.zarr"), "--resampling-target", "none"])
    err = capsys.readouterr().err
    assert code == 2, err
    # nilearn's message first (nilearn-parity tests match it), then what to do about it
    assert "error: Following field of view errors were detected:" in err
    assert "- maps and mask do not have the same shape" in err
    maps = nib.load(files["maps"])
    assert f"maps: {files['maps']}, shape {maps.shape[:3]}, affine " in err
    assert f"mask: {shifted}, shape {(mask.shape[0] - 1, *mask.shape[1:])}, affine " in err
    assert f"affine {_affine_text(affine)}" in err and f"affine {_affine_text(maps.affine)}" in err
    assert "--resampling-target is none: all must be on one grid; set it to 'data', 'mask'" in err
    assert main([*argv, "--out", str(tmp_path / "p.zarr"), "--resampling-target", "data"]) == 0


def test_the_api_grid_error_is_nilearns_with_the_files(files, tmp_path):
    mask = nib.load(files["mask"])
    other = nib.Nifti1Image(np.asarray(mask.dataobj), mask.affine * [[1], [1], [1], [1]] + 0.5)
    path = str(tmp_path / "other.nii")
    other.to_filename(path)
    masker = NiftiMapsMasker(files["maps"], mask_img=path, resampling_target=None)
    with pytest.raises(ValueError, match="^Following field of view errors were detected:") as e:
        masker.fit()
    message = str(e.value)
    assert "- maps and mask do not have the same affine" in message
    assert f"mask: {path}, shape {mask.shape}, affine [[" in message
    with pytest.raises(ValueError, match="^Following field of view errors") as nilearn_error:
        NilearnMasker(files["maps"], mask_img=path, resampling_target=None).fit()
    assert message.startswith(str(nilearn_error.value))


def _grid_line(name: str, path: str) -> str:
    img = nib.load(path)
    return f"{name}: {path}, shape {img.shape[:3]}, affine {_affine_text(img.affine)}"


CHOICES = "all must be on one grid; set it to 'data', 'mask' or 'maps'."


@pytest.mark.parametrize("call", ["fit with a mask", "transform", "fit_transform"])
def test_every_api_grid_error_names_both_files_shapes_affines_and_choices(files, tmp_path, call):
    """The Python API's field-of-view errors, at fit (maps and mask) and at transform (maps and
    the data: the runs are on another grid than the maps)."""
    maps, run = files["maps"], files["runs"][0]
    mask = str(tmp_path / "mask_shifted.nii.gz")
    shifted = nib.load(files["mask"])
    nib.Nifti1Image(np.asarray(shifted.dataobj), shifted.affine + 0.5).to_filename(mask)
    other = {"fit with a mask": ("mask", mask)}.get(call, ("data", run))
    masker = NiftiMapsMasker(maps, mask_img=mask if other[0] == "mask" else None, standardize=None)
    masker.resampling_target = None
    with pytest.raises(ValueError, match="^Following field of view errors") as error:
        {
            "fit with a mask": lambda: masker.fit(),
            "transform": lambda: masker.fit().transform(run),
            "fit_transform": lambda: masker.fit_transform(run),
        }[call]()
    lines = str(error.value).splitlines()
    assert _grid_line("maps", maps) in lines
    assert _grid_line(*other) in lines
    assert lines[-1] == f"resampling_target is None: {CHOICES}"
    masker.resampling_target = "data"  # negative control: the same files resampled
    assert masker.fit_transform(run).shape == (N_SCANS, nib.load(maps).shape[3])


def test_the_cli_grid_error_of_the_data_names_both_files_shapes_affines_and_choices(
    files, tmp_path, capsys
):
    run = files["runs"][0]
    argv = ["extract", run, "--maps", files["maps"], "--out", str(tmp_path / "o.zarr")]
    assert main([*argv, "--resampling-target", "none", "--no-progress"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert "daskmasker extract: error: Following field of view errors were detected:" in lines
    assert "- maps and data do not have the same shape" in lines
    assert _grid_line("maps", files["maps"]) in lines and _grid_line("data", run) in lines
    assert lines[-1] == f"--resampling-target is none: {CHOICES}"


def test_the_corrupt_image_does_fail_when_read(files, tmp_path, capsys):
    """Negative control of the test above: with right parameters its image is read, and fails."""
    code = main(extract_args(files, files["corrupt"], str(tmp_path / "o.zarr"), "--t-r", "2"))
    err = capsys.readouterr().err
    assert code == 2
    assert "daskmasker extract: error:" in err
    assert files["corrupt"] in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--standardize", "bad"], "argument --standardize: invalid choice: 'bad'"),
        (["--workers", "0"], "argument --workers: must be > 0, got 0"),
        (["--t-r", "-2"], "argument --t-r: must be > 0, got -2"),
        (["--storage-options", "[1]"], "argument --storage-options: must be a JSON object"),
        (["--dtype", "bool"], "argument --dtype: cannot be bool"),
        (["-v", "-q"], "argument -q/--quiet: not allowed with argument -v/--verbose"),
    ],
)
def test_wrong_values_are_argparse_errors(files, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(extract_args(files, files["corrupt"], str(tmp_path / "o.zarr"), *argv))
    assert exit_.value.code == 2
    assert f"daskmasker extract: error: {message}" in capsys.readouterr().err


def test_missing_image_and_existing_store_name_the_flag(files, tmp_path, capsys):
    missing = str(tmp_path / "sub-05_bold.nii.gz")
    assert main(extract_args(files, missing, str(tmp_path / "o.zarr"))) == 2
    assert f"error: input image: no such file or directory: '{missing}'" in capsys.readouterr().err
    store = tmp_path / "run.zarr"
    assert main(["convert", files["runs"][0], str(store), "-q"]) == 0
    assert main(["convert", files["corrupt"], str(store)]) == 2
    assert f"'{store}' exists; pass --overwrite to replace it" in capsys.readouterr().err


def test_convert_an_atlas_with_maps_then_extract_from_the_store(files, tmp_path):
    """``convert ATLAS STORE --maps`` stores the 4th axis as maps (channels, ``c``; without
    ``--maps`` it is time, ``t``); ``extract --maps STORE`` then gives the .nii.gz's numbers."""
    maps_store, as_run = str(tmp_path / "maps.zarr"), str(tmp_path / "as-run.zarr")
    assert main(["convert", files["maps"], maps_store, "--maps", "-q"]) == 0
    assert main(["convert", files["maps"], as_run, "-q"]) == 0
    assert xr.open_zarr(maps_store)["image"].dims[0] == "c"
    assert xr.open_zarr(as_run)["image"].dims[0] == "t"
    run = files["runs"][0]
    out = str(tmp_path / "out.zarr")
    args = ["extract", run, "--maps", maps_store, "--mask", files["mask"], "--out", out, "-q"]
    assert main(args) == 0
    np.testing.assert_array_equal(stored(out, run), api_signals(files, run))


# --- the header's TR ----------------------------------------------------------------------------


def test_header_tr_is_used_and_said(files, tmp_path, capsys):
    out = str(tmp_path / "o.zarr")
    run = files["runs"][0]
    assert main(extract_args(files, run, out, "--low-pass", "0.1", "--no-progress")) == 0
    err = capsys.readouterr().err
    assert f"using TR=2 s from the header of {run}" in err
    want = api_signals(files, run, low_pass=0.1, t_r=2.0)
    np.testing.assert_allclose(stored(out, run), want, rtol=1e-10, atol=1e-12)
    # negative control: another TR gives other numbers, so the header's 2 s was the one used
    other = api_signals(files, run, low_pass=0.1, t_r=2.5)
    assert np.abs(other - want).max() > 1e-3


def test_no_tr_anywhere_names_t_r(files, tmp_path, capsys):
    code = main(
        extract_args(files, files["no_tr"], str(tmp_path / "o.zarr"), "--high-pass", "0.01")
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "error: --high-pass need the repetition time: pass --t-r (no TR in the header" in err


def test_images_with_different_trs_are_refused(files, tmp_path, capsys):
    other = str(tmp_path / "sub-07_task-rest_bold.nii")
    with_tr(nib.load(files["runs"][0]), 0.8).to_filename(other)
    argv = extract_args(files, files["runs"][0], str(tmp_path / "o.zarr"))
    code = main([*argv[:2], other, *argv[2:]])
    assert code == 2
    err = capsys.readouterr().err
    assert "the images' headers give different TRs" in err
    assert f"{other}: 0.8 s" in err


@pytest.fixture
def opened(monkeypatch):
    """The images whose header ``extract`` opens (``load_image``), in order."""
    from daskmasker.io import load

    seen: list[str] = []
    original = load.load_image

    def counted(source, *args, **kwargs):
        seen.append(str(source))
        return original(source, *args, **kwargs)

    monkeypatch.setattr(load, "load_image", counted)
    return seen


def test_a_rerun_builds_no_image_of_a_complete_run(files, tmp_path, opened, capsys):
    """The checks before extraction read each image's header alone (its TR and length, for the
    TR and the confounds' rows), without building the lazy image (2-3 ms each: a rerun of
    1,000 complete runs spent 3 of its 3.9 s there): on a rerun of complete runs only the
    image the maps are fitted on is opened."""
    out = str(tmp_path / "o.zarr")
    conf = ["--confounds", *files["confounds"], "--confounds-columns", "csf,trans_x"]
    argv = extract_args(files, files["runs"][0], out, *conf, "--no-progress", "--no-report")
    argv = [*argv[:2], files["runs"][1], *argv[2:]]
    assert main(argv) == 0
    assert files["runs"][1] in opened  # negative control: extracting it opens it
    opened.clear()
    assert main(argv) == 0
    assert "0 extracted, 2 already complete" in capsys.readouterr().err
    assert files["runs"][1] not in opened and files["runs"][0] in opened


def test_a_rerun_with_an_image_of_another_tr_is_refused(files, tmp_path, capsys):
    """A rerun checks every image's header TR, the complete runs' included."""
    out = str(tmp_path / "o.zarr")
    assert main(extract_args(files, files["runs"][0], out, "--no-progress")) == 0
    other = str(tmp_path / "sub-07_task-rest_bold.nii")
    with_tr(nib.load(files["runs"][0]), 0.8).to_filename(other)
    argv = extract_args(files, files["runs"][0], out)
    assert main([*argv[:2], other, *argv[2:]]) == 2
    err = capsys.readouterr().err
    assert "the images' headers give different TRs" in err
    assert f"{files['runs'][0]}: 2 s" in err and f"{other}: 0.8 s" in err


# --- fMRIPrep confounds ------------------------------------------------------------------------


def filled_like_nilearn(path, columns) -> np.ndarray:
    """nilearn.interfaces.fmriprep's rule: the first row's n/a take the second row's values."""
    table = pd.read_csv(path, sep="\t", na_values="n/a")[list(columns)]
    first = table.iloc[0].isna().to_numpy()
    table.iloc[0, first] = table.iloc[1, first]
    return table.to_numpy()


def test_confounds_columns_and_leading_na_as_nilearn(files, tmp_path, capsys):
    out, tsv = str(tmp_path / "o.zarr"), str(tmp_path / "tsv")
    argv = ["extract", *files["runs"], "--maps", files["maps"], "--mask", files["mask"]]
    argv += ["--out", out, "--tsv-dir", tsv, "--confounds", *files["confounds"]]
    argv += ["--confounds-columns", "trans_*,rot_y_power2", "--detrend", "-q"]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""  # -q: neither progress nor messages
    for run, conf in zip(files["runs"], files["confounds"], strict=True):
        selected = filled_like_nilearn(conf, ["trans_x", "trans_x_derivative1", "rot_y_power2"])
        nilearn = NilearnMasker(
            files["maps"], mask_img=files["mask"], detrend=True, t_r=2.0, standardize=None
        )
        want = nilearn.fit_transform(run, confounds=selected)
        np.testing.assert_allclose(stored(out, run), want, rtol=1e-10, atol=1e-12)
        table = pd.read_csv(conf, sep="\t", na_values="n/a")
        zeros = table[["trans_x", "trans_x_derivative1", "rot_y_power2"]].fillna(0).to_numpy()
        control = nilearn.fit_transform(run, confounds=zeros)  # n/a read as 0 instead
        assert np.abs(control - want).max() > 1e-6


def test_python_api_raises_on_na_as_nilearn(files):
    run, conf = files["runs"][0], files["confounds"][0]
    with pytest.raises(ValueError, match="array must not contain infs or NaNs"):
        NilearnMasker(files["maps"], standardize=None).fit_transform(run, confounds=conf)
    with pytest.raises(ValueError, match="array must not contain infs or NaNs"):
        NiftiMapsMasker(files["maps"], standardize=None).fit_transform(run, confounds=conf)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("interior", "column 'csf' of '{conf}' has n/a at line 9, after its first value"),
        ("pattern", "--confounds-columns: no column of '{conf}' matches 'motion_*'"),
        ("pairing", "--confounds: '{conf}' is not for image '{run}' (sub-01 vs sub-00)"),
        ("rows", "--confounds: '{conf}' has 50 rows but its image has 60 volumes"),
    ],
)
def test_confounds_errors(files, tmp_path, capsys, case, message):
    run = files["runs"][0]
    conf = str(tmp_path / "sub-00_task-rest_desc-confounds_timeseries.tsv")
    columns = "trans_*,csf"
    if case == "interior":
        write_confounds(conf, seed=3, interior_na=True)
    elif case == "rows":
        write_confounds(conf, seed=3, n_scans=50)
    elif case == "pairing":
        conf = files["confounds"][1]
    else:
        write_confounds(conf, seed=3)
        columns = "motion_*"
    argv = extract_args(files, run, str(tmp_path / "o.zarr"), "--confounds", conf)
    assert main([*argv, "--confounds-columns", columns]) == 2
    assert message.format(conf=conf, run=run) in capsys.readouterr().err


# --- progress on stderr ------------------------------------------------------------------------


def test_progress_advances_per_chunk_and_quiet_silences_it(files, tmp_path, capsys):
    store = str(tmp_path / "run.zarr")
    assert main(["convert", files["runs"][0], store, "--chunk-volumes", "6"]) == 0  # 10 chunks
    err = capsys.readouterr().err
    steps = progress_lines(err, "convert")
    assert len(steps) >= 5 and steps == sorted(steps) and steps[-1] == 100, err
    assert re.search(r"^convert: \d+ tasks done in", err, re.M)
    assert f"converted {files['runs'][0]} -> {store}" in err

    out = str(tmp_path / "o.zarr")
    # a run too large to run whole in one task (as a real one is): one graph, progress per chunk
    with dask.config.set({"daskmasker.batch.whole-item-bytes": 0}):
        assert main(extract_args(files, store, out, "--detrend")) == 0
    err = capsys.readouterr().err
    assert len(set(progress_lines(err, "extract"))) >= 5, err
    assert "1 extracted, 0 already complete, 0 failed" in err
    # one display per named phase, each one counter that never restarts (the fit's several
    # small computations, then the extraction's graph, each had restarted a single counter)
    lines = counters(err)
    assert list(lines) == ["fit", "extract", "write reports"], err
    for label, steps in lines.items():
        assert len({total for _, total in steps}) == 1, (label, steps)
        assert [d for d, _ in steps] == sorted(d for d, _ in steps), (label, steps)
        assert re.search(rf"^{label}: \d+ [\w ]+ done in [\d.]+ s$", err, re.M), label
    assert lines["fit"] == [(1, 1)] and lines["write reports"][-1] == (2, 2), err
    assert err.index("write reports: 2 reports done") < err.index("masker report: ")

    assert main(extract_args(files, store, str(tmp_path / "q.zarr"), "--detrend", "-q")) == 0
    assert capsys.readouterr().err == ""
    assert main(["-q", *extract_args(files, store, str(tmp_path / "p.zarr"), "--no-report")]) == 0
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(stored(out, store), stored(str(tmp_path / "q.zarr"), store))


# --- every command -----------------------------------------------------------------------------


DEMO_PHASES = ["generating data", "converting to Zarr", "extracting", "writing report"]


def counters(stderr: str) -> dict[str, list[tuple[int, int]]]:
    """Per phase label, the ``(done, total)`` of each progress line, in order."""
    found: dict[str, list[tuple[int, int]]] = {}
    for label, done, total in re.findall(r"^([^:\n]+): +\d+% \((\d+)/(\d+) ", stderr, re.M):
        found.setdefault(label, []).append((int(done), int(total)))
    return found


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--volumes", "30", "--maps", "4"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    r = re.search(r"median r = ([\d.]+), min r = ([-\d.]+)", captured.out)
    assert r and float(r.group(1)) > 0.5, captured.out
    # one display per named phase, each one counter that never restarts (its total is fixed)
    lines = counters(captured.err)
    assert list(lines) == DEMO_PHASES, captured.err
    for label, steps in lines.items():
        assert len({total for _, total in steps}) == 1, (label, steps)
        assert [d for d, _ in steps] == sorted(d for d, _ in steps), (label, steps)
        assert re.search(rf"^{label}: \d+ [\w ]+ done in [\d.]+ s$", captured.err, re.M)
    assert lines["generating data"][-1] == (4 + 30, 4 + 30)  # the maps, then the volumes
    group = open_timeseries(str(out / "timeseries.zarr"), "sub-01_task-rest")
    signals = group["signals"].values
    assert signals.shape == (30, 4)
    (tsv,) = glob.glob(str(out / "derivatives" / "**" / "*_timeseries.tsv"), recursive=True)
    # the BIDS TSV reads back exactly in the signals' dtype (shortest float32 text)
    np.testing.assert_array_equal(pd.read_csv(tsv, sep="\t").to_numpy(signals.dtype), signals)
    assert (out / "report.html").stat().st_size > 10_000
    assert f"{(out / 'report.html').absolute()}  (the report" in captured.out

    # what to open next: three lines of Python that run exactly as printed
    code = captured.out.rstrip("\n").split("\n")[-3:]
    assert code[0] == "import xarray as xr", captured.out
    ran = subprocess.run([sys.executable, "-c", "\n".join(code)], capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr  # and without a warning
    assert "<xarray.DataArray 'signals' (time: 30, region: 4)>" in ran.stdout, ran.stdout

    # a rerun reuses the generated data; other parameters regenerate them
    bold = out / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz"
    written = bold.stat().st_mtime_ns
    assert main(argv) == 0
    again = capsys.readouterr()
    assert "generating data: reusing" in again.out and "generating data" not in counters(again.err)
    assert bold.stat().st_mtime_ns == written
    np.testing.assert_array_equal(
        open_timeseries(str(out / "timeseries.zarr"), "sub-01_task-rest")["signals"].values,
        signals,
    )
    assert main([*argv[:-1], "5"]) == 0  # five maps: regenerated
    other = capsys.readouterr()
    assert "reusing" not in other.out and "generating data" in counters(other.err)
    assert bold.stat().st_mtime_ns != written


def test_demo_says_what_it_does_first_and_logs_its_phases_in_order(tmp_path):
    """Run as a user runs it into a log (stdout and stderr in one pipe, as SLURM or `| tee`
    keep them; no PYTHONUNBUFFERED): the first line comes within 1 s and before Dask, xarray or
    nibabel are imported; then each phase's progress and its message follow in order (stdout is
    flushed as it is written), and every counter is a named phase's."""
    argv = [sys.executable, "-X", "importtime", "-m", "daskmasker", "demo"]
    argv += ["--out", str(tmp_path / "d"), "--volumes", "10", "--maps", "2"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        before = []
        for line in proc.stdout:
            if line.startswith("daskmasker demo: generates"):
                elapsed = time.perf_counter() - start
                break
            before.append(line)
        else:
            pytest.fail("the demo never said what it does:\n" + "".join(before))
        rest = proc.stdout.read()
        assert proc.wait(timeout=120) == 0, rest
    finally:
        proc.kill()
        proc.wait()
    imported = {m.split(".")[0] for m in re.findall(r"\|\s+(\S+)$", "".join(before), re.M)}
    assert "daskmasker" in imported  # negative control: the probe sees the imports
    assert not imported & {"dask", "distributed", "xarray", "nibabel", "zarr"}, imported
    assert elapsed < 1.0, elapsed

    log = [line for line in rest.splitlines() if not line.startswith("import time:")]
    steps = [
        "generating data: ",
        "generated the maps",
        "converting to Zarr: ",
        "converted ",
        "extracting: ",
        "extracted ",
        "recovery of the latent signals",
        "writing report: ",
        "open next:",
    ]
    first = [next((k for k, line in enumerate(log) if line.startswith(s)), -1) for s in steps]
    assert -1 not in first and first == sorted(first), "\n".join(log)
    for line in log:
        if re.search(r"\d+/\d+", line):
            assert line.startswith(tuple(f"{phase}: " for phase in DEMO_PHASES)), line


def check_outputs(files, out, tsv_dir, **params) -> None:
    """The store and the BIDS TSV files hold the Python API's numbers."""
    tsvs = sorted(glob.glob(os.path.join(tsv_dir, "**", "*_timeseries.tsv"), recursive=True))
    assert len(tsvs) == len(files["runs"])
    for run, tsv in zip(files["runs"], tsvs, strict=True):
        want = api_signals(files, run, **params)
        assert os.path.basename(run).replace("_bold.nii", "") in os.path.basename(tsv)
        np.testing.assert_allclose(stored(out, run), want, rtol=1e-10, atol=1e-12)
        table = pd.read_csv(tsv, sep="\t")
        assert table.shape == want.shape
        np.testing.assert_allclose(table.to_numpy(), want, rtol=1e-10, atol=1e-12)


def test_extract_on_local_workers_writes_the_api_numbers(files, tmp_path, capsys):
    out, tsv = str(tmp_path / "o.zarr"), str(tmp_path / "tsv")
    argv = ["extract", *files["runs"], "--maps", files["maps"], "--mask", files["mask"]]
    argv += ["--out", out, "--tsv-dir", tsv, "--standardize", "zscore_sample", "--detrend"]
    assert main([*argv, "--workers", "2"]) == 0
    err = capsys.readouterr().err
    assert len(set(progress_lines(err, "extract"))) >= 3, err
    check_outputs(files, out, tsv, standardize="zscore_sample", detrend=True)


@pytest.fixture
def scheduler_address(tmp_path):
    """`dask scheduler` and one `dask worker` started as a deployment would; its tcp address."""
    sched_file = str(tmp_path / "scheduler.json")
    python = [sys.executable, "-m"]
    scheduler = [*python, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"]
    scheduler += ["--dashboard-address", ":0", "--scheduler-file", sched_file]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen(scheduler, **quiet)]
    try:
        with Client(scheduler_file=sched_file, timeout=60) as client:
            address = client.scheduler.address
            worker = [*python, "distributed.cli.dask_worker", address, "--host", "127.0.0.1"]
            procs.append(subprocess.Popen([*worker, "--nthreads", "1", "--no-dashboard"], **quiet))
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        stop_processes(procs)


def test_extract_on_a_scheduler_address(files, tmp_path, capsys, scheduler_address):
    assert scheduler_address.startswith("tcp://127.0.0.1:")
    out, tsv = str(tmp_path / "o.zarr"), str(tmp_path / "tsv")
    argv = ["extract", *files["runs"], "--maps", files["maps"], "--mask", files["mask"]]
    argv += ["--out", out, "--tsv-dir", tsv, "--detrend", "--low-pass", "0.1"]
    assert main([*argv, "--scheduler", scheduler_address]) == 0
    err = capsys.readouterr().err
    assert len(set(progress_lines(err, "extract"))) >= 3, err
    with Client(scheduler_address) as client:
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert sum(executed.values()) > 0, "the graph should have run on the cluster's worker"
    check_outputs(files, out, tsv, detrend=True, low_pass=0.1, t_r=2.0)


def test_verbose_shows_the_masker_and_where_it_runs(files, tmp_path, capsys):
    argv = extract_args(files, files["runs"][0], str(tmp_path / "o.zarr"), "--no-progress")
    assert main(["-v", *argv, "--detrend"]) == 0
    err = capsys.readouterr().err
    assert "extract: running on the local threaded scheduler" in err
    assert re.search(r"masker: NiftiMapsMasker\(.*detrend=True", err, re.S)
    assert main([*argv, "--overwrite"]) == 0  # without -v: info, no debug
    err = capsys.readouterr().err
    assert "1 extracted" in err and "masker:" not in err
