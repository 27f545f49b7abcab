"""The maps and the mask as arrays: cleaning, binarising, checking.

Arrays here are in daskmasker order: maps ``(K, z, y, x)``, masks ``(z, y, x)``.  Maps are small
enough to hold in memory (nilearn holds them too); the data never is.  Loading them from images
and resampling them onto a grid is :mod:`daskmasker.masker.spatial`.
"""

from __future__ import annotations

import warnings

import numpy as np

from daskmasker.stacklevel import find_stack_level

NONFINITE_WARNING = "Non-finite values detected. These values will be replaced with zeros."


def float_dtype(dtype: np.dtype) -> np.dtype:
    """Integer maps become float32 (int64 becomes float64); floats stay as they are.

    Examples
    --------
    >>> float_dtype(np.dtype(np.int16)), float_dtype(np.dtype(np.int64))
    (dtype('float32'), dtype('float64'))
    """
    if dtype.kind in "iub":
        return np.dtype(np.float64 if dtype.itemsize == 8 else np.float32)
    return np.dtype(dtype)


def finite(block: np.ndarray) -> np.ndarray:
    """A block of maps in their float dtype with NaN and Inf set to 0 (nilearn's ``clean_img``)."""
    if block.dtype.kind in "iub":
        return block.astype(float_dtype(block.dtype))
    if block.dtype.kind == "f" and not np.isfinite(np.add.reduce(block, axis=None)):
        block = np.where(np.isfinite(block), block, 0).astype(block.dtype)
    return block


def binarize_mask(data: np.ndarray) -> np.ndarray:
    """nilearn's mask binarisation: finite, ``astype(bool)``, ``all`` over volumes; then checked.

    Parameters
    ----------
    data : ndarray, shape (z, y, x) or (n, z, y, x)

    Returns
    -------
    bool ndarray, shape (z, y, x)
    """
    if data.ndim == 3:
        data = data[None]
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        warnings.warn(NONFINITE_WARNING, UserWarning, stacklevel=find_stack_level())
        data = np.where(np.isfinite(data), data, 0)
    mask = data.astype(bool).all(axis=0)
    check_mask(mask)
    return mask


def check_mask(mask: np.ndarray) -> None:
    """Raise nilearn's error for an empty mask."""
    if not mask.any():
        raise ValueError("The mask is invalid as it is empty: it masks all data.")


def check_overlap(maps: np.ndarray) -> None:
    """nilearn's ``allow_overlap=False`` test, on a clipped copy (the maps are not modified)."""
    count = np.zeros(maps.shape[1:], dtype=np.int32)
    eps = np.finfo(maps.dtype).eps
    for m in maps:
        count += m >= eps
    if np.any(count > 1):
        raise ValueError(
            "Overlap detected in the maps. The overlap may be due to the atlas itself or "
            "possibly introduced by resampling."
        )
