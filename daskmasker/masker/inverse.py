"""``inverse_transform``'s arithmetic: region signals → a voxel image on the fitted maps' grid,
with nilearn 0.14.1's input checks and output dtypes (``signals_to_img_maps`` and
``_post_process_inverse_transform``)."""

from __future__ import annotations

import warnings
from typing import Any

import nibabel as nib
import numpy as np

from daskmasker.masker.fitting import FittedMaps
from daskmasker.stacklevel import find_stack_level


def check_signals(signals: Any) -> np.ndarray:
    """nilearn's checks on ``inverse_transform`` input (DataFrames, NaN, dimensions, bools)."""
    if hasattr(signals, "to_numpy"):
        signals = signals.to_numpy().squeeze()
    signals = np.atleast_1d(np.asarray(signals))
    if signals.ndim > 2:
        raise ValueError(f"Found array with dim {signals.ndim}. None expected <= 2.")
    if signals.dtype.kind == "b":
        warnings.warn("Casting boolean input to int32", UserWarning, stacklevel=find_stack_level())
        signals = signals.astype(np.int32)
    if signals.dtype.kind in "fc" and not np.isfinite(signals).all():
        raise ValueError("Input contains NaN.")
    return signals


def signals_to_image(
    signals: np.ndarray,
    fitted: FittedMaps,
    kept: np.ndarray,
    affine: np.ndarray,
    dtype: np.dtype,
) -> nib.Nifti1Image:
    """``Σ_k s_k · map_k`` on the fitted grid, zero outside the maps' support (within the mask).

    Parameters
    ----------
    signals : ndarray, shape (K,) or (T, K)
        K is all the maps, or only the ``kept`` ones.
    fitted : FittedMaps
    kept : ndarray of int
        The maps ``transform`` extracts.
    affine : ndarray
        The fitted maps' affine.
    dtype : numpy dtype
        The output dtype (int64 becomes int32 with nilearn's warning when the values fit).

    Returns
    -------
    nibabel.Nifti1Image
        3D for 1D signals, 4D otherwise; its header's data dtype is ``dtype``.
    """
    index = np.arange(fitted.n_maps) if signals.shape[-1] == fitted.n_maps else kept
    out = fitted.voxel_signals(np.atleast_2d(signals), index)
    data = out[0] if signals.ndim == 1 else out
    array = downcast_int64(np.asarray(data.T, dtype=dtype))
    img = nib.Nifti1Image(array, affine, dtype=array.dtype)
    img.set_data_dtype(dtype)
    return img


def downcast_int64(values: np.ndarray) -> np.ndarray:
    """nilearn's ``new_img_like`` for int64 arrays: int32 when the values fit (with its
    warning), else kept as int64 with its other warning."""
    if values.dtype not in (np.int64, np.uint64):
        return values
    info = np.iinfo(np.int32)
    if values.size == 0 or (info.min <= values.min() and values.max() <= info.max):
        warnings.warn(
            "Data array used to create a new image contains 64-bit ints. This is likely due to "
            "creating the array with numpy and passing `int` as the `dtype`. Many tools such as "
            "FSL and SPM cannot deal with int64 in Nifti images, so for compatibility the data "
            "has been converted to int32.",
            UserWarning,
            stacklevel=find_stack_level(),
        )
        return values.astype(np.int32)
    warnings.warn(
        "Data array used to create a new image contains 64-bit ints, and some values too large "
        "to store in 32-bit ints. The resulting image thus contains 64-bit ints, which may cause "
        "some compatibility issues with some other tools or an error when saving the image to a "
        "Nifti file.",
        UserWarning,
        stacklevel=find_stack_level(),
    )
    return values
