"""Resampling images onto another grid, lazily, with nilearn's ``resample_img`` numbers.

Each volume goes through ``scipy.ndimage.affine_transform`` exactly as nilearn calls it (order 3, 1
or 0 for 'continuous', 'linear', 'nearest'; constant mode, cval 0; the matrix as a diagonal when it
is one), one task per chunk of whole volumes.  nilearn clips the result to
``[min(data.min(), 0), max(data.max(), 0)]`` over the *whole* 4D image: here a lazy min/max pass
feeds
every chunk, so chunked results equal nilearn's.

When the two grids differ by a signed axis permutation and whole-voxel shifts (the DiFuMo and MNI
2 mm grids do), linear and nearest interpolation only copy voxels: that case is done by slicing
(:func:`daskmasker.compute.grid.integer_grid_map`), exactly and without interpolating.

Non-finite values, volume by volume, as nilearn's ``_resample_one_img``: the volume is filled by
:func:`extrapolate_out_mask` (two rings of non-finite voxels around the finite ones take the mean of
their finite 6-neighbours, the others 0; in float64), resampled, and NaN is put back where the
nearest-neighbour resampled non-finite mask is set.
"""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
from numpy.typing import ArrayLike, DTypeLike
from scipy import ndimage

from daskmasker.compute import grid
from daskmasker.stacklevel import find_stack_level

ORDERS = {"continuous": 3, "linear": 1, "nearest": 0}


def resampled_dtype(dtype: DTypeLike, interpolation: str) -> np.dtype:
    """nilearn's output dtype: signed ints become floats for continuous interpolation."""
    dtype = np.dtype(dtype)
    if interpolation == "continuous" and dtype.kind == "i":
        name = dtype.name.replace("int", "float")
        target = np.dtype("float32" if name in ("float8", "float16") else name)
        warnings.warn(
            f"Casting data from {dtype.name} to {target.name}",
            UserWarning,
            stacklevel=find_stack_level(),
        )
        return target
    return dtype


def resample_volume(
    volume: np.ndarray,
    matrix: np.ndarray,
    offset: np.ndarray,
    shape_xyz: tuple[int, int, int],
    order: int,
    out_dtype: DTypeLike,
) -> np.ndarray:
    """One volume in nibabel order (x, y, z), as nilearn's ``_resample_one_img``."""
    out = np.zeros(shape_xyz, dtype=out_dtype)
    finite = None
    if volume.dtype.kind == "f":
        finite = np.isfinite(volume)
        if finite.all():
            finite = None
        else:
            volume = extrapolate_out_mask(volume, finite, iterations=2)[0]
    ndimage.affine_transform(
        volume, matrix, offset=offset, output_shape=shape_xyz, output=out, cval=0, order=order
    )
    if finite is not None:
        bad = ndimage.affine_transform(
            (~finite).astype(np.uint8), matrix, offset=offset, output_shape=shape_xyz, order=0
        )
        out[bad.astype(bool)] = np.nan
    return out


_NEIGHBOURS = ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))


