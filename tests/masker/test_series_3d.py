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
