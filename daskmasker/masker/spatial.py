"""Spatial steps on images: resampling and smoothing (lazy), maps and masks loaded onto a grid.

Thin xarray layers over :mod:`daskmasker.compute.resample`, :mod:`daskmasker.compute.smooth`
and :mod:`daskmasker.compute.maps`: they keep an image's dims and metadata and turn images into
the arrays the fit needs.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from daskmasker.compute import maps as maps_arrays
from daskmasker.compute.grid import Grid
from daskmasker.compute.resample import resample_array
from daskmasker.compute.smooth import smooth_array
from daskmasker.io.image import image_affine, make_image
from daskmasker.runtime.client import compute


def _dask(img: xr.DataArray) -> da.Array:
    return img.data if isinstance(img.data, da.Array) else da.from_array(np.asarray(img.data))


def resample_image(
    img: xr.DataArray, target: Grid, interpolation: str = "continuous"
) -> xr.DataArray:
    """Resample a 3D or 4D image onto ``target``, lazily; the image itself if already there.

    Its leading dim (time, map...) and attributes (but the affine and header) are kept.
    """
    data = _dask(img)
    out = resample_array(data, image_affine(img), target, interpolation)
    if out is data:
        return img
    attrs = {k: v for k, v in img.attrs.items() if k not in ("affine", "nifti_header")}
    result = make_image(out, target.affine, attrs=attrs)
    if img.ndim == 4 and img.dims[0] != result.dims[0]:
        result = result.rename({result.dims[0]: img.dims[0]})
    return result


def smooth_image(img: xr.DataArray, fwhm: Any) -> xr.DataArray:
    """Smooth a 3D or 4D image with a Gaussian of ``fwhm`` mm (per axis), lazily."""
    if fwhm is None:
        return img
    data = _dask(img)
    out = smooth_array(data, image_affine(img), fwhm)
    return img if out is data else img.copy(data=out)


def binarize_mask(mask_image: xr.DataArray) -> np.ndarray:
    """A mask image binarised as nilearn does (:func:`daskmasker.compute.maps.binarize_mask`)."""
    (data,) = compute(mask_image.data)
    return maps_arrays.binarize_mask(np.asarray(data))


def resample_mask(mask: np.ndarray, source: Grid, target: Grid, check: bool = True) -> np.ndarray:
    """A boolean mask resampled with nearest-neighbour interpolation, then checked (``check``).

    nilearn checks a mask resampled at fit (an empty one is an error), not one resampled at
    transform (its emptiness shows as "No map left after applying mask to the maps image.").
    """
    data = resample_array(da.from_array(mask.astype(np.int8)), source.affine, target, "nearest")
    (resampled,) = compute(data)
    resampled = np.asarray(resampled).astype(bool)
    if check:
        maps_arrays.check_mask(resampled)
    return resampled
