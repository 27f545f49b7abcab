"""Linear resampling of sparse maps onto another grid, touching only their non-zero voxels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse

from daskmasker.compute import grid
from daskmasker.compute.sparse_maps import SparseMaps, csr_maps


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
        self._lookup: np.ndarray | None = None
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
        return csr_maps(rows, cols, values.astype(maps.dtype), len(maps), self.target.shape)

    def _move(self, maps: SparseMaps) -> SparseMaps:
        if self._lookup is None:
            self._lookup = self._target_of_source()
        m = maps.matrix
        cols = self._lookup[m.indices]
        rows = np.repeat(np.arange(len(maps)), np.diff(m.indptr))
        keep = cols >= 0
        return csr_maps(rows[keep], cols[keep], m.data[keep], len(maps), self.target.shape)

    def _target_of_source(self) -> np.ndarray:
        """Per flat source voxel, its flat target voxel under the whole-voxel map (-1: none)."""
        if self.plan is None:
            raise ValueError("the grids do not differ by whole voxels: nothing to move")
        n_source = int(np.prod(self.source.shape))
        numbered = np.arange(1, n_source + 1, dtype=np.int64).reshape(1, *self.source.shape)
        found = grid.apply_integer_grid_map_reversed(
            numbered, self.plan, self.target.shape_xyz
        ).reshape(-1)
        lookup = np.full(n_source, -1, dtype=np.int64)
        hit = np.flatnonzero(found)
        lookup[found[hit] - 1] = hit
        return lookup

    def _interpolate(self, row: sparse.csr_array) -> tuple[np.ndarray, np.ndarray]:
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
