"""Gaussian smoothing of images, lazily, one task per chunk of whole volumes (nilearn's numbers)."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
from numpy.typing import ArrayLike, DTypeLike
from scipy.ndimage import gaussian_filter1d

from daskmasker.compute.grid import fwhm_to_sigma
from daskmasker.stacklevel import find_stack_level


def smoothed_dtype(dtype: DTypeLike) -> np.dtype:
    """nilearn's rule: integer data is smoothed in float32 (64-bit integers in float64)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return np.dtype(np.float64 if dtype.itemsize == 8 else np.float32)
    return dtype


def smooth_volume(volume: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Smooth one volume in nibabel order (x, y, z); non-finite values become 0 first."""
    arr = np.array(volume, dtype=smoothed_dtype(volume.dtype), copy=True)
    arr[~np.isfinite(arr)] = 0
    for axis, s in enumerate(sigma):
        if s > 0.0:
            gaussian_filter1d(arr, s, output=arr, axis=axis)
    return arr


def _smooth_block(block: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    out = np.empty(block.shape, dtype=smoothed_dtype(block.dtype))
    for t in range(block.shape[0]):
        out[t] = smooth_volume(block[t].T, sigma).T
    return out


def smooth_array(data: da.Array, affine: np.ndarray, fwhm: ArrayLike | None) -> da.Array:
    """Smooth 3D ``(z, y, x)`` or 4D ``(t, z, y, x)`` volumes with a Gaussian of ``fwhm`` mm.

    ``fwhm=None`` returns the data; ``0`` warns as nilearn does and returns it unsmoothed.  Lazy:
    one task per chunk of whole volumes.
    """
    if fwhm is None:
        return data
    if isinstance(fwhm, int | float) and fwhm == 0.0:
        warnings.warn(
            f"The parameter 'fwhm' for smoothing is specified as {fwhm}. "
            "Setting it to None (no smoothing will be performed)",
            UserWarning,
            stacklevel=find_stack_level(),
        )
        return data
    sigma = fwhm_to_sigma(np.ravel([fwhm]), affine)
    if sigma.size == 1:
        sigma = np.repeat(sigma, 3)
    squeeze = data.ndim == 3
    if squeeze:
        data = data[None]
    data = data.rechunk({1: -1, 2: -1, 3: -1})
    out = da.map_blocks(_smooth_block, data, sigma, dtype=smoothed_dtype(data.dtype))
    return out[0] if squeeze else out
