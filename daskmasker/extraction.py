"""Region signals from a lazy image: the maps on a grid, the Dask graph, the solve.

:class:`GridMaps` holds what a fitted masker needs on one voxel grid (the maps trimmed by the mask,
the
support, the Gram solver) and the compacted maps blocks for each spatial chunking it has met, so
many
images on one grid share one preparation.  :func:`raw_signals` builds the lazy graph
``volumes → XᵀM partials → tree sum → solve`` and returns the uncleaned region signals.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import dask.array as da
import numpy as np

from daskmasker.cluster import active_client
from daskmasker.regression import (
    GramSolver,
    MapsBlock,
    compact_maps,
    project,
    share_blocks,
    split_maps,
)

NONFINITE_WARNING = "Non-finite values detected. These values will be replaced with zeros."


@dataclass
class GridMaps:
    """The fitted maps prepared for extraction on one voxel grid.

    Attributes
    ----------
    maps : ndarray, shape (K, z, y, x)
        All maps on this grid (not yet trimmed by the mask).
    mask : bool ndarray of shape (z, y, x), or None
    kept : ndarray of int
        Indices of the maps that enter the regression (all of them with ``keep_masked_maps``).
    support : bool ndarray, shape (z, y, x)
        Union of the kept maps' non-zero voxels inside the mask.
    compact : MapsBlock
        The kept maps on the support voxels of the whole grid.
    solver : GramSolver
    """

    maps: np.ndarray
    mask: np.ndarray | None
    kept: np.ndarray
    support: np.ndarray
    compact: MapsBlock
    solver: GramSolver
    _blocks: dict = field(default_factory=dict, repr=False)

    @property
    def dropped(self) -> list[int]:
        """Indices of maps removed because they are empty inside the mask."""
        return sorted(set(range(self.maps.shape[0])) - {int(k) for k in self.kept})

    def blocks_for(self, spatial_chunks: tuple[tuple[int, ...], ...]):
        """The maps blocks matching a data array's spatial chunks, and their sizes (cached).

        Blocks are split from the whole-grid compaction (no copy for whole-volume chunks) and,
        on a distributed cluster, scattered once per client.
        """
        chunks = tuple(tuple(int(c) for c in cs) for cs in spatial_chunks)
        client = active_client()
        key = (chunks, None if client is None else client.id)
        if key not in self._blocks:
            blocks = split_maps(self.compact, self.support.shape, chunks)
            sizes = np.vectorize(lambda b: b.size, otypes=[np.int64])(blocks)
            self._blocks[key] = (share_blocks(blocks, client), sizes)
        return self._blocks[key]


def prepare_grid_maps(
    maps: np.ndarray, mask: np.ndarray | None, keep_masked_maps: bool
) -> GridMaps:
    """Trim maps by a mask as nilearn's ``_trim_maps`` does and build the solver.

    Parameters
    ----------
    maps : ndarray, shape (K, z, y, x)
        Finite float maps on the data grid.
    mask : bool ndarray of shape (z, y, x), or None
    keep_masked_maps : bool
        Keep maps that are empty inside the mask (they give all-zero signals).

    Returns
    -------
    GridMaps
    """
    k = maps.shape[0]
    nonzero = np.zeros(maps.shape[1:], dtype=bool)
    if mask is None:
        kept = np.arange(k)
        for m in maps:
            nonzero |= m != 0
        support = nonzero
    else:
        mask = np.asarray(mask, dtype=bool)
        sums = np.array([np.abs(m[mask]).sum() for m in maps])
        kept = np.arange(k) if keep_masked_maps else np.flatnonzero(sums > 0)
        for i in kept:
            nonzero |= maps[i] != 0
        support = nonzero & mask
    compact = compact_maps(maps, support, kept=kept)
    solver = GramSolver(compact.rows.T @ compact.rows, n_rows=compact.index.size)
    return GridMaps(
        maps=maps, mask=mask, kept=kept, support=support, compact=compact, solver=solver
    )


def raw_signals(
    data: da.Array, grid_maps: GridMaps, split_every: int | None = None, reader=None
) -> da.Array:
    """Lazy ``[XᵀM, count]``: the products with the maps and the per-volume non-finite count.

    The region signals are ``products[:, :-1] @ grid_maps.solver.operator`` (see
    :func:`region_signals`); the solve runs in the task that consumes them, as the products are
    one small ``(T, K + 1)`` array.

    Parameters
    ----------
    data : dask array, shape (T, z, y, x)
        The (resampled, smoothed) volumes on the maps' grid.
    grid_maps : GridMaps
    split_every : int, optional
        Fan-in of the tree reduction across spatial chunks.
    reader : ChunkReader or GzipChunks, optional
        The reader ``data`` comes from unchanged (see :func:`daskmasker.regression.project`).

    Returns
    -------
    dask array, shape (T, K_kept + 1), float64
    """
    blocks, sizes = grid_maps.blocks_for(data.chunks[1:])
    n_kept = int(grid_maps.kept.size)
    return project(data, blocks, sizes, n_kept, split_every=split_every, reader=reader)


def region_signals(products: np.ndarray, operator: np.ndarray) -> tuple[np.ndarray, float]:
    """The region signals ``(T, K)`` and the total non-finite count from computed
    :func:`raw_signals`."""
    return products[:, :-1] @ operator, float(products[:, -1].sum())


def warn_nonfinite(count: float) -> None:
    """Emit nilearn's warning when the data held NaN or Inf."""
    if count:
        warnings.warn(NONFINITE_WARNING, UserWarning, stacklevel=3)
