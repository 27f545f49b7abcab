"""Parity with nilearn across input kinds, chunkings, dtypes and ``clean_args``; and negative
controls showing that the parity assertion fails when the numbers are broken by as little as a
float32 rounding or a 1e-7 relative perturbation.

Tolerances and measured errors: ``tests/parity.py``.
"""

from __future__ import annotations

import dask
import numpy as np
import pytest
from nilearn.maskers import NiftiMapsMasker as NilearnMasker

from daskmasker import NiftiMapsMasker, open_nifti, open_zarr, to_zarr

from helpers import make_data, make_maps
from parity import TOL32, TOL64, TOL_F32_OUTPUT, as64, assert_close, assert_parity, run

N_SCANS = 40
# interior frames whose mirrors (n - 1 - f) are kept: nilearn's Butterworth interpolation of
# censored frames (quirk Q1, which we do not copy) then agrees with the correct one
CENSORED = [5, 6, 20]
KEEP = np.setdiff1d(np.arange(N_SCANS), CENSORED)
FILTERED = dict(detrend=True, standardize="zscore_sample", t_r=2.0, low_pass=0.15, high_pass=0.01)


def _confounds(n=N_SCANS, seed=3):
    return np.random.default_rng(seed).normal(size=(n, 3)).cumsum(axis=0)


def _small_chunks(img) -> dict:
    """Dask settings that split the run into chunks of 3 volumes and product batches of 4."""
    volume_bytes = int(np.prod(img.shape[:3])) * img.get_data_dtype().itemsize
    return {"daskmasker.chunk-bytes": 3 * volume_bytes, "daskmasker.gemm-max-volumes": 4}


def _n_product_batches(masker, img) -> int:
    lazy = masker.set_output(transform="xarray").transform(img)
    masker.set_output(transform="default")
    layers = lazy.data.dask.layers
    return sum(len(layer) for name, layer in layers.items() if "products" in name)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data):
    """The run as nibabel image, .nii, .nii.gz and a Zarr store of 7-volume chunks."""
    tmp = tmp_path_factory.mktemp("inputs")
    nii, niigz = str(tmp / "bold.nii"), str(tmp / "bold.nii.gz")
    data.to_filename(nii)
    data.to_filename(niigz)
    return {
        "nibabel": data,
        "nii": nii,
        "nii.gz": niigz,
        "zarr": to_zarr(data, str(tmp / "bold.zarr"), chunks=7),
    }


@pytest.mark.parametrize("kind", ["nibabel", "nii", "nii.gz", "zarr"])
def test_input_kinds_chunked_and_batched(inputs, maps, data, kind):
    """Several time chunks and product batches; filters, confounds and a sample_mask."""
    img = inputs[kind]
    with dask.config.set(_small_chunks(data)):
        opened = (
            open_zarr(img) if kind == "zarr" else open_nifti(img) if kind != "nibabel" else None
        )
        if opened is not None:
            assert len(opened.data.chunks[0]) >= 6  # 7 volumes a chunk (zarr), 3 (nifti)
        params = dict(maps_img=maps, **FILTERED)
        assert _n_product_batches(NiftiMapsMasker(**params).fit(img), img) > 5
        assert_parity(params, img, img, ref_imgs=data, confounds=_confounds(), sample_mask=KEEP)


def test_more_volumes_than_the_default_batch(tmp_path, maps):
    """T = 150 in chunks of 10 volumes and the default batch of at most 64 volumes."""
    data = make_data(maps, n_scans=150, dtype=np.float64)
    path = str(tmp_path / "long.nii")
    data.to_filename(path)
    volume_bytes = int(np.prod(data.shape[:3])) * 8
    with dask.config.set({"daskmasker.chunk-bytes": 10 * volume_bytes}):
        masker = NiftiMapsMasker(maps, detrend=True).fit(path)
        assert _n_product_batches(masker, path) >= 2
        params = dict(maps_img=maps, detrend=True, standardize="zscore_sample")
        assert_parity(params, path, path)


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
@pytest.mark.parametrize("maps_dtype", [np.float32, np.float64])
def test_low_precision_inputs_with_cleaning(dtype, maps_dtype):
    """float32/int16 data, filters, confounds and a sample_mask: within the float32 rounding of
    nilearn run on float64 data; within nilearn's own error of its native run."""
    maps = make_maps(dtype=maps_dtype)
    data = make_data(maps, dtype=dtype, scale=1.0)
    params = dict(maps_img=maps, **FILTERED)
    kwargs = dict(confounds=_confounds(), sample_mask=KEEP)
    out, _ = assert_parity(params, data, data, tol=TOL32, **kwargs)
    ref64, _, _ = run(NilearnMasker, params, as64(data), as64(data), **kwargs)
    assert_close(out, ref64, TOL_F32_OUTPUT if out.dtype == np.float32 else TOL64)


@pytest.mark.parametrize(
    "clean_args",
    [
        {"butterworth__order": 3, "butterworth__padtype": "even"},
        {"butterworth__padtype": "constant", "butterworth__padlen": 10},
        {"butterworth__padtype": None},
        {"butterworth__order": 2, "extrapolate": True},
    ],
)
def test_clean_args_butterworth(maps, data, clean_args):
    """nilearn passes ``butterworth__*`` keys of clean_args to its Butterworth filter."""
    params = dict(maps_img=maps, clean_args=clean_args, **FILTERED)
    assert_parity(params, data, data, confounds=_confounds(), sample_mask=KEEP)


def test_clean_args_change_the_result(maps, data):
    """The keys are used, not ignored: another order gives other numbers."""
    base = NiftiMapsMasker(maps, **FILTERED).fit(data).transform(data)
    order3 = dict(clean_args={"butterworth__order": 3})
    other = NiftiMapsMasker(maps, **FILTERED, **order3).fit(data).transform(data)
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(other, base, 1e-3)


# ------------------------------------------------------------------ negative controls
@pytest.fixture(scope="module")
def reference(maps, data):
    params = dict(maps_img=maps, detrend=True, standardize="zscore_sample")
    return NilearnMasker(**params).fit(data).transform(data), params


def test_parity_passes_on_the_real_output(reference, data):
    ref, params = reference
    err = assert_close(NiftiMapsMasker(**params).fit(data).transform(data), ref)
    assert err < TOL64


def test_a_float32_rounding_of_the_output_fails_parity(reference, data):
    ref, params = reference
    out = NiftiMapsMasker(**params).fit(data).transform(data)
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(out.astype(np.float32), ref)


def test_a_float32_step_in_the_pipeline_fails_parity(reference, data):
    """The data cast to float32 before extraction (as a float32 reader would)."""
    ref, params = reference
    data32 = make_data(make_maps(dtype=np.float64), dtype=np.float32)
    out = NiftiMapsMasker(**params).fit(data32).transform(data32)
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(out, ref)


def test_a_1e7_perturbation_fails_parity(reference, data):
    ref, params = reference
    out = NiftiMapsMasker(**params).fit(data).transform(data)
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(out * (1 + 1e-7), ref)
