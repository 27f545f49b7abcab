"""Maps regression by partial normal equations: chunk → combine → finalize.

For every volume ``x`` (a vector over voxels) nilearn solves ``min ||M b - x||`` with
``scipy.linalg.lstsq`` over the voxels of the maps' support, where ``M`` (voxels × K) holds the
maps.  The minimum-norm solution is ``b = pinv(M) x = pinv(MᵀM) Mᵀx``, so the work splits the way
flox splits a reduction:

* **chunk** — each spatial block of voxels yields its partial ``XᵀM`` (T × K, accumulated in
  float64 whatever the input dtype) and, once per fit, its partial Gram matrix ``MᵀM`` (K × K);
* **combine** — the partials are summed across spatial blocks with Dask's tree reduction;
* **finalize** — one minimum-norm solve with the reduced Gram matrix (:class:`GramSolver`),
  reproducing ``gelsd``'s rank cutoff.

Only the voxels of the support enter the products: a block is compacted once, at fit, into the flat
indices of its support voxels and the matching rows of ``M`` (:class:`MapsBlock`).  The graph then
has two stages per spatial block:

1. **gather** — each chunk of volumes as read keeps only its support voxels (a fifth of the
   field of view for a brain atlas), in its own precision; non-finite values become 0 (as nilearn
   does) and are counted over the whole chunk in the same task, so the caller can warn;
2. **products** — consecutive gathered chunks are grouped into batches of up to
   ``daskmasker.gemm-max-volumes`` volumes and ``daskmasker.gemm-bytes`` gathered (planned by
   :func:`~daskmasker.compute.plan.plan_extraction`) and each batch is multiplied by ``M`` in
   float64, a slab of support voxels at a time (:func:`support_products`).  A batch reads ``M``
   (tens of MB) once instead of once per small read chunk, whose product is bound by streaming
   ``M`` from memory.  The slabs are cast to float64 in a cache-sized buffer, so a batch is never
   concatenated or cast whole.  The batches are plain tasks on lists of chunks, not a rechunk,
   which would concatenate them.

The graph that strings these kernels together is :mod:`daskmasker.compute.projection`; a reader of
the source's chunks (see :func:`~daskmasker.compute.projection.project`) fuses the stages: a Zarr
chunk is decoded and gathered by one task; a ``.nii.gz`` on a cluster is read, gathered and
multiplied by one task per batch, each after the previous one.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from daskmasker import config
from daskmasker.compute.dtypes import compact_dtype
from daskmasker.compute.maps import is_sparse
from daskmasker.compute.reduction import Reduction, sum_stacked
from daskmasker.compute.sparse_maps import SparseMaps

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController


@dataclass(frozen=True, eq=False)
class MapsBlock:
    """The maps restricted to the support voxels of one spatial block.

    Attributes
    ----------
    index : ndarray of int64
        Flat (C-order) indices of the support voxels within the block.
    rows : ndarray of float64, shape (len(index), K), or a scipy.sparse CSR array
        The maps' values at those voxels (any memory order); CSR for sparse atlases (see
        :func:`compact_maps`), which :func:`support_products` multiplies at a cost of
        non-zeros × volumes.
    """

    index: np.ndarray
    rows: np.ndarray
    token: str = field(default_factory=lambda: uuid.uuid4().hex, repr=False)

    def __dask_tokenize__(self) -> str:
        # graphs refer to the block by identity: hashing ~100 MB of maps per graph is wasted work
        return self.token

    @property
    def size(self) -> int:
        """Number of support voxels."""
        return int(self.index.size)


def compact_maps(
    maps: np.ndarray | SparseMaps, support: np.ndarray | None = None, kept: np.ndarray | None = None
) -> MapsBlock:
    """Compact a block of maps to its support voxels.

    Parameters
    ----------
    maps : ndarray, shape (K, *block_shape)
        Maps in daskmasker order (map first, then z, y, x).
    support : bool ndarray of shape block_shape, optional
        Voxels to keep; defaults to the union of the (kept) maps' non-zero voxels.
    kept : ndarray of int, optional
        The maps to keep (all by default); selected after compaction, so the full maps are never
        copied.

    Returns
    -------
    MapsBlock
    """
    if is_sparse(maps):
        return _compact_sparse(maps, support, kept)
    flat = maps.reshape(maps.shape[0], -1)
    if support is None:
        chosen = flat if kept is None else flat[kept]
        keep = np.zeros(flat.shape[1], dtype=bool)
        for row in chosen:
            keep |= row != 0
    else:
        keep = np.asarray(support, dtype=bool).reshape(-1)
    index = np.flatnonzero(keep)
    chosen = range(flat.shape[0]) if kept is None else np.asarray(kept)
    # (K, S) filled one map at a time: no temporary of the maps' size; ``rows`` is its
    # transpose (Fortran order), which BLAS reads without a copy
    columns = np.empty((len(chosen), index.size), dtype=np.float64)
    for j, k in enumerate(chosen):
        columns[j] = np.take(flat[k], index)  # 8× faster than flat[k, index]
    return MapsBlock(index=index, rows=columns.T)


def _compact_sparse(
    maps: SparseMaps, support: np.ndarray | None, kept: np.ndarray | None
) -> MapsBlock:
    """:func:`compact_maps` of :class:`~daskmasker.compute.sparse_maps.SparseMaps`: CSR rows when
    sparse enough (``daskmasker.sparse-products-density``), else dense rows as for dense maps."""
    chosen = np.arange(len(maps)) if kept is None else np.asarray(kept)
    if support is None:
        support = maps.nonzero_voxels(chosen)
    index = np.flatnonzero(np.asarray(support, dtype=bool).reshape(-1))
    rows = maps.voxel_rows(index, chosen)
    density = rows.nnz / max(1, rows.shape[0] * rows.shape[1])
    if density > float(config.get("sparse-products-density")):
        rows = rows.toarray(order="F")
    return MapsBlock(index=index, rows=rows)


def gram_matrix(maps: MapsBlock) -> np.ndarray:
    """``MᵀM`` (K × K, float64) of compacted maps; from sparse products when ``rows`` is sparse
    (cost: the non-zeros' overlaps, not voxels × K²)."""
    gram = maps.rows.T @ maps.rows
    return gram.toarray() if sparse.issparse(gram) else np.asarray(gram)


def split_maps(
    whole: MapsBlock, shape: tuple[int, ...], spatial_chunks: tuple[tuple[int, ...], ...]
) -> np.ndarray:
    """Split a compacted whole-grid :class:`MapsBlock` along a spatial chunking.

    Parameters
    ----------
    whole : MapsBlock
        The maps compacted over the whole grid of shape ``shape`` (z, y, x).
    spatial_chunks : tuple of tuples
        Dask chunks of the z, y and x axes.

    Returns
    -------
    ndarray of MapsBlock, one per spatial chunk (the same object when there is one chunk).
    """
    grid = tuple(len(c) for c in spatial_chunks)
    out = np.empty(grid, dtype=object)
    if grid == (1,) * len(grid):
        out[(0,) * len(grid)] = whole
        return out
    coords = np.unravel_index(whole.index, shape)
    bounds = [np.cumsum((0, *c)) for c in spatial_chunks]
    which = [np.searchsorted(b, c, side="right") - 1 for b, c in zip(bounds, coords, strict=True)]
    block_of = np.ravel_multi_index(which, grid)
    order = np.argsort(block_of, kind="stable")
    starts = np.searchsorted(block_of[order], np.arange(int(np.prod(grid)) + 1))
    for flat_block, where in enumerate(np.ndindex(*grid)):
        sel = order[starts[flat_block] : starts[flat_block + 1]]
        local = tuple(c[sel] - b[i] for c, b, i in zip(coords, bounds, where, strict=True))
        sizes = tuple(c[i] for c, i in zip(spatial_chunks, where, strict=True))
        index = np.ravel_multi_index(local, sizes) if sel.size else np.zeros(0, np.int64)
        out[where] = MapsBlock(index=index, rows=whole.rows[sel])
    return out


def count_nonfinite(flat: np.ndarray) -> np.ndarray:
    """Per row of a ``(T, V)`` array, the number of non-finite values (float64)."""
    if flat.dtype.kind not in "fc" or flat.shape[1] == 0:
        return np.zeros(flat.shape[0])
    # a finite sum proves every term finite; only a failed check pays for the exact count
    if np.isfinite(np.add.reduce(flat, axis=1)).all():
        return np.zeros(flat.shape[0])
    return (~np.isfinite(flat)).sum(axis=1).astype(np.float64)


def gather_support(block: np.ndarray, maps: MapsBlock) -> np.ndarray:
    """The support voxels of a ``(T, *block_shape)`` block, and its non-finite count.

    Returns
    -------
    ndarray, shape (T, S + 1)
        Columns ``:S`` hold the support voxels (non-finite values set to 0, as nilearn does);
        the last column counts the non-finite values of each volume over the whole block (all
        voxels, as nilearn's check does).  One task does both while the block is in cache, and
        Dask fuses it with the read of the block.
    """
    flat = block.reshape(block.shape[0], -1)
    out = np.empty((flat.shape[0], maps.size + 1), dtype=compact_dtype(flat.dtype))
    values = out[:, :-1]
    if flat.dtype == out.dtype:  # the indices are valid: "clip" spares numpy a buffer
        np.take(flat, maps.index, axis=1, out=values, mode="clip")
    else:
        values[...] = np.take(flat, maps.index, axis=1)
    counts = count_nonfinite(flat)
    out[:, -1] = counts
    if counts.any():
        values[~np.isfinite(values)] = 0
    return out


def support_products(
    parts: list[np.ndarray], maps: MapsBlock, slab_widths: tuple[int, int]
) -> np.ndarray:
    """``[X_support @ M, count]`` for consecutive gathered chunks ``(t_i, ..., S + 1)``, in
    float64.

    The chunks are read a slab of support voxels at a time, cast to float64 into one small
    buffer and multiplied by the matching rows of ``M``: the batch is never concatenated or
    cast whole.  BLAS runs on one thread here: the tasks already occupy the cores, and OpenBLAS
    threads competing with them (and spinning) made the products several times slower.

    Parameters
    ----------
    parts : list of ndarray
        Gathered chunks (:func:`gather_support`), in time order.
    maps : MapsBlock
    slab_widths : (int, int)
        Support voxels per slab with dense rows and with CSR rows (the plan's ``slab_widths``
        and ``sparse_slab_widths`` of this batch, see
        :func:`~daskmasker.compute.plan.plan_extraction`).
    """
    parts = [part.reshape(part.shape[0], -1) for part in parts]
    n_volumes = sum(part.shape[0] for part in parts)
    n_support, n_maps = maps.rows.shape
    if sparse.issparse(maps.rows):
        return _sparse_products(parts, maps, n_volumes, slab_widths[1])
    out = np.zeros((n_volumes, n_maps + 1))
    width = slab_widths[0]  # float64 support values cast per step: a slab that fits in L2
    slab = np.empty((n_volumes, min(width, n_support)))
    with one_blas_thread():
        for start in range(0, n_support, width):
            stop = min(start + width, n_support)
            row = 0
            for part in parts:
                slab[row : row + part.shape[0], : stop - start] = part[:, start:stop]
                row += part.shape[0]
            out[:, :-1] += slab[:, : stop - start] @ maps.rows[start:stop]
    out[:, -1] = np.concatenate([part[:, -1] for part in parts])
    return out


def _sparse_products(
    parts: list[np.ndarray], maps: MapsBlock, n_volumes: int, width: int
) -> np.ndarray:
    """:func:`support_products` with CSR rows: cost non-zeros × volumes.

    A slab of support voxels is copied transposed, ``(voxels, volumes)`` in float64, so the
    sparse kernel adds whole contiguous rows (the volumes of a voxel) per non-zero.
    """
    n_support, n_maps = maps.rows.shape
    acc = np.zeros((n_maps, n_volumes))
    for start in range(0, n_support, width):
        stop = min(start + width, n_support)
        block = maps.rows[start:stop]
        if block.nnz == 0:  # type: ignore[attr-defined]  # CSR rows
            continue
        slab = np.empty((stop - start, n_volumes))
        row = 0
        for part in parts:
            slab[:, row : row + part.shape[0]] = part[:, start:stop].T
            row += part.shape[0]
        acc += block.T @ slab
    out = np.empty((n_volumes, n_maps + 1))
    out[:, :-1] = acc.T
    out[:, -1] = np.concatenate([part[:, -1] for part in parts])
    return out


@functools.cache
def _blas_controller() -> ThreadpoolController:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


# re-entrant: a block's exit can run in a finalizer (an abandoned generator collected by the
# garbage collector) on a thread that already holds the lock
_ONE_THREAD_LOCK = threading.RLock()
_ONE_THREAD_IDLE = threading.Condition(_ONE_THREAD_LOCK)
_one_thread_users = 0
_one_thread_limit = None
_one_thread_last_exit = 0.0
_one_thread_releaser: threading.Thread | None = None
# how long BLAS stays on one thread after the last block ends: tasks of one computation follow
# each other within milliseconds, and lifting the limit between them wakes OpenBLAS's threads,
# which spin for work on a busy machine (tangent connectivity of 200 runs, 2 cores at load 7:
# 37 s with the limit lifted between tasks, 2.5 s held: 2026-12-07-connectivity.md in
# benchmarks/results)
RELEASE_DELAY = 1.0


def _release_when_idle() -> None:
    """The releaser thread: lifts the limit once no block has run for ``RELEASE_DELAY``."""
    global _one_thread_limit
    with _ONE_THREAD_IDLE:
        while True:
            if _one_thread_users == 0 and _one_thread_limit is not None:
                left = _one_thread_last_exit + RELEASE_DELAY - time.monotonic()
                if left <= 0:
                    _one_thread_limit.restore_original_limits()
                    _one_thread_limit = None
                    continue
                _ONE_THREAD_IDLE.wait(left)
            else:
                _ONE_THREAD_IDLE.wait()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread inside the block, safe when several threads enter it at once.

    threadpoolctl's limits are process-wide: each block saving and restoring them on its own,
    two overlapping blocks could leave BLAS limited to one thread for good (or restore its
    threads while the other still runs).  The first thread in sets the limit; a releaser thread
    lifts it ``RELEASE_DELAY`` seconds after the last block ends unless another block has
    started by then, so that the tasks of one computation run under one limit instead of waking
    BLAS's threads between every two of them.  The exit starts no thread (it may run in a
    finalizer); the releaser is started by the first block of the process (and again in a
    forked child, where it does not exist).
    """
    global _one_thread_users, _one_thread_limit, _one_thread_last_exit, _one_thread_releaser
    with _ONE_THREAD_LOCK:
        if _one_thread_releaser is None or not _one_thread_releaser.is_alive():
            _one_thread_releaser = threading.Thread(
                target=_release_when_idle, name="daskmasker-blas-release", daemon=True
            )
            _one_thread_releaser.start()
        if _one_thread_limit is None:
            _one_thread_limit = _blas_controller().limit(limits=1, user_api="blas")
        _one_thread_users += 1
    try:
        yield
    finally:
        with _ONE_THREAD_LOCK:
            _one_thread_users -= 1
            _one_thread_last_exit = time.monotonic()
            if _one_thread_users == 0:
                _ONE_THREAD_IDLE.notify()


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
        # one BLAS thread: on a busy machine OpenBLAS's threads spin against each other (1 022
        # maps: 3.9-4.9 s with its threads, 0.6-0.8 s on one, 2 cores shared by other work)
        with one_blas_thread():
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


def region_signals(products: np.ndarray, operator: np.ndarray) -> tuple[np.ndarray, float]:
    """The region signals ``(T, K)`` and the total non-finite count from the combined
    ``[XᵀM, count]`` products: the solve with the Gram matrix's ``operator``
    (:attr:`GramSolver.operator`)."""
    return products[:, :-1] @ operator, float(products[:, -1].sum())


NORMAL_EQUATIONS = Reduction(
    "normal-equations",
    chunk=support_products,
    combine=sum_stacked,
    finalize=region_signals,
)
"""The maps regression as a reduction: per product batch and spatial block ``[XᵀM, count]``
(:func:`support_products`), summed over the spatial blocks, solved with the Gram matrix
(:func:`region_signals`)."""
