"""NaN voxels through every resampling target, against nilearn, on a real image.

nibabel's bundled ``resampled_anat_moved.nii`` (big-endian float32, 153 NaN voxels, a 4 x 4 x 8 mm
grid) is extracted with maps and a mask on other grids.  nilearn's resampling fills the NaN voxels
next to finite ones by ``extrapolate_out_mask`` before interpolating, then puts NaN back where the
resampled NaN mask is; ours must give the same numbers (the zero-filled image is the control: it
agrees whatever the NaN handling, and its signals differ from the NaN image's, so the test sees
the handling).
"""

from __future__ import annotations

import os
import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.maskers import NiftiMapsMasker as NilearnMasker

from daskmasker import NiftiMapsMasker

from helpers import world_grid
from parity import assert_close

IMAGE = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "resampled_anat_moved.nii")
MAPS_AFFINE = np.array([[3.0, 0, 0, -33], [0, 3.0, 0, -41], [0, 0, 5.0, -2], [0, 0, 0, 1]])
MASK_AFFINE = np.array([[-5.0, 0, 0, 35], [0, 5.0, 0, -42], [0, 0, 6.0, -3], [0, 0, 0, 1]])


def _maps() -> nib.Nifti1Image:
    x, y, z = np.moveaxis(world_grid((23, 28, 5), MAPS_AFFINE), -1, 0)
    centres = [(-28.0, -36.0, 4.0), (30.0, -24.0, 4.0), (0.0, 10.0, 8.0)]  # two at the NaN edges
    maps = np.stack(
        [np.exp(-((x - a) ** 2 + (y - b) ** 2 + (z - c) ** 2) / 300.0) for a, b, c in centres],
        axis=-1,
    )
    return nib.Nifti1Image(maps.astype(np.float64), MAPS_AFFINE)


def _mask() -> nib.Nifti1Image:
    x, y, _ = np.moveaxis(world_grid((15, 18, 4), MASK_AFFINE), -1, 0)
    return nib.Nifti1Image((x**2 + y**2 < 28.0**2).astype(np.uint8), MASK_AFFINE)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The real image as 6 volumes (NaN where the file has them) and its zero-filled copy, written
    as big-endian files like the original (nilearn zeroes non-finite values of images held in
    memory before resampling, not of files)."""
    img = nib.load(IMAGE)
    assert img.header.endianness == ">" and np.isnan(img.get_fdata()).sum() == 153
    volume = np.asarray(img.dataobj)
    series = np.stack([volume * (1 + 0.2 * t) + t for t in range(6)], axis=-1)
    tmp = tmp_path_factory.mktemp("nan")
    paths = []
    for name, values in (("nan", series), ("zero", np.nan_to_num(series))):
        path = tmp / f"{name}.nii"
        nib.save(nib.Nifti1Image(values.astype(">f4"), img.affine, img.header), path)
        paths.append(str(path))
    return paths


def _signals(cls, img, target):
    mask = _mask() if target == "mask" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masker = cls(_maps(), mask_img=mask, resampling_target=target, standardize=None)
        return np.asarray(masker.fit_transform(img), dtype=np.float64)


@pytest.mark.parametrize("target", ["data", "maps", "mask"])
def test_nan_voxels_as_nilearn(images, target):
    nan_img, zero_img = images
    ref = _signals(NilearnMasker, nan_img, target)
    out = _signals(NiftiMapsMasker, nan_img, target)
    assert_close(out, ref, 1e-10, what=f"NaN image, resampling_target={target}")
    ref_zero = _signals(NilearnMasker, zero_img, target)
    assert_close(_signals(NiftiMapsMasker, zero_img, target), ref_zero, 1e-10, what="zero-filled")
    if target != "data":  # the data are resampled: the NaN handling changes the signals
        assert np.abs(ref - ref_zero).max() > 1e-3 * np.abs(ref).max()


def test_the_file_itself_as_nilearn():
    """The big-endian file by its path, a 3D image, onto the maps' grid."""
    ref = _signals(NilearnMasker, IMAGE, "maps")
    assert_close(_signals(NiftiMapsMasker, IMAGE, "maps"), ref, 1e-10)
