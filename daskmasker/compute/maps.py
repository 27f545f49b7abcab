"""The maps and the mask as arrays: cleaning, binarising, checking.

Arrays here are in daskmasker order: maps ``(K, z, y, x)``, masks ``(z, y, x)``.  Maps are small
enough to hold in memory (nilearn holds them too); the data never is.  Loading them from images
and resampling them onto a grid is :mod:`daskmasker.masker.spatial`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse

from daskmasker import config
from daskmasker.compute import grid
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


def check_overlap(maps) -> None:
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


# --------------------------------------------------------------------------- sparse maps
# Atlases of many small maps (DiFuMo 1024: ~700 voxels a map on a 1.3 M-voxel grid, 0.05 %
# dense) are stored as a CSR matrix (K × V) over the grid's flat voxels: 8 bytes a non-zero
# (float32 value + int32 index) instead of 4 bytes a voxel for each map.


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

    def __init__(self, matrix, spatial_shape: tuple[int, ...]):
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
        """Maps ``(K, z, y, x)`` made finite (NaN and Inf → 0, as :func:`finite`) and sparse."""
        if isinstance(block, ScreenedBlock):
            n_columns = int(np.prod(block.shape[1:]))
            rows, cols, values = _screened_nonzero(block.hit, block.segments, n_columns)
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

    def __getitem__(self, rows) -> SparseMaps:
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


def screen_width(size: int, segment: int, itemsize: int) -> int | None:
    """Values per screened segment of an array of ``size`` values: up to 8 runs of ``segment``
    (the grid's last axis) dividing ``size``; None when the values cannot be screened."""
    if itemsize not in (4, 8) or segment < 1 or size % segment:
        return None
    return segment * next(m for m in (8, 4, 2, 1) if size % (segment * m) == 0)


def screen(values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The segments of ``width`` values of a 1-D array that hold a set bit: their indices and
    a copy of their values ``(n_hit, width)``; every other segment holds only zeros (+0.0).

    One pass ORs the values' bits over each segment, 8 bytes at a time (4-byte values in pairs
    when ``width`` is even; OR reduces ~1.3x faster than max here): memory speed, or cache speed
    on a piece just inflated (:meth:`daskmasker.io.nifti.GzipChunks.read_screened`).
    """
    if values.dtype.itemsize == 4 and width % 2 == 0:
        bits = values.view(np.uint64).reshape(-1, width // 2)
    else:
        bits = values.view(np.uint32 if values.dtype.itemsize == 4 else np.uint64)
        bits = bits.reshape(-1, width)
    hit = np.flatnonzero(np.bitwise_or.reduce(bits, axis=1))
    return hit, values.reshape(-1, width)[hit]


@dataclass(frozen=True)
class ScreenedBlock:
    """A block of maps ``(k, z, y, x)`` held as its screened segments (:func:`screen` over the
    flattened block): the other segments are zeros.  What a ``.nii.gz`` reader gives the fit
    instead of the dense block, which is never made."""

    shape: tuple[int, ...]
    dtype: np.dtype
    width: int
    hit: np.ndarray
    segments: np.ndarray


def sparse_nonzero(flat: np.ndarray, segment: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a ``(k, V)`` array, ~10x faster when it is sparse.

    ``np.nonzero`` compares every float (~1 GB/s here).  Here :func:`screen` keeps the segments
    with a bit set (up to 8 runs of ``segment`` values, a divisor of the array's size: a small
    map of a DiFuMo-like atlas sets ~1-2 % of them) and only those are compared.  The result is
    ``np.nonzero``'s, in its order (``-0.0`` has a bit set, so it is screened in, then compared
    equal to 0; NaN is non-zero in both).

    Examples
    --------
    >>> flat = np.zeros((2, 12), np.float32)
    >>> flat[0, 5], flat[1, 0], flat[1, 7] = 1.0, np.nan, -0.0
    >>> sparse_nonzero(flat, segment=4)
    (array([0, 1]), array([5, 0]))
    """
    width = screen_width(flat.size, segment, flat.dtype.itemsize)
    if width is None or not flat.flags.c_contiguous:
        return np.nonzero(flat)
    hit, segments = screen(flat.reshape(-1), width)
    return _screened_nonzero(hit, segments, flat.shape[1])[:2]


def _screened_nonzero(hit, segments, n_columns: int):
    """Rows, columns and values of the non-zeros of screened segments, in C order."""
    part_rows, part_cols = np.nonzero(segments)
    rows, cols = np.divmod(hit[part_rows] * segments.shape[1] + part_cols, n_columns)
    return rows, cols, segments[part_rows, part_cols]


def _finite_csr(flat: np.ndarray, segment: int) -> sparse.csr_array:
    """A dense ``(k, V)`` block as CSR, its non-finite values set to 0 (they are non-zero, so
    only the non-zero values need checking); ``segment`` (a divisor of ``V``, the grid's last
    axis) lets :func:`sparse_nonzero` skip the zeros."""
    rows, cols = sparse_nonzero(flat, segment)
    return _csr(rows, cols, flat[rows, cols], flat.shape)


def _csr(rows, cols, values, shape: tuple[int, int]) -> sparse.csr_array:
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


def is_sparse(maps) -> bool:
    """Whether maps are :class:`SparseMaps` (else a dense ``(K, z, y, x)`` array)."""
    return isinstance(maps, SparseMaps)


def stays_sparse(block: np.ndarray | ScreenedBlock) -> bool:
    """Whether an atlas whose first block of maps is ``block`` is stored sparse: at most
    ``daskmasker.sparse-maps-density`` of its values non-zero (see the setting's note)."""
    if isinstance(block, ScreenedBlock):
        density = np.count_nonzero(block.segments) / max(1, int(np.prod(block.shape)))
    else:
        density = np.count_nonzero(block) / max(1, block.size)
    return density <= float(config.get("sparse-maps-density"))


def any_in_mask(maps, mask: np.ndarray) -> bool:
    """Whether any map has a non-zero value inside a bool ``(z, y, x)`` mask."""
    if is_sparse(maps):
        return bool(np.asarray(mask, dtype=bool).reshape(-1)[maps.matrix.indices].any())
    return any(m[mask].any() for m in maps)


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

    def __init__(self, shape: tuple[int, ...], dtype, remap=None):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self._remap = remap
        self._parts: dict[int, SparseMaps] = {}

    def __setitem__(self, key, block: np.ndarray) -> None:
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


class SparseResampler:
    """Linear resampling of :class:`SparseMaps` onto another grid, touching only non-zero voxels.

    Two cases, both with the numbers of nilearn's ``resample_img(interpolation="linear")``:

    * grids that differ by a signed axis permutation and whole-voxel shifts (DiFuMo's and the MNI
      2 mm grids): each non-zero voxel moves to its target voxel (a lookup per non-zero);
    * any other affine: each map is interpolated by ``scipy.ndimage.affine_transform`` (order 1,
      as nilearn) inside the target box its source bounding box reaches, 2 voxels of zeros
      around it; linear interpolation reads only the 8 neighbours of a point, so the values equal
      those of the whole volume (nilearn's clip to the data's range cannot change a linear
      interpolation, a convex combination of the values and of 0).

    Parameters
    ----------
    source, target : Grid
    """

    def __init__(self, source: grid.Grid, target: grid.Grid):
        self.source, self.target = source, target
        self.plan = grid.integer_grid_map(
            source.shape_xyz, source.affine, target.shape_xyz, target.affine
        )
        self._lookup = None
        transform = np.linalg.inv(source.affine) @ target.affine
        self.matrix, self.offset = transform[:3, :3], transform[:3, 3]

    def __call__(self, maps: SparseMaps) -> SparseMaps:
        """The maps on the target grid."""
        if self.plan is not None:
            return self._move(maps)
        parts = [self._interpolate(maps.matrix[[k]]) for k in range(len(maps))]
        rows = np.repeat(np.arange(len(maps)), [p[0].size for p in parts])
        cols = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        values = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, maps.dtype)
        return _csr_maps(rows, cols, values.astype(maps.dtype), len(maps), self.target.shape)

    def _move(self, maps: SparseMaps) -> SparseMaps:
        if self._lookup is None:
            n_source = int(np.prod(self.source.shape))
            numbered = np.arange(1, n_source + 1, dtype=np.int64).reshape(1, *self.source.shape)
            found = grid.apply_integer_grid_map_reversed(
                numbered, self.plan, self.target.shape_xyz
            ).reshape(-1)
            lookup = np.full(n_source, -1, dtype=np.int64)
            hit = np.flatnonzero(found)
            lookup[found[hit] - 1] = hit
            self._lookup = lookup
        m = maps.matrix
        cols = self._lookup[m.indices]
        rows = np.repeat(np.arange(len(maps)), np.diff(m.indptr))
        keep = cols >= 0
        return _csr_maps(rows[keep], cols[keep], m.data[keep], len(maps), self.target.shape)

    def _interpolate(self, row) -> tuple[np.ndarray, np.ndarray]:
        """One map (a 1-row CSR) → flat target indices and values."""
        empty = (np.zeros(0, np.int64), np.zeros(0, row.dtype))
        if row.nnz == 0:
            return empty
        src_xyz = np.array(self.source.shape_xyz)
        xyz = np.stack(np.unravel_index(row.indices, self.source.shape)[::-1])
        lo = np.maximum(xyz.min(axis=1) - 2, 0)
        hi = np.minimum(xyz.max(axis=1) + 3, src_xyz)
        sub = np.zeros(tuple(hi - lo), dtype=row.dtype)
        sub[tuple(xyz - lo[:, None])] = row.data
        # target voxels whose source point can reach the box: the box's corners mapped back
        corners = np.array(np.meshgrid(*zip(lo - 1, hi, strict=True), indexing="ij")).reshape(3, -1)
        back = np.linalg.solve(self.matrix, corners - self.offset[:, None])
        t0 = np.clip(np.floor(back.min(axis=1)).astype(int) - 1, 0, self.target.shape_xyz)
        t1 = np.clip(np.ceil(back.max(axis=1)).astype(int) + 2, 0, self.target.shape_xyz)
        if np.any(t1 <= t0):
            return empty
        matrix = self.matrix
        offset = matrix @ t0 + self.offset - lo
        if np.all(np.diag(np.diag(matrix)) == matrix):
            matrix = np.diag(matrix)  # as resample_array calls it
        out = ndimage.affine_transform(
            sub,
            matrix,
            offset=offset,
            output_shape=tuple(t1 - t0),
            order=1,
            cval=0,
            output=row.dtype,
        )
        local = np.nonzero(out)
        values = out[local]
        target_xyz = [c + t for c, t in zip(local, t0, strict=True)]
        flat = np.ravel_multi_index(tuple(target_xyz[::-1]), self.target.shape)
        return flat, values


def _csr_maps(rows, cols, values, n_maps: int, spatial_shape) -> SparseMaps:
    shape = (n_maps, int(np.prod(spatial_shape)))
    matrix = sparse.coo_array((values, (rows, cols)), shape=shape).tocsr()
    matrix.sort_indices()
    return SparseMaps(matrix, spatial_shape)
