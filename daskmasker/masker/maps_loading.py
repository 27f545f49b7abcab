"""The maps of an atlas as arrays: loaded from an image onto a grid, resampled, shown as an image.

:func:`load_maps` is the one way maps enter the fit: finite float maps on the target grid, dense,
or sparse (:class:`~daskmasker.compute.sparse_maps.SparseMaps`) when the atlas is mostly zeros;
:class:`SparseMapsProxy` shows sparse maps to nibabel (``maps_img_``) without making them dense.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import dask.array as da
import dask.threaded
import numpy as np
import xarray as xr
from numpy.typing import DTypeLike

from daskmasker.compute.dtypes import float_dtype
from daskmasker.compute.grid import Grid
from daskmasker.compute.maps import finite
from daskmasker.compute.screening import ScreenedBlock, Screener
from daskmasker.compute.sparse_maps import SparseMaps, SparseMapsSink, stays_sparse
from daskmasker.compute.sparse_resample import SparseResampler
from daskmasker.io.image import MAP_DIM, READER_ENCODING, image_grid, make_image
from daskmasker.masker.spatial import resample_image


def load_maps(maps_image: xr.DataArray, onto: Grid | None = None) -> np.ndarray | SparseMaps:
    """The maps, finite, on ``onto`` (linear interpolation): dense, or sparse when the first
    block of maps is sparse (``daskmasker.sparse-maps-density``).

    Sparse maps stream block by block (a few maps at a time): each block is made finite, sparse
    and moved onto the target grid as it is read, so neither the source nor the resampled maps
    are ever held dense (:class:`~daskmasker.compute.sparse_maps.SparseMapsSink`).  A
    ``.nii.gz`` is read in order by this thread, each block screened as it is inflated (only its
    segments with a non-zero are kept: the reader's
    :meth:`~daskmasker.io.nifti_chunks.GzipChunks.read_pieces` is given a
    :class:`~daskmasker.compute.screening.Screener`), while one other thread makes the previous
    block sparse: at most three blocks exist at once (through
    Dask, reads ran ahead of the conversions and a large atlas's blocks piled up).
    """
    img = maps_image if maps_image.ndim == 4 else maps_image.expand_dims(MAP_DIM)
    data = img.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=(1, -1, -1, -1))
    data = data.rechunk({1: -1, 2: -1, 3: -1})
    reader = img.encoding.get(READER_ENCODING)
    blocks = None
    if reader is not None and reader.sequential and reader.chunks_of(data):
        blocks = (_read_block(reader, i) for i in range(len(data.chunks[0])))
        first = next(blocks)
    else:
        first = np.asarray(data.blocks[0].compute(scheduler=dask.threaded.get))
    if not stays_sparse(first):
        return _dense_maps(maps_image, onto=onto)
    source = image_grid(img)
    remap = None if onto is None or onto.same_as(source) else SparseResampler(source, onto)
    sink = SparseMapsSink(data.shape, float_dtype(data.dtype), remap)
    if blocks is None:
        del first
        # computed here, in this process, whatever the active scheduler: the maps stay local (the
        # threaded scheduler's function, not its name: naming it makes Dask import distributed)
        da.store(data, cast(Any, sink), lock=False, scheduler=dask.threaded.get)
    else:
        _pipeline(itertools.chain([first], blocks), data.chunks[0], sink)
    return sink.result()


def _read_block(reader: Any, i: int) -> np.ndarray | ScreenedBlock:
    """Block ``i`` of maps, screened as it is read when the reader can (a ``.nii.gz``)."""
    read_pieces = getattr(reader, "read_pieces", None)
    block = None if read_pieces is None else read_pieces((i, 0, 0, 0), Screener.for_block)
    return reader.read_chunk((i, 0, 0, 0)) if block is None else block


def _pipeline(
    blocks: Iterable[np.ndarray | ScreenedBlock], sizes: tuple[int, ...], sink: SparseMapsSink
) -> None:
    """Read the next block while another thread stores the previous one."""
    whole = (slice(None),) * 3
    with ThreadPoolExecutor(1) as pool:
        pending = None
        start = 0
        for block, size in zip(blocks, sizes, strict=True):
            if pending is not None:
                pending.result()
            pending = pool.submit(sink.__setitem__, (slice(start, start + size), *whole), block)
            del block
            start += size
        if pending is not None:
            pending.result()


def _dense_maps(maps_image: xr.DataArray, onto: Grid | None = None) -> np.ndarray:
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
    target grid: the source maps are never held whole, and no chunk is copied twice (a fresh
    page of memory costs about as much as decompressing it).
    """
    img = maps_image if maps_image.ndim == 4 else maps_image.expand_dims(MAP_DIM)
    data = img.data
    if not hasattr(data, "compute"):
        data = da.from_array(np.asarray(data), chunks=(1, -1, -1, -1))
    dtype = float_dtype(data.dtype)
    # cleaned before resampling, as nilearn does (a NaN must not spread through interpolation)
    meta = np.empty((0,) * 4, dtype)
    img = img.copy(data=data.map_blocks(finite, dtype=dtype, meta=meta))
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
    da.store(img.data, out, lock=False, scheduler=dask.threaded.get)
    return out


def resample_maps(maps: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """Maps resampled with linear interpolation from ``source`` onto ``target``."""
    chunks = (max(1, min(len(maps), 16)), -1, -1, -1)
    img = make_image(da.from_array(maps, chunks=chunks, name=False), source.affine)
    return _dense_maps(img.rename({img.dims[0]: MAP_DIM}), onto=target)


class SparseMapsProxy:
    """A nibabel array proxy ``(x, y, z, K)`` over :class:`SparseMaps`: ``proxy[..., k]`` makes
    one map dense; ``np.asarray(proxy)`` makes them all dense (K × V values)."""

    is_proxy = True

    def __init__(self, maps: SparseMaps):
        self._maps = maps
        self.shape = maps.shape[::-1]
        self.ndim = 4
        self.dtype = maps.dtype

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        out = self._maps.toarray().T
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple) and len(key) == 2 and key[0] is Ellipsis:
            if isinstance(key[1], int | np.integer):
                return self._maps.map(int(key[1])).T
        return np.asarray(self)[key]
