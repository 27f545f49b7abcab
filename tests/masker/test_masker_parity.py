"""Parity with nilearn 0.14.1's NiftiMapsMasker over a grid of parameters and inputs.

The comparison and its tolerances (measured errors included) are in ``tests/parity.py``:
float64 inputs within 1e-11 relative; float32 and int16 inputs within 2e-7 of nilearn run on the
float64 cast of the data (the float32 rounding of our output), and within 1e-4 of nilearn's own
float32 run (its float32 solve's error).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.maskers import NiftiMapsMasker as NilearnMasker

from daskmasker import NiftiMapsMasker

from helpers import (
    COARSE_AFFINE,
    COARSE_SHAPE,
    MAPS_AFFINE,
    MAPS_SHAPE,
    make_data,
    make_maps,
    make_mask,
)
from parity import TOL32, TOL64, TOL_F32_OUTPUT, as64, assert_close, assert_parity, run


@pytest.mark.parametrize("standardize", ["zscore_sample", "psc", True, False, None])
@pytest.mark.parametrize("detrend", [False, True])
def test_standardize_detrend(maps, data, standardize, detrend):
    assert_parity(dict(maps_img=maps, standardize=standardize, detrend=detrend), data, data)


@pytest.mark.parametrize("target", ["data", "mask", "maps"])
@pytest.mark.parametrize("keep_masked_maps", [False, True])
def test_resampling_targets_with_mask(maps, data, target, keep_masked_maps):
    mask = make_mask(radius=11.0, centre=(-6.0, 0, 0))
    params = dict(
        maps_img=maps,
        mask_img=mask,
        resampling_target=target,
        keep_masked_maps=keep_masked_maps,
        standardize="zscore_sample",
    )
    assert_parity(params, data, data)


def test_mask_cuts_maps_away(maps, data):
    mask = make_mask(radius=5.0, centre=(12.0, 12.0, 6.0))
    out, masker = assert_parity(dict(maps_img=maps, mask_img=mask), data, data)
    assert out.shape[1] < masker.n_elements_


def test_resampling_none_same_grid(maps):
    data = make_data(maps, dtype=np.float64, shape=MAPS_SHAPE, affine=MAPS_AFFINE)
    assert_parity(dict(maps_img=maps, resampling_target=None, detrend=True), data, data)


def test_resampling_none_mismatch_raises(maps, data):
    with pytest.raises(ValueError, match="maps and data do not have the same affine"):
        NiftiMapsMasker(maps, resampling_target=None).fit(data)


def test_general_resampling_of_data(maps):
    data = make_data(maps, dtype=np.float64, shape=COARSE_SHAPE, affine=COARSE_AFFINE)
    assert_parity(dict(maps_img=maps, resampling_target="maps"), data, data)
    assert_parity(dict(maps_img=maps, resampling_target="data"), data, data)


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_data_dtypes(dtype):
    maps32 = make_maps(dtype=np.float32)
    data = make_data(maps32, dtype=dtype, scale=1.0)
    params = dict(maps_img=maps32, standardize="zscore_sample", detrend=True)
    assert_parity(params, data, data, tol=TOL32)
    reference = NilearnMasker(**params).fit(as64(data)).transform(as64(data))
    ours = NiftiMapsMasker(**params).fit(data).transform(data)
    assert_close(ours, reference, TOL_F32_OUTPUT)


def test_scaled_int16(tmp_path, maps):
    data = make_data(maps, dtype=np.float64)
    raw = np.round((np.asarray(data.dataobj) - 10) / 0.5).astype(np.int16)
    img = nib.Nifti1Image(raw, data.affine)
    img.header.set_slope_inter(0.5, 10)
    path = tmp_path / "scaled.nii.gz"
    img.to_filename(path)
    assert_parity(dict(maps_img=maps, detrend=True), path, path)


def test_3d_inputs(maps, data):
    vol = nib.Nifti1Image(np.asarray(data.dataobj)[..., 3], data.affine)
    out, _ = assert_parity(dict(maps_img=maps), vol, vol)
    assert out.shape == (maps.shape[3],)
    vols = [nib.Nifti1Image(np.asarray(data.dataobj)[..., t], data.affine) for t in range(5)]
    out, _ = assert_parity(dict(maps_img=maps), vols, vols)
    assert out.shape == (5, maps.shape[3])


def _confounds(n, seed=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).cumsum(axis=0)


@pytest.mark.parametrize("form", ["ndarray", "1d", "dataframe", "csv", "tsv", "list"])
def test_confound_forms(tmp_path, maps, data, form):
    conf = _confounds(data.shape[3])
    if form == "1d":
        conf = conf[:, 0]
    elif form == "dataframe":
        conf = pd.DataFrame(conf, columns=list("abcd"))
    elif form in ("csv", "tsv"):
        path = tmp_path / f"conf.{form}"
        np.savetxt(path, conf, delimiter="," if form == "csv" else "\t")
        conf = str(path)
    elif form == "list":
        conf = [conf[:, :2], pd.DataFrame(conf[:, 2:])]
    params = dict(maps_img=maps, detrend=True, standardize="zscore_sample")
    assert_parity(params, data, data, confounds=conf)


@pytest.mark.parametrize("standardize_confounds", [True, False])
def test_standardize_confounds(maps, data, standardize_confounds):
    params = dict(maps_img=maps, standardize_confounds=standardize_confounds, detrend=False)
    assert_parity(params, data, data, confounds=_confounds(data.shape[3]))


@pytest.mark.parametrize("form", ["indices", "booleans", "list_of_indices", "list_of_booleans"])
def test_sample_mask_forms(maps, data, form):
    n = data.shape[3]
    keep = np.setdiff1d(np.arange(n), [0, 7, 8, 20, n - 1])
    mask = {"indices": keep, "list_of_indices": [keep]}.get(form)
    if mask is None:
        booleans = np.zeros(n, dtype=bool)
        booleans[keep] = True
        mask = booleans if form == "booleans" else [booleans]
    params = dict(maps_img=maps, detrend=True, standardize="zscore_sample")
    out, _ = assert_parity(params, data, data, sample_mask=mask, confounds=_confounds(n))
    assert out.shape[0] == keep.size


@pytest.mark.parametrize(
    "filters",
    [
        dict(low_pass=0.1),
        dict(high_pass=0.02),
        dict(low_pass=0.15, high_pass=0.01),
        dict(high_pass=0.02, clean_args={"filter": "cosine"}),
    ],
)
def test_filters(maps, data, filters):
    params = dict(maps_img=maps, t_r=2.0, detrend=True, standardize="zscore_sample", **filters)
    assert_parity(params, data, data, confounds=_confounds(data.shape[3]))


def test_cosine_with_sample_mask(maps, data):
    n = data.shape[3]
    params = dict(maps_img=maps, t_r=2.0, high_pass=0.02, clean_args={"filter": "cosine"})
    assert_parity(params, data, data, sample_mask=np.arange(2, n - 3))


def test_high_variance_confounds(maps, data):
    params = dict(maps_img=maps, high_variance_confounds=True, standardize="zscore_sample")
    assert_parity(params, data, data, confounds=_confounds(data.shape[3]))


@pytest.mark.parametrize("fwhm", [4.0, 6])
def test_smoothing(maps, data, fwhm):
    assert_parity(dict(maps_img=maps, smoothing_fwhm=fwhm, detrend=True), data, data)


@pytest.mark.parametrize("dtype", ["auto", "float32", np.float64])
def test_output_dtype(maps, data, dtype):
    assert_parity(dict(maps_img=maps, dtype=dtype), data, data)


def test_int16_auto_dtype_truncates_like_nilearn():
    maps32 = make_maps(dtype=np.float32)
    data = make_data(maps32, dtype=np.int16)
    out, _ = assert_parity(dict(maps_img=maps32, dtype="auto"), data, data, tol=TOL32)
    assert out.dtype == np.int32


def test_fit_on_one_grid_transform_another(maps, data):
    """Fit without data (target data): maps are resampled at transform, with nilearn's warning."""
    assert_parity(dict(maps_img=maps, mask_img=make_mask()), None, data)


