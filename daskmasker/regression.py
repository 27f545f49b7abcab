"""Maps regression by partial normal equations: chunk → combine → finalize.

For every volume ``x`` (a vector over voxels) nilearn solves ``min ||M b - x||`` with
``scipy.linalg.lstsq`` over the voxels of the maps' support, where ``M`` (voxels × K) holds the
maps.
The minimum-norm solution is ``b = pinv(M) x = pinv(MᵀM) Mᵀx``, so the work splits the way flox
splits
a reduction:

* **chunk** — each block of voxels (a spatial block of a chunk of volumes) yields its partial
  ``XᵀM`` (T_chunk × K, accumulated in float64 whatever the input dtype) and, once per fit, its
  partial Gram matrix ``MᵀM`` (K × K);
* **combine** — the partials are summed across spatial blocks with Dask's tree reduction;
* **finalize** — one minimum-norm solve with the reduced Gram matrix (:class:`GramSolver`),
  reproducing ``gelsd``'s rank cutoff.

Only the voxels of the support enter the products: a block is compacted once, at fit, into the flat
indices of its support voxels and the matching rows of ``M`` (:class:`MapsBlock`); a task gathers
those voxels from its data block, casts them to float64 and multiplies.  Non-finite data values
become
0 (as nilearn does) and are counted in the same pass so the caller can warn without reading twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np
from dask import delayed


@dataclass(frozen=True)
class MapsBlock:
    """The maps restricted to the support voxels of one spatial block.

    Attributes
    ----------
    index : ndarray of int64
        Flat (C-order) indices of the support voxels within the block.
    rows : ndarray of float64, shape (len(index), K)
        The maps' values at those voxels.
    """

    index: np.ndarray
    rows: np.ndarray


def compact_maps(maps: np.ndarray, support: np.ndarray | None = None) -> MapsBlock:
    """Compact a block of maps to its support voxels.

    Parameters
    ----------
    maps : ndarray, shape (K, *block_shape)
        Maps in daskmasker order (map first, then z, y, x).
    support : bool ndarray of shape block_shape, optional
        Voxels to keep; defaults to the union of the maps' non-zero voxels.

    Returns
    -------
    MapsBlock
    """
    k = maps.shape[0]
    flat = maps.reshape(k, -1)
    if support is None:
        keep = np.any(flat != 0, axis=0)
    else:
        keep = np.asarray(support, dtype=bool).reshape(-1)
    index = np.flatnonzero(keep)
    rows = np.ascontiguousarray(flat[:, index].T, dtype=np.float64)
    return MapsBlock(index=index, rows=rows)


def partial_products(data: np.ndarray, maps: MapsBlock) -> np.ndarray:
    """One chunk's contribution to ``XᵀM``, plus its count of non-finite values.

    Parameters
    ----------
    data : ndarray, shape (T_chunk, *block_shape)
        A block of volumes (any real dtype).
    maps : MapsBlock
        The maps compacted to the same spatial block.

    Returns
    -------
    ndarray of float64, shape (T_chunk, K + 1)
        Columns ``:K`` hold ``X_block[:, support] @ M_block``; the last column counts the non-finite
        values of each volume of the block (all voxels, as nilearn's check does).
    """
    t = data.shape[0]
    flat = data.reshape(t, -1)
    out = np.empty((t, maps.rows.shape[1] + 1), dtype=np.float64)
    if flat.dtype.kind == "f":
        out[:, -1] = flat.size and (~np.isfinite(flat)).sum(axis=1)
    else:
        out[:, -1] = 0
    gathered = flat[:, maps.index].astype(np.float64)
    if out[:, -1].any():
        gathered[~np.isfinite(gathered)] = 0.0
    np.matmul(gathered, maps.rows, out=out[:, :-1])
    return out


def _block_products(data: np.ndarray, maps: np.ndarray) -> np.ndarray:
    block = maps.reshape(-1)[0]
    return partial_products(data, block)[:, None, None, None, :]


def maps_block_array(
    blocks: np.ndarray, spatial_chunks: tuple[tuple[int, ...], ...], client=None
) -> da.Array:
    """The maps blocks as the graph will use them.

    Locally (threads) the numpy object array itself: tasks refer to the blocks in memory, nothing
    is copied and no task waits for a maps key.  With a distributed ``client`` the blocks are
    scattered (broadcast to the workers) and the graph refers to them as keys, so no large
    constant is embedded in the graph and the maps travel once per worker.
    """
    grid = tuple(len(c) for c in spatial_chunks)
    if blocks.shape != grid:
        raise ValueError(
            f"expected {grid} maps blocks for chunks {spatial_chunks}, got {blocks.shape}"
        )
    if client is None:
        return blocks
    futures = client.scatter(list(blocks.ravel()), broadcast=True)
    arrays = [
        da.from_delayed(delayed(_as_block)(f), shape=(1,) * len(grid), dtype=object)
        for f in futures
    ]
    nested = np.empty(grid, dtype=object)
    for idx, arr in zip(np.ndindex(*grid), arrays, strict=True):
        nested[idx] = arr
    return da.block(nested.tolist())


def _as_block(block: MapsBlock) -> np.ndarray:
    out = np.empty((1, 1, 1), dtype=object)
    out[0, 0, 0] = block
    return out


def project(data: da.Array, maps_blocks: da.Array, n_maps: int, split_every: int | None = None):
    """Lazy ``XᵀM`` and the per-volume non-finite count for a 4D Dask array.

    Parameters
    ----------
    data : dask array, shape (T, z, y, x)
        Volumes, chunked in any way.
    maps_blocks : dask array of objects
        From :func:`maps_block_array`, one block per spatial chunk of ``data``.
    n_maps : int
        K.
    split_every : int, optional
        Fan-in of the tree reduction across spatial blocks.

    Returns
    -------
    products : dask array, shape (T, K), float64
    nonfinite : dask array, shape (T,), float64
    """
    if isinstance(maps_blocks, np.ndarray):

        def products(block, block_info=None):
            where = tuple(block_info[0]["chunk-location"][1:])
            return partial_products(block, maps_blocks[where])[:, None, None, None, :]

        spatial = tuple((1,) * len(c) for c in data.chunks[1:])
        parts = data.map_blocks(
            products,
            chunks=(data.chunks[0], *spatial, (n_maps + 1,)),
            new_axis=4,
            dtype=np.float64,
            meta=np.empty((0, 0, 0, 0, 0), dtype=np.float64),
        )
    else:
        parts = da.blockwise(
            _block_products,
            "tzyxk",
            data,
            "tzyx",
            maps_blocks,
            "zyx",
            new_axes={"k": n_maps + 1},
            adjust_chunks={"z": 1, "y": 1, "x": 1},
            dtype=np.float64,
            meta=np.empty((0, 0, 0, 0, 0), dtype=np.float64),
            align_arrays=False,
        )
    summed = parts.sum(axis=(1, 2, 3), split_every=split_every)
    return summed[:, :n_maps], summed[:, n_maps]


class GramSolver:
    """Minimum-norm least squares from the reduced normal equations.

    ``solve(XᵀM)`` returns ``pinv(M) X`` transposed, the answer ``scipy.linalg.lstsq`` (``gelsd``)
    gives for ``M b = x`` one volume at a time:

    * singular values ``s_i = sqrt(λ_i)`` of ``M`` come from the eigenvalues of ``MᵀM``; those below
      ``rcond · s_max`` with gelsd's default ``rcond = eps · max(n_voxels, K)`` are cut, and so are
      eigenvalues below ``K · eps · λ_max``, which the normal equations cannot resolve in float64
      (a difference from gelsd only for maps with a condition number above ~1e7);
    * a map that is empty on the support has a zero Gram row and gets exactly 0.

    Parameters
    ----------
    gram : ndarray, shape (K, K)
        ``MᵀM`` in float64.
    n_rows : int
        Number of voxels in the regression (for gelsd's cutoff).
    """

    def __init__(self, gram: np.ndarray, n_rows: int):
        gram = np.asarray(gram, dtype=np.float64)
        k = gram.shape[0]
        self.n_maps = k
        self.active = np.flatnonzero(np.diag(gram) > 0)
        sub = gram[np.ix_(self.active, self.active)]
        self.rank = 0
        self.operator = np.zeros((k, k))
        if sub.size == 0:
            return
        lam, vecs = np.linalg.eigh(sub)
        lam_max = lam[-1]
        eps = np.finfo(np.float64).eps
        rcond = eps * max(n_rows, k)
        cutoff = lam_max * max(rcond**2, k * eps)
        keep = lam > cutoff
        self.rank = int(keep.sum())
        inv = (vecs[:, keep] / lam[keep]) @ vecs[:, keep].T
        self.operator[np.ix_(self.active, self.active)] = inv

    def solve(self, products: np.ndarray) -> np.ndarray:
        """Coefficients (T × K) from ``XᵀM`` (T × K)."""
        return np.asarray(products, dtype=np.float64) @ self.operator