def extrapolate_out_mask(
    data: np.ndarray, mask: np.ndarray, iterations: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Fill a ring of voxels around ``mask`` with the mean of their in-mask 6-neighbours.

    nilearn's ``masking.extrapolate_out_mask`` (0.14.1), which its resampling applies to the
    finite voxels of a volume holding NaN or inf: each iteration dilates the mask by one voxel
    (6-connectivity); a ring voxel takes the mean of its neighbours inside the previous mask
    (0 when none is finite); voxels outside the final mask are 0.  The result is float64, as
    nilearn's.

    >>> data = np.array([[[1.0, np.nan, np.nan, np.nan]]])
    >>> extrapolate_out_mask(data, np.isfinite(data), iterations=2)[0].ravel().tolist()
    [1.0, 1.0, 1.0, 0.0]
    """
    if iterations > 1:
        data, mask = extrapolate_out_mask(data, mask, iterations=iterations - 1)
    new_mask = ndimage.binary_dilation(mask)
    larger = np.zeros(np.array(mask.shape) + 2, dtype=bool)
    larger[1:-1, 1:-1, 1:-1] = mask
    padded = np.zeros(larger.shape + data.shape[3:])
    padded[1:-1, 1:-1, 1:-1] = data
    padded[~larger] = np.nan
    shell = larger.copy()
    shell[1:-1, 1:-1, 1:-1] = np.logical_xor(new_mask, mask)
    x, y, z = np.nonzero(shell)
    around = np.array([padded[x + i, y + j, z + k] for i, j, k in _NEIGHBOURS])
    with np.errstate(invalid="ignore", divide="ignore"):
        filled = np.nansum(around, axis=0) / np.sum(np.isfinite(around), axis=0)
    filled[~np.isfinite(filled)] = 0
    out = np.zeros_like(padded)
    out[shell] = filled
    out[larger] = padded[larger]
    return out[1:-1, 1:-1, 1:-1], new_mask


def _resample_block(
    block: np.ndarray,
    matrix: np.ndarray,
    offset: np.ndarray,
    shape_xyz: tuple[int, int, int],
    order: int,
    out_dtype: np.dtype,
    vmin: ArrayLike | None,
    vmax: ArrayLike | None,
    plan: tuple | None,
) -> np.ndarray:
    if plan is not None:
        return grid.apply_integer_grid_map_reversed(block, plan, shape_xyz).astype(
            out_dtype, copy=False
        )
    out = np.empty((block.shape[0], *shape_xyz[::-1]), dtype=out_dtype)
    for t in range(block.shape[0]):
        res = resample_volume(block[t].T, matrix, offset, shape_xyz, order, out_dtype)
        out[t] = res.T
    if vmin is not None:
        np.clip(out, vmin, vmax, out=out)
    return out


def _range(data: da.Array) -> tuple[da.Array, da.Array]:
    low = da.minimum(da.nanmin(data), 0)
    high = da.maximum(da.nanmax(data), 0)
    return low, high


def resample_array(
    data: da.Array,
    source_affine: np.ndarray,
    target: grid.Grid,
    interpolation: str = "continuous",
) -> da.Array:
    """Resample a 3D ``(z, y, x)`` or 4D ``(n, z, y, x)`` array onto a grid, lazily.

    Parameters
    ----------
    data : dask array
        Volumes on the grid of ``source_affine``; the leading axis (time, maps...) is kept.
    source_affine : ndarray (4, 4)
    target : Grid
    interpolation : {'continuous', 'linear', 'nearest'}

    Returns
    -------
    dask array
        ``data`` itself when the grids are the same (nilearn's test).
    """
    if interpolation not in ORDERS:
        raise ValueError(f"interpolation must be one of {tuple(ORDERS)}, got {interpolation!r}")
    source_affine = np.asarray(source_affine, dtype=np.float64)
    target_affine = target.affine
    shape_xyz = target.shape_xyz
    squeeze = data.ndim == 3
    if squeeze:
        data = data[None]
    if grid.same_fov(tuple(data.shape[:0:-1]), source_affine, shape_xyz, target_affine):
        return data[0] if squeeze else data
    order = ORDERS[interpolation]
    out_dtype = resampled_dtype(data.dtype, interpolation)
    if np.all(target_affine == source_affine):
        transform = np.eye(4)
    else:
        transform = np.linalg.inv(source_affine) @ target_affine
    matrix, offset = transform[:3, :3], transform[:3, 3]
    if np.all(np.diag(np.diag(matrix)) == matrix):
        matrix = np.diag(matrix)
    plan = None
    if order in (0, 1):
        plan = grid.integer_grid_map(
            tuple(data.shape[:0:-1]), source_affine, shape_xyz, target_affine
        )
    vmin = vmax = None
    if order > 0 and plan is None:  # copying voxels cannot leave the data's range
        vmin, vmax = _range(data)
    data = data.rechunk({1: -1, 2: -1, 3: -1})
    out = da.map_blocks(
        _resample_block,
        data,
        matrix,
        offset,
        shape_xyz,
        order,
        out_dtype,
        vmin,
        vmax,
        plan,
        chunks=(data.chunks[0], *((s,) for s in target.shape)),
        dtype=out_dtype,
        meta=np.empty((0, 0, 0, 0), dtype=out_dtype),
    )
    return out[0] if squeeze else out