def test_fit_transform_equals_fit_then_transform(maps, data):
    params = dict(maps_img=maps, detrend=True, standardize="zscore_sample")
    a = NiftiMapsMasker(**params).fit_transform(data)
    b = NiftiMapsMasker(**params).fit(data).transform(data)
    np.testing.assert_array_equal(a, b)


def test_nonfinite_inputs_become_zero(maps, data):
    arr = np.asarray(data.dataobj).copy()
    arr[2, 3, 4, 5] = np.nan
    arr[3, 3, 3, 0] = np.inf
    ours_img = nib.Nifti1Image(arr.copy(), data.affine)
    ref_img = nib.Nifti1Image(arr.copy(), data.affine)  # nilearn zeroes its caller's array
    ref, ref_w, _ = run(NilearnMasker, dict(maps_img=maps), ref_img, ref_img)
    out, out_w, _ = run(NiftiMapsMasker, dict(maps_img=maps), ours_img, ours_img)
    assert np.isfinite(out).all()
    assert_close(out, ref, TOL64)
    assert out_w == ref_w
    assert (
        "UserWarning",
        "Non-finite values detected. These values will be replaced with zeros.",
    ) in out_w
    np.testing.assert_array_equal(np.asarray(ours_img.dataobj), arr)  # caller's data untouched
