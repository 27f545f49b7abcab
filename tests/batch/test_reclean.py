"""Extract once, clean many: a re-clean of a store equals a full extraction with the new
parameters (and nilearn's), reads no image, and refuses what only the voxels could change."""

from __future__ import annotations

import shutil
import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.maskers import NiftiMapsMasker as NilearnMasker

from daskmasker import NiftiMapsMasker, open_timeseries, reclean, run_batch
from daskmasker.batch.record import StaleStoreError

from helpers import make_mask

EXTRACTED = dict(standardize="zscore_sample", detrend=True)
NEW_CLEANINGS = {
    "no-detrend-psc": dict(detrend=False, standardize="psc"),
    "bandpass": dict(low_pass=0.1, high_pass=0.01, t_r=2.0),
    "cosine-highpass": dict(high_pass=0.02, t_r=2.0, clean_args={"filter": "cosine"}),
    "float32-no-confound-std": dict(dtype="float32", standardize_confounds=False),
}


def rel_err(a, b) -> float:
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(np.asarray(a, dtype=np.float64) - b).max() / np.abs(b).max())


def extract(study, out, params, confounds=True, sample_masks=None, **kwargs):
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **params)
    imgs = [r["img"] for r in study["runs"]]
    confs = [r["conf"] for r in study["runs"]] if confounds else None
    result = run_batch(masker, imgs, out, confounds=confs, sample_masks=sample_masks, **kwargs)
    assert not result.failed, result.failed
    return result


def open_run(out, name):
    return open_timeseries(out, name)


def hide_images(study):
    """Move every image, the maps and the mask away: a re-clean that read one would fail."""
    hidden = study["root"] / "hidden"
    hidden.mkdir()
    for path in [study["maps"], study["mask"], *(r["img"] for r in study["runs"])]:
        shutil.move(path, hidden)


@pytest.mark.parametrize("new", NEW_CLEANINGS.values(), ids=NEW_CLEANINGS.keys())
def test_reclean_equals_a_fresh_extraction_and_nilearn(study, new):
    root = study["root"]
    extract(study, str(root / "first.zarr"), EXTRACTED)
    fresh = str(root / "fresh.zarr")
    extract(study, fresh, {**EXTRACTED, **new})
    references = {}
    for run in study["runs"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nilearn = NilearnMasker(study["maps"], mask_img=study["mask"], **{**EXTRACTED, **new})
            references[run["name"]] = nilearn.fit_transform(run["img"], confounds=run["conf"])
    hide_images(study)
    result = reclean(str(root / "first.zarr"), str(root / "again.zarr"), **new)
    assert sorted(result.done) == [r["name"] for r in study["runs"]] and not result.failed
    for name, reference in references.items():
        got = open_run(root / "again.zarr", name)["signals"].values
        want = open_run(fresh, name)["signals"].values
        assert got.dtype == want.dtype == reference.dtype
        np.testing.assert_array_equal(got, want)
        assert rel_err(got, reference) <= (1e-5 if got.dtype == np.float32 else 1e-10)


def test_new_confounds_and_sample_mask_without_the_images(study):
    root = study["root"]
    extract(study, str(root / "first.zarr"), EXTRACTED, confounds=False)
    masks = [np.arange(2, r["n"] - 1) for r in study["runs"]]
    confs = [r["conf"] for r in study["runs"]]
    extract(study, str(root / "fresh.zarr"), EXTRACTED, sample_masks=masks)
    hide_images(study)
    reclean(str(root / "first.zarr"), str(root / "again.zarr"), confounds=confs, sample_masks=masks)
    for run, mask in zip(study["runs"], masks, strict=True):
        got = open_run(root / "again.zarr", run["name"])
        want = open_run(root / "fresh.zarr", run["name"])
        np.testing.assert_array_equal(got["signals"].values, want["signals"].values)
        np.testing.assert_array_equal(got["frame"].values, mask)
        np.testing.assert_array_equal(got["frame"].values, want["frame"].values)
        assert list(got["confound"].values) == ["csf", "white_matter", "fd"]
        assert got.attrs["confounds_checksum"] == want.attrs["confounds_checksum"]
        assert got.attrs["fingerprint"] == want.attrs["fingerprint"]


def test_recleaned_store_is_a_store_extract_resumes(study):
    """The re-cleaned store records the fingerprint of a full extraction with the new
    parameters: extracting into it skips every run, and re-cleaning it again works."""
    root = study["root"]
    extract(study, str(root / "first.zarr"), EXTRACTED)
    new = dict(detrend=False, standardize="psc")
    reclean(str(root / "first.zarr"), str(root / "again.zarr"), **new)
    resumed = extract(study, str(root / "again.zarr"), {**EXTRACTED, **new})
    assert resumed.done == [] and len(resumed.skipped) == 2
    reclean(str(root / "again.zarr"), str(root / "back.zarr"), **EXTRACTED)
    for run in study["runs"]:
        back = open_run(root / "back.zarr", run["name"])["signals"].values
        first = open_run(root / "first.zarr", run["name"])["signals"].values
        np.testing.assert_array_equal(back, first)


def test_reclean_rerun_is_skipped_or_refused(study):
    root = study["root"]
    extract(study, str(root / "first.zarr"), EXTRACTED)
    reclean(str(root / "first.zarr"), str(root / "again.zarr"), detrend=False)
    same = reclean(str(root / "first.zarr"), str(root / "again.zarr"), detrend=False)
    assert same.done == [] and len(same.skipped) == 2
    with pytest.raises(StaleStoreError, match="parameter 'detrend' was False, now True"):
        reclean(str(root / "first.zarr"), str(root / "again.zarr"), detrend=True)
    assert len(reclean(str(root / "first.zarr"), str(root / "again.zarr"), overwrite=True).done)


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("smoothing_fwhm", 6.0, "smoothing acts on the voxels"),
        ("high_variance_confounds", True, "computed from the voxels"),
        ("resampling_target", "maps", "resampling acts on the voxels"),
        ("maps_img", "other_maps.nii.gz", "the maps define the regions"),
        ("mask_img", None, "the mask selects the voxels"),
        ("keep_masked_maps", True, "which maps are projected"),
    ],
)
def test_parameters_that_need_the_voxels_are_refused_by_name(study, name, value, why):
    root = study["root"]
    extract(study, str(root / "first.zarr"), EXTRACTED)
    with pytest.raises(ValueError, match=f"parameter '{name}' cannot be changed") as info:
        reclean(str(root / "first.zarr"), str(root / "again.zarr"), **{name: value})
    assert why in str(info.value) and "daskmasker extract" in str(info.value)
    assert not (root / "again.zarr").exists()


