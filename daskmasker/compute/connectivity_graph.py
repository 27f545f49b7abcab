"""Lazy connectivity of many runs: per-run matrices mapped over chunks of runs, the group means
as reductions (:mod:`daskmasker.compute.connectivity` holds the numpy steps).

- The runs' matrices: one task per chunk of runs (whole runs, all their frames and regions),
  each run cut to its kept frames (``n_frames``; the padding beyond them is never read).  Runs
  per task and whether tangent keeps the covariances are planned by
  :func:`~daskmasker.compute.plan.plan_connectivity`.
- ``mean`` (nilearn's ``mean_``) of the kinds other than tangent: :data:`GROUP_MEAN`, per chunk
  the sum of its matrices, a tree sum, the mean made symmetric.
- Tangent: nilearn's geometric mean, its 30 descent steps unrolled in the graph.  Its start
  (:data:`GEOMETRIC_MEAN_START`: the arithmetic mean of the covariances, checked) and each step
  (:data:`DESCENT_STEP`: per chunk Σ logm(G^-½ C G^-½), a tree sum, one
  :func:`~daskmasker.compute.connectivity.descent_step` on the total and the previous state)
  are reductions in flox's shape, built by :func:`~daskmasker.compute.reduction.reduce_blocks`
  (the state passed to the chunks and to ``finalize`` as a ``Delayed``).  Once the descent has
  converged the later steps pass their state through and cost nothing.  Only
  ``n_regions²`` partial sums travel between tasks, never a chunk's matrices.

Between the steps the covariances are either kept (by the scheduler, or on the workers that
computed them) or recomputed from the signals for every step
(:func:`~daskmasker.compute.graph.reread`: their chunks are read again, so memory stays bounded
by a few chunks of runs whatever the number of runs).  They are kept when they fit
``daskmasker.connectivity.keep-bytes``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, ParamSpec, TypeVar

import dask.array as da
import numpy as np
from dask import delayed
from dask.base import tokenize
from dask.delayed import Delayed

from daskmasker.compute import connectivity as conn
from daskmasker.compute.graph import reread
from daskmasker.compute.plan import plan_connectivity
from daskmasker.compute.reduction import Reduction, reduce_blocks, sum_stacked
from daskmasker.compute.regression import one_blas_thread


class LazyConnectivity(NamedTuple):
    """The lazy results: per-run matrices (or vectors), the group mean, tangent's whitening."""

    matrices: da.Array
    mean: da.Array
    whitening: da.Array | None


P = ParamSpec("P")
R = TypeVar("R")


