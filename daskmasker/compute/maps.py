"""The maps and the mask as arrays: cleaning, binarising, checking.

Arrays here are in daskmasker order: maps ``(K, z, y, x)`` (a dense array or, for atlases of
small maps, :class:`~daskmasker.compute.sparse_maps.SparseMaps`), masks ``(z, y, x)``.  Maps are
small enough to hold in memory (nilearn holds them too); the data never is.  Loading them from
images and resampling them onto a grid is :mod:`daskmasker.masker.maps_loading`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from daskmasker.compute.dtypes import float_dtype
from daskmasker.compute.sparse_maps import SparseMaps
from daskmasker.stacklevel import find_stack_level

if TYPE_CHECKING:
    from typing_extensions import TypeIs

NONFINITE_WARNING = "Non-finite values detected. These values will be replaced with zeros."


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
    mask = np.asarray(data.astype(bool).all(axis=0))
    check_mask(mask)
    return mask


def check_mask(mask: np.ndarray) -> None:
    """Raise nilearn's error for an empty mask."""
    if not mask.any():
        raise ValueError("The mask is invalid as it is empty: it masks all data.")


def check_overlap(maps: np.ndarray | SparseMaps) -> None:
    """nilearn's ``allow_overlap=False`` test, on a clipped copy (the maps are not modified)."""
    eps = np.finfo(maps.dtype).eps
    if is_sparse(maps):
        at = maps.matrix.indices[maps.matrix.data >= eps]
        count = np.bincount(at, minlength=maps.matrix.shape[1])
    else:
        count = np.zeros(maps.shape[1:], dtype=np.int32)
        for m in maps:
            count += m >= eps
    if np.any(count > 1):
        raise ValueError(
            "Overlap detected in the maps. The overlap may be due to the atlas itself or "
            "possibly introduced by resampling."
        )


def is_sparse(maps: Any) -> TypeIs[SparseMaps]:
    """Whether maps are :class:`SparseMaps` (else a dense ``(K, z, y, x)`` array)."""
    return isinstance(maps, SparseMaps)


def any_in_mask(maps: np.ndarray | SparseMaps, mask: np.ndarray) -> bool:
    """Whether any map has a non-zero value inside a bool ``(z, y, x)`` mask."""
    if is_sparse(maps):
        return bool(np.asarray(mask, dtype=bool).reshape(-1)[maps.matrix.indices].any())
    return any(m[mask].any() for m in maps)