def test_unchanged_voxel_parameters_and_unknown_ones(study):
    root = study["root"]
    extract(study, str(root / "first.zarr"), EXTRACTED)
    ok = reclean(str(root / "first.zarr"), str(root / "a.zarr"), smoothing_fwhm=None, detrend=False)
    assert len(ok.done) == 2
    with pytest.raises(TypeError, match="unexpected parameter 'lowpass'"):
        reclean(str(root / "first.zarr"), str(root / "b.zarr"), lowpass=0.1)
    with pytest.raises(ValueError, match="'standardize' must be one of"):
        reclean(str(root / "first.zarr"), str(root / "b.zarr"), standardize="max")


def test_high_variance_confounds_are_kept_in_front_of_new_confounds(study):
    """High-variance confounds come from the voxels: stored at extraction, they stay in front
    of the new user confounds (nibabel images: a .nii.gz path with high_variance_confounds
    trips a Dask fusion error, reported separately)."""
    root = study["root"]
    imgs = [nib.load(r["img"]) for r in study["runs"]]
    names = [r["name"] for r in study["runs"]]
    confs = [r["conf"] for r in study["runs"]]
    params = dict(EXTRACTED, high_variance_confounds=True)
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **params)
    run_batch(masker, imgs, str(root / "first.zarr"), names=names)
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **params)
    run_batch(masker, imgs, str(root / "fresh.zarr"), names=names, confounds=confs)
    reclean(str(root / "first.zarr"), str(root / "again.zarr"), confounds=confs)
    for name in names:
        got = open_run(root / "again.zarr", name)
        want = open_run(root / "fresh.zarr", name)
        np.testing.assert_array_equal(got["signals"].values, want["signals"].values)
        assert list(got["confound"].values) == [
            *(f"high_variance_{i}" for i in range(5)),
            "csf",
            "white_matter",
            "fd",
        ]


def test_same_parameters_reproduce_the_store_bit_for_bit(study):
    """The store alone is read: even a mask rewritten since extraction changes nothing."""
    root = study["root"]
    extract(study, str(root / "first.zarr"), EXTRACTED)
    make_mask(radius=8.0).to_filename(study["mask"])
    reclean(str(root / "first.zarr"), str(root / "again.zarr"), **EXTRACTED)
    for run in study["runs"]:
        got = open_run(root / "again.zarr", run["name"])["signals"].values
        np.testing.assert_array_equal(got, open_run(root / "first.zarr", run["name"])["signals"])


def test_reclean_of_something_else_names_it(study):
    with pytest.raises(FileNotFoundError, match="no batch store at '.*nothing.zarr'"):
        reclean(str(study["root"] / "nothing.zarr"), str(study["root"] / "out.zarr"))
    assert not (study["root"] / "out.zarr").exists()


def test_a_store_of_the_previous_layout_is_refused_naming_upgrade(study):
    import zarr

    root = study["root"]
    old = zarr.open_group(str(root / "first.zarr"), mode="w", zarr_format=3)
    old.attrs["daskmasker_batch"] = {"parameters": {}, "versions": {}}
    with pytest.raises(ValueError, match="previous layout .* daskmasker upgrade"):
        reclean(str(root / "first.zarr"), str(root / "again.zarr"))
    assert not (root / "again.zarr").exists()
