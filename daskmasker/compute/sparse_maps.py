"""Atlases of many small maps held sparse: a CSR matrix over the grid's voxels.

DiFuMo 1024 is ~700 voxels a map on a 1.3 M-voxel grid, 0.05 % dense: stored as a CSR matrix
(K × V) over the grid's flat voxels it costs 8 bytes a non-zero (float32 value + int32 index)
instead of 4 bytes a voxel for each map.  :class:`SparseMapsSink` builds one block of maps at a
time as they are read; :func:`stays_sparse` decides from the first block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import sparse

from daskmasker import config
from daskmasker.compute.dtypes import float_dtype
from daskmasker.compute.screening import ScreenedBlock, screened_nonzero, sparse_nonzero


class SparseMaps:
    """K maps on a ``(z, y, x)`` grid as a CSR matrix ``(K, z·y·x)`` (C-order voxels).

    It answers what the fit and the transform ask of the dense ``(K, z, y, x)`` array: ``shape``,
    ``dtype``, ``any()``, the union of non-zero voxels, per-map sums in a mask, row selection; a
    map is made dense only one at a time (:meth:`map`).

    Parameters
    ----------
    matrix : scipy.sparse CSR array, shape (K, V)
        Sorted indices, no explicit zeros, finite values.
    spatial_shape : tuple of int
        ``(z, y, x)`` with ``z·y·x == V``.

    Examples
    --------
    >>> dense = np.zeros((2, 2, 3, 4), np.float32)
    >>> dense[0, 1, 2, 3] = dense[1, 0, 0, 1] = 1.5
    >>> maps = SparseMaps.from_dense(dense)
    >>> maps.shape, maps.nnz, bool(np.array_equal(maps.toarray(), dense))
    ((2, 2, 3, 4), 2, True)
    """

    ndim = 4

    def __init__(self, matrix: Any, spatial_shape: tuple[int, ...]):
        matrix = sparse.csr_array(matrix)
        if matrix.shape[1] != int(np.prod(spatial_shape)):
            raise ValueError(
                f"a sparse maps matrix of shape {matrix.shape} does not fit the grid "
                f"{tuple(spatial_shape)}"
            )
        self.matrix = matrix
        self.spatial_shape = tuple(int(s) for s in spatial_shape)

    @classmethod
    def from_dense(cls, block: np.ndarray | ScreenedBlock) -> SparseMaps:
        """Maps ``(K, z, y, x)`` made finite (NaN and Inf → 0, as
        :func:`~daskmasker.compute.maps.finite`) and sparse."""
        if isinstance(block, ScreenedBlock):
            n_columns = int(np.prod(block.shape[1:]))
            rows, cols, values = screened_nonzero(block.hit, block.segments, n_columns)
            return cls(_csr(rows, cols, values, (block.shape[0], n_columns)), block.shape[1:])
        block = np.asarray(block)
        flat = block.reshape(block.shape[0], -1)
        return cls(_finite_csr(flat, block.shape[-1]), block.shape[1:])

    @property
    def shape(self) -> tuple[int, ...]:
        """``(K, z, y, x)``, as the dense array's."""
        return (self.matrix.shape[0], *self.spatial_shape)

    @property
    def dtype(self) -> np.dtype:
        """The maps' float dtype."""
        return self.matrix.dtype

    @property
    def nnz(self) -> int:
        """Number of non-zero values."""
        return int(self.matrix.nnz)

    @property
    def density(self) -> float:
        """Fraction of the ``K × V`` values that are non-zero."""
        return self.nnz / max(1, int(np.prod(self.shape)))

    def any(self) -> bool:
        """Whether any map has a non-zero voxel."""
        return self.nnz > 0

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def __getitem__(self, rows: Any) -> SparseMaps:
        """The maps ``rows`` (an index array or slice), still sparse."""
        return SparseMaps(self.matrix[np.arange(len(self))[rows]], self.spatial_shape)

    def map(self, k: int) -> np.ndarray:
        """Map ``k`` as a dense ``(z, y, x)`` array."""
        out = np.zeros(int(np.prod(self.spatial_shape)), dtype=self.dtype)
        row = self.matrix[[k]]
        out[row.indices] = row.data
        return out.reshape(self.spatial_shape)

    def toarray(self) -> np.ndarray:
        """All maps as a dense ``(K, z, y, x)`` array (K × V values: only for small atlases)."""
        return self.matrix.toarray().reshape(self.shape)

    def nonzero_voxels(self, kept: np.ndarray | None = None) -> np.ndarray:
        """The union of the (kept) maps' non-zero voxels, bool ``(z, y, x)``."""
        chosen = self.matrix if kept is None else self.matrix[np.asarray(kept)]
        out = np.zeros(self.matrix.shape[1], dtype=bool)
        out[chosen.indices] = True
        return out.reshape(self.spatial_shape)

    def abs_sums(self, mask: np.ndarray) -> np.ndarray:
        """Per map, the sum of ``|m|`` over the voxels of a bool ``(z, y, x)`` mask."""
        inside = np.asarray(mask, dtype=bool).reshape(-1)[self.matrix.indices]
        values = np.where(inside, np.abs(self.matrix.data), 0).astype(np.float64)
        sums = np.add.reduceat(values, self.matrix.indptr[:-1]) if values.size else values
        empty = np.diff(self.matrix.indptr) == 0  # reduceat gives the next row's value there
        return np.where(empty, 0.0, sums) if sums.size else np.zeros(len(self))

    def voxel_rows(self, index: np.ndarray, kept: np.ndarray) -> sparse.csr_array:
        """The kept maps at the flat voxels ``index``: CSR ``(len(index), len(kept))``, float64."""
        by_voxel = self.matrix[np.asarray(kept)].T.tocsr()  # (V, K_kept)
        rows = by_voxel[np.asarray(index)].astype(np.float64)
        rows.sort_indices()
        return rows


