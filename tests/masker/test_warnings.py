"""Warnings name the user's line: the stack level is computed (issue 13), and warnings of Dask
tasks (which run in the scheduler's threads) are emitted again from the calling thread."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest

from daskmasker import MultiNiftiMapsMasker, NiftiMapsMasker
from daskmasker.stacklevel import find_stack_level, reemitted_warnings

from helpers import make_data, make_mask


def _records(call):
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        call()
    return [(w.category, str(w.message).splitlines()[0], w.filename) for w in records]


def _nan_mask():
    mask = make_mask()
    data = np.asarray(mask.dataobj).astype(np.float32)
    data[0, 0, 0] = np.nan
    return nib.Nifti1Image(data, mask.affine)


@pytest.mark.parametrize("cls", [NiftiMapsMasker, MultiNiftiMapsMasker])
def test_warnings_of_fit_transform_name_this_file(maps, data, cls):
    volume = nib.Nifti1Image(np.asarray(data.dataobj)[..., 0], data.affine)
    masker = cls(maps, mask_img=_nan_mask(), detrend=True, standardize=True)
    steps = {
        "fit": lambda: masker.fit(),  # the mask's NaN: "Non-finite values detected"
        # maps resampled at transform (in this thread), standardize=True (in transform and in
        # the cleaning task, a Dask thread), detrending one volume (the cleaning task)
        "transform": lambda: masker.transform(volume),
        "fit_transform": lambda: masker.fit_transform(volume),
    }
    for step, call in steps.items():
        records = _records(call)
        assert records, step
        assert {filename for *_, filename in records} == {__file__}, (step, records)
    messages = [message for _, message, _ in _records(steps["transform"])]
    assert any(m.startswith("Detrending of 3D signal") for m in messages)  # from a Dask task


def test_multi_masker_list_warnings_name_this_file(maps, data):
    """The warnings of nilearn's MultiNiftiMapsMasker on a list, each naming this file."""
    from nilearn.maskers import MultiNiftiMapsMasker as NilearnMulti

    imgs = [data, make_data(maps, dtype=np.float64, seed=2, n_scans=30)]
    ours = _records(lambda: MultiNiftiMapsMasker(maps, standardize=True).fit().transform(imgs))
    ref = _records(lambda: NilearnMulti(maps, standardize=True).fit().transform(imgs))
    # per image "Resampling maps at transform time..." and standardize's FutureWarning from the
    # cleaning (nilearn's transform_imgs skips the masker-level one, as here)
    assert sorted((c.__name__, m) for c, m, _ in ours) == sorted((c.__name__, m) for c, m, _ in ref)
    assert [category for category, *_ in ours].count(FutureWarning) == 2
    assert {filename for *_, filename in ours} == {__file__}


def test_find_stack_level_counts_package_frames():
    assert find_stack_level() == 1  # called from outside the package: warn's own caller

    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        with reemitted_warnings():
            warnings.warn("inside", UserWarning, stacklevel=1)
    assert [w.filename for w in records] == [__file__]
