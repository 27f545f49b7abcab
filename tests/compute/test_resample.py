"""Resampling onto a grid that differs by a signed axis permutation and whole-voxel shifts is
done by slicing (``compute/resample.py``: "exactly"): equal to nilearn's ``resample_img``, which
interpolates, bit for bit."""

from __future__ import annotations

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
from nilearn.image import resample_img

from daskmasker.compute import grid
from daskmasker.compute.resample import resample_array

SOURCE = np.array([[2.0, 0, 0, -20], [0, 2, 0, -30], [0, 0, 2, -10], [0, 0, 0, 1]])
# x flipped, y and z shifted by whole voxels, a larger field of view (zeros outside)
FLIPPED = np.array([[-2.0, 0, 0, 12], [0, 2, 0, -34], [0, 0, 2, -6], [0, 0, 0, 1]])
# x and y swapped
SWAPPED = np.array([[0.0, 2, 0, -30], [2, 0, 0, -20], [0, 0, 2, -10], [0, 0, 0, 1]])


@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
@pytest.mark.parametrize(
    ("target_affine", "shape"), [(FLIPPED, (18, 12, 9)), (SWAPPED, (13, 17, 8))]
)
def test_a_whole_voxel_grid_is_resampled_exactly_as_nilearn(interpolation, target_affine, shape):
    data = np.random.default_rng(0).normal(size=(17, 13, 8, 3))  # (x, y, z, t)
    target = grid.Grid(shape[::-1], target_affine)
    plan = grid.integer_grid_map(data.shape[:3], SOURCE, shape, target_affine)
    assert plan is not None  # the slicing path, not affine_transform
    ours = resample_array(da.from_array(data.T), SOURCE, target, interpolation).compute()
    ref = resample_img(
        nib.Nifti1Image(data, SOURCE),
        target_affine=target_affine,
        target_shape=shape,
        interpolation=interpolation,
        force_resample=True,
        copy_header=True,
    )
    np.testing.assert_array_equal(ours, np.asarray(ref.dataobj).T)


def test_a_half_voxel_shift_interpolates():
    """The negative control: a half-voxel shift is no copy; the slicing path is not taken."""
    shifted = SOURCE.copy()
    shifted[0, 3] += 1.0
    assert grid.integer_grid_map((17, 13, 8), SOURCE, (17, 13, 8), shifted) is None
