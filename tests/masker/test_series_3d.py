"""A list of 3D image files as one 4D series (nilearn issue 1754): nilearn's numbers, lazily."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
from nilearn.maskers import NiftiMapsMasker as NilearnMasker

from daskmasker import NiftiMapsMasker
from daskmasker.io.load import load_image

from helpers import make_data, make_maps, make_mask

N_IMAGES = 300


def test_300_3d_files_as_a_series(tmp_path):
    maps = make_maps(dtype=np.float64)
    run = make_data(maps, n_scans=N_IMAGES, dtype=np.float32)
    values = np.asarray(run.dataobj)
    paths = []
    for i in range(N_IMAGES):
        paths.append(str(tmp_path / f"vol-{i:03d}.nii.gz"))
        nib.Nifti1Image(values[..., i], run.affine).to_filename(paths[-1])
    params = dict(maps_img=maps, mask_img=make_mask(), standardize="zscore_sample", detrend=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NilearnMasker(**params).fit_transform(paths)
        out = NiftiMapsMasker(**params).fit_transform(paths)
    assert out.shape == ref.shape == (N_IMAGES, 6)
    # float64 maps: both solve in float64 (measured 4e-14)
    assert np.abs(out - ref).max() <= 1e-10 * np.abs(ref).max()
    series = load_image(paths)
    # nothing read yet: one lazy chunk per file, each read by its own task
    assert series.shape == (N_IMAGES, *values.shape[2::-1])
    assert series.data.chunks[0] == (1,) * N_IMAGES


def test_3d_files_with_different_scalings_keep_their_values(tmp_path):
    """Difference: a list of int16 files whose scalings differ (the first unscaled) is read as the
    scaled floats of every file; nilearn stacks them in the first file's dtype (int16), truncating
    the later files' scaled values (1.3 on signals of ~280 here)."""
    maps = make_maps(dtype=np.float64)
    values = np.asarray(make_data(maps, n_scans=4, dtype=np.float64).dataobj)
    paths = []
    for t, slope in enumerate((1.0, 0.37, 0.37, 0.37)):
        img = nib.Nifti1Image(np.round(values[..., t] / slope).astype(np.int16), maps.affine)
        img.header.set_slope_inter(slope, 0)
        paths.append(str(tmp_path / f"vol-{t}.nii"))
        img.to_filename(paths[-1])
    scaled = np.stack([np.asarray(nib.load(p).dataobj, dtype=np.float64) for p in paths], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = NilearnMasker(maps).fit_transform(nib.Nifti1Image(scaled, maps.affine))
        nilearn_out = NilearnMasker(maps).fit_transform(paths)
        out = NiftiMapsMasker(maps).fit_transform(paths)
    assert np.abs(out - expected).max() <= 1e-10 * np.abs(expected).max()
    assert np.abs(nilearn_out - expected).max() > 0.1  # nilearn's truncation