def _one_thread(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` run with one BLAS thread: its matrices are small (a region count squared),
    and the tasks of several chunks run at once; OpenBLAS's threads on such small eigen-problems
    only contend for the cores (benchmarks/results/2026-12-07-connectivity.md)."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with one_blas_thread():
            return function(*args, **kwargs)

    return run


@_one_thread
def _block_matrices(
    signals: np.ndarray, n_frames: np.ndarray, names: np.ndarray, kind: str, estimator: Callable
) -> np.ndarray:
    """One chunk of runs (run, time, region) -> their matrices (run, region, region)."""
    n = signals.shape[2]
    out = np.empty((signals.shape[0], n, n))
    for i, (x, frames, name) in enumerate(zip(signals, n_frames, names, strict=True)):
        out[i] = conn.run_matrix(_kept(x, int(frames), name), kind, estimator)
    return out


def _vectors(matrices: np.ndarray, discard_diagonal: bool) -> np.ndarray:
    return conn.sym_matrix_to_vec(matrices, discard_diagonal)


def _kept(x: np.ndarray, n: int, name: object) -> np.ndarray:
    """A run's first ``n`` frames, checked: at least 2, no missing value among them."""
    if not 2 <= n <= x.shape[0]:
        raise ValueError(
            f"run {name!r} has n_frames={n} kept frames (of {x.shape[0]} time points): "
            "a connectivity matrix needs at least 2"
        )
    kept = x[:n]
    if np.isnan(kept).any():
        bad = np.nonzero(np.isnan(kept).any(axis=0))[0].tolist()
        raise ValueError(
            f"run {name!r} has missing values (NaN) in its {n} kept frames, in regions at "
            f"positions {bad}: every region needs a signal"
        )
    return kept


@_one_thread
def _spd_sum(covariances: np.ndarray, names: np.ndarray) -> np.ndarray:
    conn.check_spd(covariances, names)
    return covariances.sum(axis=0)


def _matrix_sum(matrices: np.ndarray) -> np.ndarray:
    return matrices.sum(axis=0)


def _symmetric_mean(total: np.ndarray, n_runs: int) -> np.ndarray:
    mean = total / n_runs
    return (mean + mean.T) * 0.5


def _initial(total: np.ndarray, n_runs: int) -> conn.DescentState:
    return conn.initial_state(total / n_runs)


@_one_thread
def _descend(log_sum: np.ndarray, state: conn.DescentState, n_runs: int) -> conn.DescentState:
    return conn.descent_step(state, log_sum, n_runs)


GROUP_MEAN = Reduction(
    "connectivity-mean", chunk=_matrix_sum, combine=sum_stacked, finalize=_symmetric_mean
)
"""nilearn's ``mean_`` of the kinds other than tangent: per chunk of runs the sum of their
matrices, summed, divided by the runs (``finalize(total, n_runs)``) and made symmetric."""

GEOMETRIC_MEAN_START = Reduction(
    "gmean-start", chunk=_spd_sum, combine=sum_stacked, finalize=_initial
)
"""The descent's start: per chunk its covariances checked (symmetric positive definite, the
culprit named: ``chunk(covariances, names)``) and summed; summed; the state at their arithmetic
mean (``finalize(total, n_runs)``)."""

DESCENT_STEP = Reduction(
    "gmean-step",
    chunk=_one_thread(conn.whitened_log_sum),
    combine=sum_stacked,
    finalize=_descend,
)
"""One step of the geometric mean's descent: per chunk Σ logm(G^-½ C G^-½)
(``chunk(covariances, state)``), summed, the next state (``finalize(total, state, n_runs)``)."""

SPLIT_EVERY = 8
"""Fan-in of tangent's sums (one level up to 8 chunks of runs)."""


@_one_thread
def _tangent_block(
    covariances: np.ndarray,
    final: tuple[np.ndarray, np.ndarray],
    vectorize: bool,
    discard_diagonal: bool,
) -> np.ndarray:
    vectors = conn.tangent_vectors(covariances, final[1])
    return conn.sym_matrix_to_vec(vectors, discard_diagonal) if vectorize else vectors


def _final(state: conn.DescentState) -> tuple[np.ndarray, np.ndarray]:
    return state.gmean, conn.whitening(state.gmean)


def lazy_connectivity(
    signals: da.Array,
    n_frames: np.ndarray,
    names: np.ndarray,
    kind: str = "correlation",
    estimator: Callable = conn.ledoit_wolf,
    vectorize: bool = False,
    discard_diagonal: bool = False,
    chunk_runs: int | None = None,
) -> LazyConnectivity:
    """nilearn's ``ConnectivityMeasure(kind).fit_transform`` of many runs, as Dask arrays.

    Parameters
    ----------
    signals : dask array, shape (run, time, region)
        Each run's kept frames first, anything (NaN) after them.
    n_frames : ndarray of int, shape (run,)
        Each run's kept frames.
    names : ndarray, shape (run,)
        The runs' names, for errors.
    kind : str
        One of nilearn's kinds.
    estimator : callable
        Series -> covariance (default: Ledoit-Wolf, nilearn's default).
    vectorize, discard_diagonal : bool
        nilearn's: the lower triangles (diagonal / √2, or left out) rather than matrices.
    chunk_runs : int, optional
        Runs per task, instead of the plan's
        (:func:`~daskmasker.compute.plan.plan_connectivity`).

    Returns
    -------
    LazyConnectivity
        ``matrices`` (run, region, region) or (run, feature), ``mean`` (region, region)
        (nilearn's ``mean_``) and, for tangent, ``whitening`` (nilearn's ``whitening_``).
    """
    conn.check_kind(kind)
    n_runs, n_time, n_regions = (int(s) for s in signals.shape)
    n_frames = np.asarray(n_frames)
    if n_frames.shape != (n_runs,) or len(names) != n_runs:
        raise ValueError(
            f"n_frames ({n_frames.shape}) and names ({len(names)}) need one value per run "
            f"({n_runs} runs)"
        )
    if n_runs == 0:
        raise ValueError("no run to compute connectivity of")
    if kind == "tangent" and n_runs < 2:
        raise ValueError(
            "Tangent space parametrization can only be applied to a group of subjects, as it "
            f"returns deviations to the mean. You provided {n_runs} run"
        )
    plan = plan_connectivity(n_runs, n_time, n_regions, chunk_runs=chunk_runs)
    signals = signals.rechunk({0: plan.run_chunks, 1: -1, 2: -1})
    frames = da.from_array(n_frames.astype(np.int64), chunks=(signals.chunks[0],))
    labels = np.empty(n_runs, dtype=object)
    labels[:] = np.asarray(names).tolist()
    labels = da.from_array(labels, chunks=(signals.chunks[0],))
    token = tokenize(signals.name, n_frames, kind, estimator, vectorize, discard_diagonal)
    matrices = da.blockwise(
        _block_matrices,
        "rij",
        signals,
        "rtj",
        frames,
        "r",
        labels,
        "r",
        kind=kind,
        estimator=estimator,
        new_axes={"i": n_regions},
        concatenate=True,
        dtype=np.float64,
        name=f"connectivity-{kind.replace(' ', '-')}-{token}",
        meta=np.empty((0, 0, 0)),
    )
    if kind == "tangent":
        keep = plan.keep_covariances
        return _tangent(matrices, labels, n_runs, keep, vectorize, discard_diagonal, token)
    total = reduce_blocks(
        GROUP_MEAN, matrices, partial_shape=(n_regions, n_regions), finalize_args=(n_runs,)
    )
    mean = da.from_delayed(total, shape=(n_regions, n_regions), dtype=np.float64)
    if vectorize:
        matrices = matrices.map_blocks(
            _vectors,
            discard_diagonal,
            chunks=(matrices.chunks[0], (_n_features(n_regions, discard_diagonal),)),
            drop_axis=2,
            dtype=np.float64,
        )
    return LazyConnectivity(matrices, mean, None)


def _n_features(n: int, discard_diagonal: bool) -> int:
    return n * (n - 1) // 2 if discard_diagonal else n * (n + 1) // 2


def _tangent(
    covs: da.Array,
    labels: da.Array,
    n_runs: int,
    keep: bool,
    vectorize: bool,
    discard_diagonal: bool,
    token: str,
) -> LazyConnectivity:
    """The geometric mean's unrolled descent (its start and each step a reduction over the
    chunks of runs), then the runs' whitened logarithms."""
    n = covs.shape[-1]

    def source(seed: str) -> da.Array:
        return covs if keep else reread(covs, f"{seed}-{token}")

    def over_runs(reduction: Reduction, seed: str, *args: Any, finalize_args: tuple) -> Delayed:
        return reduce_blocks(
            reduction,
            source(seed),
            *args,
            partial_shape=(n, n),
            finalize_args=finalize_args,
            split_every=SPLIT_EVERY,
        )

    state = over_runs(GEOMETRIC_MEAN_START, "gmean-start", labels, finalize_args=(n_runs,))
    for k in range(conn.MAX_ITER):
        state = over_runs(DESCENT_STEP, f"gmean-{k}", state, finalize_args=(state, n_runs))
    result = delayed(_final, pure=True)(state, dask_key_name=f"gmean-final-{token}")
    mean, whitening = (da.from_delayed(result[i], shape=(n, n), dtype=np.float64) for i in range(2))
    tangent = source("tangent")
    if vectorize:
        chunks, drop = (tangent.chunks[0], (_n_features(n, discard_diagonal),)), [2]
    else:
        chunks, drop = tangent.chunks, []
    vectors = da.map_blocks(
        _tangent_block,
        tangent,
        result,
        vectorize,
        discard_diagonal,
        chunks=chunks,
        drop_axis=drop,
        dtype=np.float64,
    )
    return LazyConnectivity(vectors, mean, whitening)
