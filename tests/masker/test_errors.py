"""Bad inputs get clear errors naming the input and what is wrong; numbers never go silently bad."""

from __future__ import annotations

import gzip
import os
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from daskmasker import MultiNiftiMapsMasker, NiftiMapsMasker, open_nifti, open_zarr, run_batch
from daskmasker.io.load import DimensionError

from helpers import MAPS_AFFINE, MAPS_SHAPE, make_data, make_maps
from parity import TOL32, TOL_F32_OUTPUT, assert_close


@pytest.fixture(scope="module")
def fitted(maps, data):
    return NiftiMapsMasker(maps, detrend=True).fit(data)


def test_missing_file_names_it(tmp_path, maps):
    missing = tmp_path / "nope_bold.nii.gz"
    with pytest.raises(ValueError, match="File not found: .*nope_bold.nii.gz"):
        NiftiMapsMasker(maps).fit_transform(str(missing))


def test_not_a_nifti(tmp_path):
    path = tmp_path / "notes.nii"
    path.write_bytes(b"this is not an image" * 40)
    with pytest.raises(ValueError, match="notes.nii.*not a NIfTI"):
        open_nifti(path)


def test_truncated_gzip_names_the_file(tmp_path, data):
    path = tmp_path / "cut_bold.nii.gz"
    data.to_filename(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    img = open_nifti(path)  # the header is intact
    with pytest.raises(OSError, match="cut_bold.nii.gz"):
        _ = img.values


def test_corrupt_gzip_header(tmp_path):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(gzip.compress(b"\x00" * 100)[:20] + b"garbage" * 10)
    with pytest.raises(ValueError, match="bad.nii.gz"):
        open_nifti(path)


@pytest.mark.parametrize("shape", [(5, 5), (5, 5, 5, 3, 2)])
def test_wrong_dimensionality(maps, shape):
    img = nib.Nifti1Image(np.ones(shape, dtype=np.float32), np.eye(4))
    with pytest.raises((DimensionError, ValueError)):
        NiftiMapsMasker(maps).fit_transform(img)


def test_grids_differ_without_resampling(maps, data):
    with pytest.raises(ValueError, match="maps and data do not have the same shape"):
        NiftiMapsMasker(maps, resampling_target=None).fit(data)


def test_empty_mask(maps, data):
    empty = nib.Nifti1Image(np.zeros(MAPS_SHAPE, dtype=np.uint8), MAPS_AFFINE)
    with pytest.raises(ValueError, match="The mask is invalid as it is empty"):
        NiftiMapsMasker(maps, mask_img=empty).fit(data)


def test_mask_removes_every_map(maps, data):
    outside = np.zeros(MAPS_SHAPE, dtype=np.uint8)
    empty_voxels = np.argwhere(np.asarray(maps.dataobj).sum(-1) == 0)
    outside[tuple(empty_voxels[0])] = 1  # one voxel that no map covers
    far = nib.Nifti1Image(outside, MAPS_AFFINE)
    with pytest.raises(ValueError, match="No map left after applying mask to the maps image"):
        NiftiMapsMasker(maps, mask_img=far, resampling_target="maps").fit(data)


def _outside_every_map(maps):
    outside = np.zeros(MAPS_SHAPE, dtype=np.uint8)
    empty_voxels = np.argwhere(np.asarray(maps.dataobj).sum(-1) == 0)
    outside[tuple(empty_voxels[0])] = 1  # one voxel that no map covers
    return nib.Nifti1Image(outside, MAPS_AFFINE)


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("grid", ["maps", "data"])
@pytest.mark.parametrize("params", [{}, {"resampling_target": None}, {"keep_masked_maps": True}])
def test_fit_without_image_then_mask_removes_every_map(maps, data, multi, grid, params):
    """fit() knows no data grid; transform then finds the mask leaves no map: nilearn's error
    (the same type and message), on the maps' grid and on another one (where the one-voxel mask
    resampled onto it is empty: no "invalid mask" error at transform, as in nilearn)."""
    from nilearn import maskers

    ours_cls = MultiNiftiMapsMasker if multi else NiftiMapsMasker
    ref_cls = maskers.MultiNiftiMapsMasker if multi else maskers.NiftiMapsMasker
    img = data if grid == "data" else make_data(maps, shape=MAPS_SHAPE, affine=MAPS_AFFINE)
    mask = _outside_every_map(maps)

    def run(cls):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            masker = cls(maps, mask_img=mask, **params).fit()
            try:
                return masker.transform(img)
            except ValueError as error:
                return error

    ours, ref = run(ours_cls), run(ref_cls)
    if isinstance(ref, Exception):
        assert type(ours) is type(ref)
        # nilearn's message whole; a field-of-view error then names the files and the fix
        # (docs/differences.md)
        assert str(ours) == str(ref) or str(ours).startswith(f"{ref}\nmaps: ")
    else:  # keep_masked_maps: all maps kept, all-zero signals
        np.testing.assert_array_equal(ours, ref)
    if not params:
        assert str(ours) == "No map left after applying mask to the maps image."


def test_all_zero_maps(data):
    zeros = nib.Nifti1Image(np.zeros((*MAPS_SHAPE, 3), dtype=np.float32), MAPS_AFFINE)
    with pytest.raises(ValueError, match="contains no map|No map left"):
        NiftiMapsMasker(zeros).fit(data)


@pytest.mark.parametrize(
    ("confounds", "error", "match"),
    [
        (np.ones((5, 2)), ValueError, "Signal length: 40; confound length: 5"),
        (np.ones((40, 2, 2)), ValueError, "incorrect number of dimensions: 3"),
        (3, TypeError, "confound has an unhandled type"),
    ],
)
def test_bad_confounds(fitted, data, confounds, error, match):
    with pytest.raises(error, match=match):
        fitted.transform(data, confounds=confounds)


def test_confound_files_with_and_without_header(tmp_path, fitted, data):
    values = np.random.default_rng(0).normal(size=(40, 3))
    with_header = tmp_path / "h.tsv"
    pd.DataFrame(values, columns=["a", "b", "c"]).to_csv(with_header, sep="\t", index=False)
    bare = tmp_path / "b.csv"
    np.savetxt(bare, values, delimiter=",")
    np.testing.assert_allclose(
        fitted.transform(data, confounds=str(with_header)),
        fitted.transform(data, confounds=str(bare)),
    )
    with_index = tmp_path / "i.csv"
    pd.DataFrame(values, columns=["a", "b", "c"]).to_csv(with_index)
    # as nilearn: the pandas index column is a regressor too (documented)
    assert fitted.transform(data, confounds=str(with_index)).shape == (40, 6)
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        fitted.transform(data, confounds=str(tmp_path / "missing.tsv"))


@pytest.mark.parametrize(
    ("sample_mask", "error", "match"),
    [
        (np.array([0, 1, 40]), IndexError, "invalid index"),
        (np.array([0, 1, 99]), IndexError, "invalid index"),
        (np.array([-1, 2]), ValueError, "negative"),
        ([True, False], TypeError, "'bool' object is not iterable"),
        ([np.arange(3), np.arange(3)], ValueError, r"Number of sample_mask \(2\)"),
        (np.array([], dtype=int), ValueError, "removes every volume"),
        ("0:3", TypeError, "sample_masks"),
    ],
)
def test_bad_sample_mask(fitted, data, sample_mask, error, match):
    with pytest.raises(error, match=match):
        fitted.transform(data, sample_mask=sample_mask)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        (dict(low_pass=0.1), ValueError, "Repetition time"),
        (dict(low_pass=0.01, high_pass=0.1, t_r=2.0), ValueError, "High pass cutoff"),
        (dict(smoothing_fwhm="big"), TypeError, "'smoothing_fwhm' must be of type"),
        (dict(standardize="z"), ValueError, "'standardize' must be one of"),
        (dict(resampling_target="grid"), ValueError, "'resampling_target' must be one of"),
        (dict(dtype=bool), TypeError, "'dtype' cannot be bool"),
        (dict(dtype="no-such-type"), ValueError, "'dtype' must be"),
        (dict(detrend=1), TypeError, "'detrend' must be of type"),
    ],
)
def test_bad_parameters(maps, data, params, error, match):
    with pytest.raises(error, match=match):
        NiftiMapsMasker(maps, **params).fit_transform(data)


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_complex_images_are_refused_naming_them(tmp_path, maps, data, dtype):
    """nilearn drops the imaginary part silently (and returns float64 for complex64 data,
    float32 for complex128): we refuse, naming the image."""
    values = np.asarray(data.dataobj) * (1 + 0.5j)
    img = nib.Nifti1Image(values.astype(dtype), data.affine)
    path = tmp_path / "phase_bold.nii"
    img.to_filename(path)
    with pytest.raises(TypeError, match=f"phase_bold.nii holds complex values \\({dtype}\\)"):
        NiftiMapsMasker(maps).fit_transform(str(path))
    with pytest.raises(TypeError, match=r"\(in memory\) holds complex values.*magnitude"):
        NiftiMapsMasker(maps).fit_transform(img)


