"""Spatial steps on images: resampling and smoothing (lazy), maps and masks loaded onto a grid.

Thin xarray layers over :mod:`daskmasker.compute.resample`, :mod:`daskmasker.compute.smooth`
and :mod:`daskmasker.compute.maps`: they keep an image's dims and metadata and turn images into
the arrays the fit needs.
"""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import xarray as xr

from daskmasker.compute import maps as maps_arrays
from daskmasker.compute.grid import Grid
from daskmasker.compute.resample import resample_array
from daskmasker.compute.smooth import smooth_array
from daskmasker.io.image import MAP_DIM, image_affine, image_grid, make_image


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


def smooth_image(img: xr.DataArray, fwhm) -> xr.DataArray:
    """Smooth a 3D or 4D image with a Gaussian of ``fwhm`` mm (per axis), lazily."""
    if fwhm is None:
        return img
    data = _dask(img)
    out = smooth_array(data, image_affine(img), fwhm)
    return img if out is data else img.copy(data=out)


def load_maps(maps_image: xr.DataArray, onto: Grid | None = None) -> np.ndarray:
    """Maps as a finite float array ``(K, z, y, x)`` (nilearn's ``clean_img(ensure_finite=True)``).

    Integer maps become float32 (int64 becomes float64); NaN and Inf become 0 silently.

    Parameters
    ----------
    maps_image : xarray.DataArray
        The (lazy) maps image.
    onto : Grid, optional
        Resample the maps onto this grid (linear interpolation) while loading them.

    Notes
    -----
    The maps stream chunk by chunk (a few maps at a time) into one preallocated array of the
    target grid: the source maps are never held whole, and no chunk is copied twice.  On this
    kind of machine a fresh page of memory costs about as much as decompressing it, so for a
    64-map DiFuMo atlas this halves the fit.
    """
    img = maps_image if maps_image.ndim == 4 else maps_image.expand_dims(MAP_DIM)
    data = img.data
    if not hasattr(data, "compute"):
        data = da.from_array(np.asarray(data), chunks=(1, -1, -1, -1))
    dtype = maps_arrays.float_dtype(data.dtype)
    # cleaned before resampling, as nilearn does (a NaN must not spread through interpolation)
    meta = np.empty((0,) * 4, dtype)
    img = img.copy(data=data.map_blocks(maps_arrays.finite, dtype=dtype, meta=meta))
    if onto is not None and not onto.same_as(image_grid(img)):
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message="Resampling binary images with continuous or linear interpolation",
                category=UserWarning,
            )
            img = resample_image(img, onto, "linear")
    out = np.empty(img.shape, dtype=img.dtype)
    # computed here, in this process, whatever the active scheduler: the maps stay local
    da.store(img.data, out, lock=False, scheduler="threads")
    return out


def binarize_mask(mask_image: xr.DataArray) -> np.ndarray:
    """A mask image binarised as nilearn does (:func:`daskmasker.compute.maps.binarize_mask`)."""
    return maps_arrays.binarize_mask(np.asarray(mask_image.data))


def resample_maps(maps: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """Maps resampled with linear interpolation from ``source`` onto ``target``."""
    chunks = (max(1, min(len(maps), 16)), -1, -1, -1)
    img = make_image(da.from_array(maps, chunks=chunks, name=False), source.affine)
    return load_maps(img.rename({img.dims[0]: MAP_DIM}), onto=target)


def resample_mask(mask: np.ndarray, source: Grid, target: Grid, check: bool = True) -> np.ndarray:
    """A boolean mask resampled with nearest-neighbour interpolation, then checked (``check``).

    nilearn checks a mask resampled at fit (an empty one is an error), not one resampled at
    transform (its emptiness shows as "No map left after applying mask to the maps image.").
    """
    data = resample_array(da.from_array(mask.astype(np.int8)), source.affine, target, "nearest")
    resampled = np.asarray(data.compute()).astype(bool)
    if check:
        maps_arrays.check_mask(resampled)
    return resampled
