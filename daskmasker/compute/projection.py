"""The projection graph: volumes → gathered support → ``XᵀM`` partials → tree sum → solve.

:class:`GridMaps` holds what a fitted masker needs on one voxel grid (the maps trimmed by the
mask, the support, the Gram solver) and the compacted maps blocks for each spatial chunking it has
met, so many images on one grid share one preparation.  :func:`raw_signals` builds the lazy graph
from the kernels of :mod:`daskmasker.compute.regression` (a task per block, hand-built layers, no
per-chunk ``delayed``) and returns the products the uncleaned region signals are solved from.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from scipy import sparse

from daskmasker import config
from daskmasker.compute.dtypes import compact_dtype
from daskmasker.compute.graph import (
    data_node,
    graph_input,
    paced_reads,
    ref,
    task,
    task_array,
    task_list,
)
from daskmasker.compute.maps import NONFINITE_WARNING, is_sparse
from daskmasker.compute.plan import ExtractionPlan, plan_extraction
from daskmasker.compute.reduction import combine_partials
from daskmasker.compute.regression import (
    NORMAL_EQUATIONS,
    GramSolver,
    MapsBlock,
    compact_maps,
    count_nonfinite,
    gather_support,
    gram_matrix,
    split_maps,
)
from daskmasker.compute.source import ChunkSource
from daskmasker.compute.sparse_maps import SparseMaps
from daskmasker.stacklevel import find_stack_level

Share = tuple[Hashable, Callable[[np.ndarray], np.ndarray]]
"""How the maps blocks reach the tasks: a key (e.g. a client's id) and a function that turns the
blocks into what tasks refer to (e.g. futures of blocks scattered to a cluster's workers)."""


@dataclass
class GridMaps:
    """The fitted maps prepared for extraction on one voxel grid.

    Attributes
    ----------
    maps : ndarray of shape (K, z, y, x), or SparseMaps
        All maps on this grid (not yet trimmed by the mask).
    mask : bool ndarray of shape (z, y, x), or None
    kept : ndarray of int
        Indices of the maps that enter the regression (all of them with ``keep_masked_maps``).
    support : bool ndarray, shape (z, y, x)
        Union of the kept maps' non-zero voxels inside the mask.
    compact : MapsBlock
        The kept maps on the support voxels of the whole grid.
    solver : GramSolver
        None for the joint maps of several atlases (see :func:`joint_grid_maps`).
    joint : (GridMaps, slice), optional
        The joint maps of several atlases this one's products are taken from, and its columns
        there: the image is read and multiplied once for all of them.
    """

    maps: np.ndarray | SparseMaps
    mask: np.ndarray | None
    kept: np.ndarray
    support: np.ndarray
    compact: MapsBlock
    solver: GramSolver | None
    joint: tuple[GridMaps, slice] | None = None
    _blocks: dict = field(default_factory=dict, repr=False)

    @property
    def dropped(self) -> list[int]:
        """Indices of maps removed because they are empty inside the mask."""
        return sorted(set(range(self.maps.shape[0])) - {int(k) for k in self.kept})

    def blocks_for(
        self, spatial_chunks: tuple[tuple[int, ...], ...], share: Share | None = None
    ) -> tuple[Any, np.ndarray]:
        """The maps blocks matching a data array's spatial chunks, and their sizes (cached).

        Blocks are split from the whole-grid compaction (no copy for whole-volume chunks) and,
        with ``share`` (see :data:`Share`; on a distributed cluster, a scatter), shared once per
        key.
        """
        chunks = tuple(tuple(int(c) for c in cs) for cs in spatial_chunks)
        key = (chunks, None if share is None else share[0])
        if key not in self._blocks:
            blocks = split_maps(self.compact, self.support.shape, chunks)
            sizes = np.vectorize(lambda b: b.size, otypes=[np.int64])(blocks)
            self._blocks[key] = (blocks if share is None else share[1](blocks), sizes)
        return self._blocks[key]


def prepare_grid_maps(
    maps: np.ndarray | SparseMaps, mask: np.ndarray | None, keep_masked_maps: bool
) -> GridMaps:
    """Trim maps by a mask as nilearn's ``_trim_maps`` does and build the solver.

    Parameters
    ----------
    maps : ndarray of shape (K, z, y, x), or SparseMaps
        Finite float maps on the data grid; sparse maps are trimmed without a dense copy.
    mask : bool ndarray of shape (z, y, x), or None
    keep_masked_maps : bool
        Keep maps that are empty inside the mask (they give all-zero signals).

    Returns
    -------
    GridMaps
    """
    k = maps.shape[0]
    if is_sparse(maps):
        return _prepare_sparse(maps, mask, keep_masked_maps)
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
    solver = GramSolver(gram_matrix(compact), n_rows=compact.index.size)
    return GridMaps(
        maps=maps, mask=mask, kept=kept, support=support, compact=compact, solver=solver
    )


def _prepare_sparse(maps: SparseMaps, mask: np.ndarray | None, keep_masked_maps: bool) -> GridMaps:
    """:func:`prepare_grid_maps` of sparse maps: the mask applied to the non-zeros only."""
    k = len(maps)
    if mask is None:
        kept = np.arange(k)
        support = maps.nonzero_voxels()
    else:
        mask = np.asarray(mask, dtype=bool)
        kept = np.arange(k) if keep_masked_maps else np.flatnonzero(maps.abs_sums(mask) > 0)
        support = maps.nonzero_voxels(kept) & mask
    compact = compact_maps(maps, support, kept=kept)
    solver = GramSolver(gram_matrix(compact), n_rows=compact.index.size)
    return GridMaps(
        maps=maps, mask=mask, kept=kept, support=support, compact=compact, solver=solver
    )


def raw_signals(
    data: da.Array,
    grid_maps: GridMaps,
    split_every: int | None = None,
    reader: ChunkSource | None = None,
    share: Share | None = None,
    fused: bool = True,
) -> da.Array:
    """Lazy ``[XᵀM, count]``: the products with the maps and the per-volume non-finite count.

    The region signals are ``products[:, :-1] @ grid_maps.solver.operator``, the ``finalize``
    of :data:`~daskmasker.compute.regression.NORMAL_EQUATIONS`; the solve runs in the task that
    consumes them, as the products are one small ``(T, K + 1)`` array.

    Parameters
    ----------
    data : dask array, shape (T, z, y, x)
        The (resampled, smoothed) volumes on the maps' grid.
    grid_maps : GridMaps
    split_every : int, optional
        Fan-in of the tree reduction across spatial chunks.
    reader : ChunkSource, optional
        The reader ``data`` comes from unchanged (see :func:`project`).
    share : Share, optional
        How the maps blocks reach the tasks (see :meth:`GridMaps.blocks_for`).
    fused : bool, default=True
        How a sequential reader is read (see :func:`project`).

    Returns
    -------
    dask array, shape (T, K_kept + 1), float64
    """
    if grid_maps.joint is not None:
        joint, columns = grid_maps.joint
        products = raw_signals(data, joint, split_every, reader, share, fused)
        # the same keys for every atlas: computed together, the image is read once
        own = da.concatenate([products[:, columns], products[:, -1:]], axis=1)
        return own.rechunk({1: -1})
    blocks, sizes = grid_maps.blocks_for(data.chunks[1:], share)
    n_kept = int(grid_maps.kept.size)
    return project(data, blocks, sizes, n_kept, split_every=split_every, reader=reader, fused=fused)


def joint_grid_maps(members: list[GridMaps]) -> list[GridMaps]:
    """Link the maps of several atlases on one grid so one pass over an image serves them all.

    The joint maps hold every atlas's kept maps side by side, on the union of their supports
    (CSR when sparse enough, see :func:`~daskmasker.compute.regression.compact_maps`); each
    returned copy of a member refers to them and to its columns (see :func:`raw_signals`).  Its
    own solver is unchanged: each atlas is still regressed alone, as nilearn does.

    Parameters
    ----------
    members : list of GridMaps
        Maps prepared on the same grid.

    Returns
    -------
    list of GridMaps
        The members, linked.
    """
    shape = members[0].support.shape
    if any(m.support.shape != shape for m in members):
        raise ValueError(
            f"atlases on different grids cannot share a pass: {[m.support.shape for m in members]}"
        )
    support = np.zeros(shape, dtype=bool)
    for m in members:
        support |= m.support
    index = np.flatnonzero(support)
    rows, cols, values, spans, offset = [], [], [], [], 0
    for m in members:
        part = sparse.coo_array(m.compact.rows)
        rows.append(np.searchsorted(index, m.compact.index)[part.row])
        cols.append(part.col + offset)
        values.append(part.data.astype(np.float64))
        k = m.compact.rows.shape[1]
        spans.append(slice(offset, offset + k))
        offset += k
    matrix = sparse.csr_array(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(index.size, offset),
    )
    matrix.sort_indices()
    if matrix.nnz > float(config.get("sparse-products-density")) * index.size * offset:
        matrix = matrix.toarray(order="F")
    joint = GridMaps(
        maps=None,  # type: ignore[arg-type]  # the joint maps are only products' columns
        mask=None,
        kept=np.arange(offset),
        support=support,
        compact=MapsBlock(index=index, rows=matrix),
        solver=None,
    )
    return [
        dataclasses.replace(m, joint=(joint, span), _blocks={})
        for m, span in zip(members, spans, strict=True)
    ]


def warn_nonfinite(count: float) -> None:
    """Emit nilearn's warning when the data held NaN or Inf."""
    if count:
        warnings.warn(NONFINITE_WARNING, UserWarning, stacklevel=find_stack_level())


def _batched_products(gathered: da.Array, maps: Any, plan: ExtractionPlan, n_maps: int) -> da.Array:
    """:func:`support_products` of the plan's batches of consecutive chunks of ``gathered``
    ``(T, 1, 1, S + 1)``; ``(T, K + 1)`` out."""
    name = f"support-products-{tokenize(gathered.name, maps, plan.batches)}"
    maps_arg = graph_input(maps)  # a scattered future becomes a reference to its key
    layer = {}
    for b, batch in enumerate(plan.batches):
        key = (name, b, 0)
        parts = task_list(ref((gathered.name, i, 0, 0, 0)) for i in batch)
        layer[key] = task(key, NORMAL_EQUATIONS.chunk, parts, maps_arg, _widths(plan, b))
    return task_array(name, layer, (plan.batch_sizes, (n_maps + 1,)), np.float64, [gathered])


def _widths(plan: ExtractionPlan, batch: int) -> tuple[int, int]:
    """The dense and sparse slab widths of a batch's products."""
    return plan.slab_widths[batch], plan.sparse_slab_widths[batch]


def project(
    data: da.Array,
    maps_blocks: np.ndarray,
    sizes: np.ndarray,
    n_maps: int,
    split_every: int | None = None,
    batch_volumes: int | None = None,
    reader: ChunkSource | None = None,
    fused: bool = True,
) -> da.Array:
    """Lazy ``[XᵀM, count]``: the products and the per-volume non-finite count of a 4D Dask
    array in one ``(T, K + 1)`` array (one task per batch: the scheduler's cost is per task).

    Parameters
    ----------
    data : dask array, shape (T, z, y, x)
        Volumes, chunked in any way.
    maps_blocks : ndarray of objects
        One :class:`MapsBlock` (or what refers to it, see :data:`Share`) per spatial chunk of
        ``data``.
    sizes : ndarray of int
        The number of support voxels of each block (same shape as ``maps_blocks``).
    n_maps : int
        K.
    split_every : int, optional
        Fan-in of the tree reduction across spatial blocks.
    batch_volumes : int, optional
        Volumes per product batch; by default the plan's
        (:func:`~daskmasker.compute.plan.plan_extraction`).
    reader : ChunkSource, optional
        The source ``data`` was made from, block for block (a Zarr
        :class:`~daskmasker.io.zarr.ChunkReader` or a ``.nii.gz``'s
        :class:`~daskmasker.io.nifti_chunks.GzipChunks`): each block is then read and gathered in
        the same task, so the raw volumes never travel between tasks.  It has ``read_chunk(where)``
        (the chunk at that grid position, possibly in a per-thread scratch buffer) and
        ``sequential``: read the chunks in order (see ``fused``).
    fused : bool, default=True
        For a sequential reader: read, gather and multiply a product batch per task, each task
        after the previous one (on a cluster: the image's stream stays on one worker, few
        tasks).  False: a chain of read tasks, each chunk gathered by a task of its own, every
        read waiting for the gather two chunks back (locally: another thread gathers a chunk
        while the next one inflates, and memory stays a few chunks whatever the number of
        threads; see :func:`_paced_gathered`).

    Returns
    -------
    dask array, shape (T, K + 1), float64
        Columns ``:K`` hold ``XᵀM``, the last one the non-finite count of each volume.
    """
    grid = tuple(len(c) for c in data.chunks[1:])
    if maps_blocks.shape != grid or np.shape(sizes) != grid:
        raise ValueError(
            f"expected {grid} maps blocks for chunks {data.chunks[1:]}, got {maps_blocks.shape}"
        )
    gathered_dtype = compact_dtype(data.dtype)
    plan = plan_extraction(
        int(data.shape[0]),
        int(np.prod(data.shape[1:])) * data.dtype.itemsize,
        n_support=int(np.sum(sizes)),
        gathered_itemsize=gathered_dtype.itemsize,
        time_chunks=data.chunks[0],
        batch_volumes=batch_volumes,
    )
    parts, counts = [], []
    for where in np.ndindex(*grid):
        sub = data.blocks[(slice(None), *where)]
        size = int(sizes[where])
        block_maps: MapsBlock = maps_blocks.item(where)
        if size == 0:  # no support voxel here: only the count, in the same (T, K + 1) layout
            counts.append(
                sub.map_blocks(
                    _count_block, n_maps, drop_axis=(2, 3), chunks=(sub.chunks[0], (n_maps + 1,))
                )
            )
            continue
        if reader is not None and reader.sequential and fused:
            parts.append(_read_products(reader, where, block_maps, plan, n_maps))
            continue
        if reader is not None and reader.sequential:
            gathered = _paced_gathered(reader, sub, where, block_maps, size, gathered_dtype)
        elif reader is not None:
            gathered = _read_gathered(reader, sub, where, block_maps, size, gathered_dtype)
        else:
            # 4D out, (t, 1, 1, S + 1): dropping axes would make Dask copy every read chunk
            # (its concatenation of the dropped axes copies even a single block)
            gathered = sub.map_blocks(
                _gather_block,
                block_maps,
                chunks=(sub.chunks[0], (1,), (1,), (size + 1,)),
                dtype=gathered_dtype,
                meta=np.empty((0, 0, 0, 0), dtype=gathered_dtype),
            )
        parts.append(_batched_products(gathered, block_maps, plan, n_maps))
    if parts:  # the count-only parts follow the products' batches
        counts = [part.rechunk(parts[0].chunks) for part in counts]
    parts += counts
    return combine_partials(NORMAL_EQUATIONS, parts, split_every=split_every)


def _gather_block(block: np.ndarray, maps: MapsBlock) -> np.ndarray:
    gathered = gather_support(block, maps)
    return gathered.reshape(gathered.shape[0], 1, 1, -1)


def _read_gathered(
    reader: ChunkSource,
    sub: da.Array,
    where: tuple[int, ...],
    maps: MapsBlock,
    size: int,
    dtype: np.dtype,
) -> da.Array:
    """The gathered blocks of ``sub`` (the spatial block ``where`` of the reader's array), each
    read and gathered by one task."""
    name = f"read-gather-{tokenize(reader, where, maps)}"
    reader_key = f"chunk-reader-{tokenize(reader)}"
    # one reader object for all threads
    layer: dict[Any, Any] = {reader_key: data_node(reader_key, reader)}
    reader_ref = ref(reader_key)
    maps_arg = graph_input(maps)
    for i in range(len(sub.chunks[0])):
        key = (name, i, 0, 0, 0)
        layer[key] = task(key, _read_gather, reader_ref, (i, *where), maps_arg)
    return task_array(name, layer, (sub.chunks[0], (1,), (1,), (size + 1,)), dtype)


def _read_gather(reader: ChunkSource, where: tuple[int, ...], maps: MapsBlock) -> np.ndarray:
    return _gather_block(reader.read_chunk(where), maps)


def _paced_gathered(
    reader: ChunkSource,
    sub: da.Array,
    where: tuple[int, ...],
    maps: MapsBlock,
    size: int,
    dtype: np.dtype,
) -> da.Array:
    """The gathered blocks of ``sub`` from a sequential reader, each chunk read in order and
    gathered by a task of its own, the reads paced by the gathers
    (:func:`~daskmasker.compute.graph.paced_reads`): one thread computing a ``.nii.gz`` then
    holds a few chunks, not the whole image a plain chain of reads held."""
    name = f"paced-gather-{tokenize(reader, where, maps)}"
    layer = paced_reads(
        name,
        reader,
        len(sub.chunks[0]),
        _gather_block,
        graph_input(maps),
        where=where,
        tail=(0, 0, 0),
    )
    return task_array(name, layer, (sub.chunks[0], (1,), (1,), (size + 1,)), dtype)


def _read_products(
    reader: ChunkSource, where: tuple[int, ...], maps: Any, plan: ExtractionPlan, n_maps: int
) -> da.Array:
    """``[XᵀM, count]`` of ``sub`` from a sequential reader (a ``.nii.gz``, on a cluster): one
    task per product batch reads, gathers and multiplies its chunks, each batch after the
    previous one.

    The chain keeps an image's stream on one worker and in order.  Each task of a chain waits
    for a scheduler round trip, so a batch per task (3 tasks for 200 volumes instead of 29 reads
    and 3 products) saves most of them.
    """
    name = f"read-products-{tokenize(reader, where, maps, plan.batches)}"
    maps_arg = graph_input(maps)
    layer = {}
    for b, batch in enumerate(plan.batches):
        key = (name, b, 0)
        after = (ref((name, b - 1, 0)),) if b else ()
        positions = [(i, *where) for i in batch]
        widths = _widths(plan, b)
        # the reader (a path and a header) travels in each task: the first one is ready at once
        layer[key] = task(key, _read_batch_products, reader, positions, maps_arg, widths, *after)
    return task_array(name, layer, (plan.batch_sizes, (n_maps + 1,)), np.float64)


def _read_batch_products(
    reader: ChunkSource,
    positions: list,
    maps: MapsBlock,
    widths: tuple[int, int],
    *after: Any,
) -> np.ndarray:
    del after  # the previous batch: only an ordering
    parts = [_read_gather(reader, where, maps) for where in positions]
    return NORMAL_EQUATIONS.chunk(parts, maps, widths)


def _count_block(block: np.ndarray, n_maps: int) -> np.ndarray:
    out = np.zeros((block.shape[0], n_maps + 1))
    out[:, -1] = count_nonfinite(block.reshape(block.shape[0], -1))
    return out