def test_inverse_transform_checks(fitted):
    with pytest.raises(ValueError, match="wrong shape"):
        fitted.inverse_transform(np.ones((3, 2)))
    bad = np.ones((3, fitted.n_elements_))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.inverse_transform(bad)


def test_zarr_store_that_is_not_an_image(tmp_path):
    os.makedirs(tmp_path / "x.zarr")
    (tmp_path / "x.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    with pytest.raises(ValueError, match="not a daskmasker or NIfTI-Zarr image store"):
        open_zarr(str(tmp_path / "x.zarr"))


def test_unwritable_output(tmp_path, maps, data):
    path = tmp_path / "bold.nii"
    data.to_filename(path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file
            target = str(path) + "/out.zarr"
        else:
            target = str(locked / "out.zarr")
        with pytest.raises((OSError, FileExistsError)):
            run_batch(NiftiMapsMasker(maps), [str(path)], target)
    finally:
        locked.chmod(0o700)


# --------------------------------------------------------------------------- numbers


def test_constant_series_standardize_to_zero(maps):
    const = nib.Nifti1Image(np.ones((*MAPS_SHAPE, 20), dtype=np.float64), MAPS_AFFINE)
    out = NiftiMapsMasker(maps, standardize="zscore_sample", detrend=True).fit_transform(const)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, 0, atol=1e-12)


def test_rank_deficient_maps_give_minimum_norm(data):
    base = np.asarray(make_maps(n_maps=3, dtype=np.float64).dataobj)
    dup = np.concatenate([base, base[..., :1]], axis=-1)  # map 3 duplicates map 0
    img = nib.Nifti1Image(dup, MAPS_AFFINE)
    out = NiftiMapsMasker(img).fit_transform(data)
    single = NiftiMapsMasker(nib.Nifti1Image(base, MAPS_AFFINE)).fit_transform(data)
    np.testing.assert_allclose(out[:, 0], out[:, 3], atol=1e-8)  # the weight is split evenly
    np.testing.assert_allclose(out[:, 0] + out[:, 3], single[:, 0], atol=1e-8)


def test_float32_accumulates_in_float64(maps):
    data32 = make_data(make_maps(dtype=np.float32), dtype=np.float32)
    data64 = nib.Nifti1Image(np.asarray(data32.dataobj, dtype=np.float64), data32.affine)
    maps32 = make_maps(dtype=np.float32)
    a = NiftiMapsMasker(maps32, standardize="zscore_sample").fit_transform(data32)
    b = NiftiMapsMasker(maps32, standardize="zscore_sample").fit_transform(data64)
    assert a.dtype == np.float32
    assert_close(a, b, TOL_F32_OUTPUT)  # only the output's float32 rounding (4e-8 measured)


def test_callers_arrays_and_images_untouched(maps):
    arr = np.asarray(make_data(maps).dataobj).copy()
    arr[1, 1, 1, 1] = np.nan
    img = nib.Nifti1Image(arr, make_data(maps).affine)
    maps_before = np.asarray(maps.dataobj).copy()
    mask = np.arange(2, 30, dtype=np.int32)
    mask_before = mask.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        NiftiMapsMasker(maps, t_r=2.0, low_pass=0.1, allow_overlap=True).fit_transform(
            img, sample_mask=mask
        )
    assert np.isnan(np.asarray(img.dataobj)[1, 1, 1, 1])
    np.testing.assert_array_equal(np.asarray(maps.dataobj), maps_before)
    np.testing.assert_array_equal(mask, mask_before)


# --------------------------------------------------------------------------- property-based
# Each random input either raises a clear error (one of ours, with a message) or gives
# nilearn 0.14.1's answer: a case that returns is compared with nilearn's NiftiMapsMasker (or,
# for headers, nibabel's reading), never taken as a pass for not raising.

OUR_ERRORS = (ValueError, TypeError, FileNotFoundError, OSError)
NOT_OURS = (IndexError, KeyError, AttributeError, ZeroDivisionError)


def _outcome(cls, maps, img):
    """The output of ``cls(maps).fit_transform(img)``, or the exception it raised."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return cls(maps).fit_transform(img)
        except Exception as exc:
            return exc


def _squeezed(arr: np.ndarray) -> np.ndarray:
    """The array without the trailing length-1 axes past the 4th, which daskmasker drops and
    nilearn refuses (docs/differences.md): nilearn's answer is that of the squeezed image."""
    shape = list(arr.shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape.pop()
    return arr.reshape(shape)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=6),
    dtype=st.sampled_from(["float32", "float64", "int16", "uint8", "int8", "complex64"]),
    fill=st.sampled_from([0.0, 1.0, np.nan, np.inf, "noise"]),
)
# always run, whatever hypothesis draws: each way of answering or failing
@example(shape=[2, 2, 2, 3], dtype="float32", fill=np.nan)
@example(shape=[3, 3, 3], dtype="float64", fill=np.inf)
@example(shape=[2, 3, 2, 4], dtype="int16", fill="noise")
@example(shape=[2, 2, 2, 3, 1], dtype="float64", fill="noise")
@example(shape=[2, 2, 2, 3, 2], dtype="float64", fill=1.0)
@example(shape=[2, 0, 2, 2], dtype="uint8", fill=0.0)
@example(shape=[2, 2, 2, 2], dtype="complex64", fill=1.0)
def test_random_malformed_images_fail_clearly_or_give_nilearns_answer(maps, shape, dtype, fill):
    from nilearn.maskers import NiftiMapsMasker as NilearnMasker

    noise = np.random.default_rng(len(shape)).normal(scale=50, size=shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = (noise if isinstance(fill, str) else np.full(shape, fill)).astype(dtype)
    try:
        img = nib.Nifti1Image(arr, np.eye(4))
    except Exception:  # nibabel makes no image of it: no input to either masker
        return
    ours = _outcome(NiftiMapsMasker, maps, img)
    ref = _outcome(NilearnMasker, maps, nib.Nifti1Image(_squeezed(arr), np.eye(4)))
    if isinstance(ours, Exception):
        assert isinstance(ours, OUR_ERRORS) and not isinstance(ours, NOT_OURS), repr(ours)
        if "holds complex values" in str(ours):  # docs/differences.md: nilearn drops a part
            assert arr.dtype.kind == "c"
            return
        assert isinstance(ref, Exception), f"we raise {ours!r}, nilearn answers"
        # nilearn's error, or ours naming the image's dimensionality (checked before emptiness)
        same = type(ours) is type(ref) and str(ours) == str(ref)
        assert same or f"you provided a {_squeezed(arr).ndim}D image" in str(ours), (ours, ref)
        return
    assert not isinstance(ref, Exception), f"nilearn raises {ref!r}, we answer"
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    # nilearn solves float32 in float32 (parity.TOL32); on grids of a few voxels the maps are
    # ill-conditioned (condition number up to ~1e3), and our normal equations differ from
    # nilearn's lstsq by ~cond² eps: up to 1.0e-10 measured, against 1e-12 on real grids
    assert_close(ours, ref, 1e-9 if arr.dtype == np.float64 else TOL32)


@settings(max_examples=40, deadline=None)
@given(header_bytes=st.binary(min_size=0, max_size=600))
def test_random_headers_fail_clearly_or_read_as_nibabel(tmp_path_factory, header_bytes):
    path = tmp_path_factory.mktemp("hdr") / "random.nii"
    path.write_bytes(header_bytes)
    try:
        img = open_nifti(path)
    except OUR_ERRORS as exc:
        assert not isinstance(exc, NOT_OURS)
        assert "random.nii" in str(exc) or "empty" in str(exc)
        return
    reference = nib.load(path)  # what nilearn reads
    assert img.shape == reference.shape[::-1]
    np.testing.assert_array_equal(img.values, np.asarray(reference.dataobj).T)