def _finite_csr(flat: np.ndarray, segment: int) -> sparse.csr_array:
    """A dense ``(k, V)`` block as CSR, its non-finite values set to 0 (they are non-zero, so
    only the non-zero values need checking); ``segment`` (a divisor of ``V``, the grid's last
    axis) lets :func:`sparse_nonzero` skip the zeros."""
    rows, cols = sparse_nonzero(flat, segment)
    return _csr(rows, cols, flat[rows, cols], flat.shape)


def _csr(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]
) -> sparse.csr_array:
    """CSR from non-zeros in C order, non-finite values dropped (NaN and Inf → 0)."""
    values = values.astype(float_dtype(values.dtype), copy=False)
    bad = ~np.isfinite(values)
    if bad.any():
        keep = ~bad
        rows, cols, values = rows[keep], cols[keep], values[keep]
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    index_dtype = np.int32 if shape[1] < 2**31 and values.size < 2**31 else np.int64
    return sparse.csr_array(
        (values, cols.astype(index_dtype), indptr.astype(index_dtype)), shape=shape
    )


def stays_sparse(block: np.ndarray | ScreenedBlock) -> bool:
    """Whether an atlas whose first block of maps is ``block`` is stored sparse: at most
    ``daskmasker.sparse-maps-density`` of its values non-zero (see the setting's note)."""
    if isinstance(block, ScreenedBlock):
        density = np.count_nonzero(block.segments) / max(1, int(np.prod(block.shape)))
    else:
        density = np.count_nonzero(block) / max(1, block.size)
    return bool(density <= float(config.get("sparse-maps-density")))


class SparseMapsSink:
    """A :func:`dask.array.store` target that keeps each block of maps sparse as it arrives.

    Blocks are ``(k, z, y, x)`` with whole volumes; each is made finite, sparse and (with
    ``remap``) moved onto the target grid at once, so the dense maps are never held whole.

    Parameters
    ----------
    shape : tuple of int
        ``(K, z, y, x)`` of the source maps.
    dtype : dtype
        The maps' float dtype.
    remap : callable, optional
        ``SparseMaps → SparseMaps`` onto the target grid (see :class:`SparseResampler`).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: Any,
        remap: Callable[[SparseMaps], SparseMaps] | None = None,
    ):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self._remap = remap
        self._parts: dict[int, SparseMaps] = {}

    def __setitem__(self, key: tuple[slice, ...], block: np.ndarray | ScreenedBlock) -> None:
        if any(
            k != slice(None) and (k.start, k.stop) != (0, n)
            for k, n in zip(key[1:], self.shape[1:], strict=True)
        ):
            raise ValueError(f"maps blocks must hold whole volumes, got the region {key}")
        part = SparseMaps.from_dense(block)
        if part.dtype != self.dtype:
            part = SparseMaps(part.matrix.astype(self.dtype), part.spatial_shape)
        self._parts[key[0].start or 0] = self._remap(part) if self._remap else part

    def result(self) -> SparseMaps:
        """The maps received, in order."""
        parts = [self._parts[start] for start in sorted(self._parts)]
        matrix = sparse.vstack([p.matrix for p in parts], format="csr")
        return SparseMaps(matrix, parts[0].spatial_shape)


def csr_maps(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    n_maps: int,
    spatial_shape: tuple[int, ...],
) -> SparseMaps:
    """Maps from the (row, voxel, value) triplets of their non-zeros, in any order."""
    shape = (n_maps, int(np.prod(spatial_shape)))
    matrix = sparse.coo_array((values, (rows, cols)), shape=shape).tocsr()
    matrix.sort_indices()
    return SparseMaps(matrix, spatial_shape)
