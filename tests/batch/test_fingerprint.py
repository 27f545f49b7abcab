"""No stale results: a rerun into a store is skipped only when nothing its numbers depend on
changed; otherwise it is refused, naming what changed, or recomputed with ``overwrite``."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import zarr

from daskmasker import NiftiMapsMasker, open_timeseries, run_batch, to_zarr
from daskmasker.batch import store
from daskmasker.batch.index import read_index, write_index
from daskmasker.batch.record import StaleStoreError
from daskmasker.cli import main
from daskmasker.io.checksum import digest
from daskmasker.io.fs import Location

from helpers import make_maps, make_mask, write_confounds, write_run

PARAMS = dict(standardize="zscore_sample", detrend=True)


def batch(study, out, overwrite=False, **params):
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **{**PARAMS, **params})
    imgs = [r["img"] for r in study["runs"]]
    confs = [r["conf"] for r in study["runs"]]
    return run_batch(masker, imgs, out, confounds=confs, overwrite=overwrite)


def signals(out, name):
    return open_timeseries(out, name)["signals"].values


@pytest.fixture
def extracted(study):
    out = str(study["root"] / "out.zarr")
    first = batch(study, out)
    assert sorted(first.done) == ["sub-01_task-rest", "sub-02_task-rest"]
    return study, out, {n: signals(out, n) for n in first.done}


def test_identical_rerun_is_skipped_as_complete(extracted):
    study, out, before = extracted
    again = batch(study, out)
    assert again.done == [] and not again.failed
    assert sorted(again.skipped) == sorted(before)
    for name, values in before.items():
        np.testing.assert_array_equal(signals(out, name), values)


def refused(study, out, before, match, **params):
    """The rerun raises naming the change and the way out, and leaves the store as it was."""
    with pytest.raises(StaleStoreError, match=match) as info:
        batch(study, out, **params)
    assert "--overwrite (Python: overwrite=True)" in str(info.value)
    for name, values in before.items():
        np.testing.assert_array_equal(signals(out, name), values)
    return str(info.value)


def test_changed_parameter_is_refused(extracted):
    study, out, before = extracted
    message = refused(study, out, before, "parameter 'detrend' was True, now False", detrend=False)
    assert "run sub-01_task-rest:" in message and "run sub-02_task-rest:" in message


def test_changed_mask_is_refused(extracted):
    study, out, before = extracted
    make_mask(radius=10.0).to_filename(study["mask"])
    refused(study, out, before, r"mask content changed: was .*mask\.nii\.gz")


def test_changed_maps_are_refused(extracted):
    study, out, before = extracted
    make_maps(dtype=np.float64, seed=5).to_filename(study["maps"])
    refused(study, out, before, r"maps content changed: was .*maps\.nii\.gz")


def test_changed_confounds_content_is_refused(extracted):
    study, out, before = extracted
    run = study["runs"][1]
    write_confounds(run["conf"], run["n"], seed=99)
    message = refused(study, out, before, "run sub-02_task-rest: confounds content changed")
    assert "sub-01_task-rest" not in message


def test_changed_input_file_content_is_refused(extracted):
    study, out, before = extracted
    run = study["runs"][0]
    write_run(run["img"], study["maps_img"], run["n"], seed=42)
    refused(study, out, before, "run sub-01_task-rest: image content changed")


def test_overwrite_recomputes(extracted):
    study, out, before = extracted
    result = batch(study, out, overwrite=True, detrend=False)
    assert sorted(result.done) == sorted(before)
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **{**PARAMS, "detrend": False})
    run = study["runs"][0]
    expected = masker.fit(run["img"]).transform(run["img"], confounds=run["conf"])
    np.testing.assert_allclose(signals(out, run["name"]), expected, rtol=1e-10, atol=1e-12)
    assert not np.allclose(signals(out, run["name"]), before[run["name"]])


def test_moved_input_with_same_content_is_the_same_input(extracted):
    study, out, _ = extracted
    run = study["runs"][0]
    moved = str(study["root"] / "elsewhere_bold.nii.gz")
    shutil.copy(run["img"], moved)
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **PARAMS)
    again = run_batch(masker, [moved], out, confounds=[run["conf"]], names=[run["name"]])
    assert again.skipped == [run["name"]]


def test_cli_refuses_a_changed_rerun_and_overwrite_recomputes(study, capsys):
    out = str(study["root"] / "cli.zarr")
    run = study["runs"][0]
    args = ["extract", run["img"], "--maps", study["maps"], "--out", out, "--no-progress"]
    assert main([*args, "--no-report"]) == 0
    assert main([*args, "--no-report", "--detrend"]) == 2
    err = capsys.readouterr().err
    assert "parameter --detrend was False, now True" in err  # the CLI quotes its flags
    assert "--overwrite" in err
    assert main([*args, "--no-report", "--detrend", "--overwrite"]) == 0
    assert "1 extracted" in capsys.readouterr().err


def test_digest_reuses_a_recorded_hash_only_while_size_and_mtime_hold(study):
    path = study["runs"][0]["img"]
    fresh = digest(path)
    assert fresh["sha256"] == digest(path, known=None)["sha256"]
    recorded = {**fresh, "sha256": "recorded"}
    assert digest(path, known=recorded)["sha256"] == "recorded"  # quick check: no read
    write_run(path, study["maps_img"], study["runs"][0]["n"], seed=7)
    assert digest(path, known=recorded)["sha256"] not in ("recorded", fresh["sha256"])


def test_zarr_store_digest_follows_its_chunks(study, tmp_path):
    img = study["runs"][0]["img"]
    store = str(tmp_path / "run.zarr")
    to_zarr(img, store, chunks=8)
    first = digest(store)
    copy = str(tmp_path / "copy.zarr")
    shutil.copytree(store, copy)
    assert digest(copy)["sha256"] == first["sha256"]
    array = next(a for _, a in zarr.open_group(copy, mode="a").arrays() if a.ndim == 4)
    array[1, 0, 0, 0] = array[1, 0, 0, 0] + 1
    assert digest(copy)["sha256"] != first["sha256"]


def test_in_memory_images_are_hashed_by_values_and_affine(study):
    img = nib.load(study["runs"][0]["img"])
    data = np.asarray(img.dataobj).copy()
    base = digest(nib.Nifti1Image(data, img.affine))["sha256"]
    assert digest(nib.Nifti1Image(data.copy(), img.affine))["sha256"] == base
    changed = data.copy()
    changed[0, 0, 0, 0] += 1
    assert digest(nib.Nifti1Image(changed, img.affine))["sha256"] != base
    shifted = img.affine.copy()
    shifted[0, 3] += 1
    assert digest(nib.Nifti1Image(data, shifted))["sha256"] != base


def test_a_run_without_fingerprint_is_refused_not_skipped(extracted):
    """A store written before fingerprints existed cannot prove it is current (its root index,
    if any, names runs without fingerprints, as the index of the first resumable stores did)."""
    study, out, before = extracted
    location = Location(out)
    run = store.open_run(location, "sub-01_task-rest")
    del run.attrs["fingerprint"]
    store.write_run(location, "sub-01_task-rest", run)
    index = read_index(location)
    write_index(location, {k: v for k, v in index.items() if "01" not in k})
    message = refused(study, out, before, "run sub-01_task-rest: it was written without a fin")
    assert "sub-02_task-rest" not in message


def test_clean_args_in_another_key_order_are_the_same_parameters(study):
    first = {"filter": False, "ensure_finite": False}
    again = batch(study, str(study["root"] / "ca.zarr"), clean_args=first)
    assert len(again.done) == 2
    reordered = {"ensure_finite": False, "filter": False}
    assert len(batch(study, str(study["root"] / "ca.zarr"), clean_args=reordered).skipped) == 2
    with pytest.raises(StaleStoreError, match="parameter 'clean_args' was"):
        batch(study, str(study["root"] / "ca.zarr"), clean_args={**first, "ensure_finite": True})


def test_each_parameter_and_the_sample_mask_change_the_fingerprint():
    """The pure part, without a store: every masker parameter that is not declared numberless
    (``NOT_NUMBERS``) or an input, changed alone, and the sample mask, changed alone, change the
    fingerprint's sha256 (what a resume compares) and are named by ``differences``."""
    from daskmasker.batch.fingerprint import (
        INPUT_PARAMS,
        NOT_NUMBERS,
        differences,
        fingerprint,
        fingerprint_sha,
    )

    params = {k: str(v) for k, v in NiftiMapsMasker(None).get_params().items()}
    keep = np.arange(2, 40)
    base = fingerprint(params, {}, keep, ["a"])
    numbers = set(params) - set(NOT_NUMBERS) - set(INPUT_PARAMS)
    assert {"t_r", "low_pass", "standardize", "clean_args", "min_coverage"} <= numbers
    for name in sorted(numbers):
        changed = fingerprint({**params, name: "changed"}, {}, keep, ["a"])
        assert fingerprint_sha(changed) != fingerprint_sha(base), name
        assert differences(base, changed) == [f"parameter '{name}' was {params[name]}, now changed"]
    for other in (np.arange(3, 40), None, keep[::-1]):
        changed = fingerprint(params, {}, other, ["a"])
        assert fingerprint_sha(changed) != fingerprint_sha(base), other
        assert differences(base, changed) == ["sample_mask changed (other volumes kept)"]
    same = fingerprint(params, {}, list(keep), ["a"])  # the same volumes as a list
    assert fingerprint_sha(same) == fingerprint_sha(base) and differences(base, same) == []
