"""nilearn's ``ConnectivityMeasure`` (0.14.1) in numpy: one run's matrix, and the tangent
space's geometric mean cut into the steps of a reduction.

Per run (:func:`run_matrix`), on the run's kept frames only:

- ``covariance``: the Ledoit-Wolf shrunk covariance (:func:`ledoit_wolf`, exactly
  scikit-learn's ``LedoitWolf(store_precision=False).fit(x).covariance_``: centred, shrinkage
  from the centred series);
- ``correlation``: the same covariance of the z-scored series (nilearn's
  ``standardize_signal(x, standardize="zscore_sample")``), scaled to a unit diagonal;
- ``precision``: its inverse; ``partial correlation``: minus the precision scaled to a unit
  diagonal, with ones on the diagonal;
- ``tangent``: the covariance, to be whitened by the group's geometric mean
  (:func:`tangent_vectors`).

The geometric mean (nilearn's ``_geometric_mean``, Fletcher & Joshi's gradient descent) needs
every covariance at every step; it is split so that no step holds more than a chunk of runs:
:func:`initial_state` from the arithmetic mean (a sum over chunks), then per iteration
:func:`whitened_log_sum` per chunk (sums add up over chunks) and :func:`descent_step` on the
total; :func:`geometric_mean` strings them together in memory (the reference the lazy version,
:mod:`daskmasker.compute.connectivity_graph`, is tested against).  Eigen-decompositions are
numpy's batched ``eigh`` (nilearn calls scipy's per matrix: the same within ~1e-14).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

KINDS = ("correlation", "partial correlation", "tangent", "covariance", "precision")
ESTIMATORS = ("ledoit_wolf", "empirical")
MAX_ITER = 30  # nilearn's ConnectivityMeasure.fit calls _geometric_mean(max_iter=30, tol=1e-7)
TOL = 1e-7


def check_kind(kind: str) -> str:
    """``kind`` if it is one of nilearn's, else a ``ValueError`` listing them."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    return kind


def ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """The Ledoit-Wolf shrunk covariance of ``x`` (samples × features), as scikit-learn's
    ``LedoitWolf().fit(x).covariance_``: the series are centred, the shrinkage is
    ``min(β, δ) / δ`` from the centred series, and the result is
    ``(1 - shrinkage) · S + shrinkage · trace(S) / p · I`` with ``S = xᵀx / n``.

    Examples
    --------
    >>> x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0]])
    >>> ledoit_wolf(x).round(4)
    array([[0.9516, 0.2393],
           [0.2393, 1.2707]])
    """
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0)
    n_samples, n_features = x.shape
    if n_features == 1:
        return np.atleast_2d((x**2).mean())
    x2 = x**2
    trace_terms = np.sum(x2, axis=0) / n_samples
    mu = np.sum(trace_terms) / n_features
    beta_ = np.sum(np.dot(x2.T, x2))
    gram = np.dot(x.T, x)
    delta_ = np.sum(gram**2) / n_samples**2
    beta = 1.0 / (n_features * n_samples) * (beta_ / n_samples - delta_)
    delta = (delta_ - 2.0 * mu * trace_terms.sum() + n_features * mu**2) / n_features
    beta = min(beta, delta)
    shrinkage = 0 if beta == 0 else beta / delta
    emp_cov = gram / n_samples
    shrunk = (1.0 - shrinkage) * emp_cov
    shrunk.flat[:: n_features + 1] += shrinkage * (np.sum(np.trace(emp_cov)) / n_features)
    return shrunk


def empirical_covariance(x: np.ndarray) -> np.ndarray:
    """The maximum-likelihood covariance (scikit-learn's ``EmpiricalCovariance``): centred,
    divided by the number of samples."""
    return np.atleast_2d(np.cov(np.asarray(x, dtype=np.float64).T, bias=True))


ESTIMATOR_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ledoit_wolf": ledoit_wolf,
    "empirical": empirical_covariance,
}


def zscore(x: np.ndarray) -> np.ndarray:
    """nilearn's ``standardize_signal(x, detrend=False, standardize="zscore_sample")``: centred,
    divided by the sample standard deviation (ddof 1; 1 where it is below float64's eps); a
    single sample is returned as is."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 1:
        return x.copy()
    x = x - x.mean(axis=0)
    std = x.std(axis=0, ddof=1)
    std[std < np.finfo(np.float64).eps] = 1.0
    return x / std


def cov_to_corr(covariance: np.ndarray) -> np.ndarray:
    """nilearn's ``cov_to_corr``: scaled to a unit diagonal (exactly 1)."""
    diagonal = np.atleast_2d(1.0 / np.sqrt(np.diag(covariance)))
    correlation = covariance * diagonal * diagonal.T
    np.fill_diagonal(correlation, 1.0)
    return correlation


def prec_to_partial(precision: np.ndarray) -> np.ndarray:
    """nilearn's ``prec_to_partial``: minus the scaled precision, ones on the diagonal."""
    partial = -cov_to_corr(precision)
    np.fill_diagonal(partial, 1.0)
    return partial


def run_matrix(
    x: np.ndarray, kind: str, estimator: Callable[[np.ndarray], np.ndarray] = ledoit_wolf
) -> np.ndarray:
    """One run's connectivity matrix (``tangent``: its covariance, whitened later).

    Parameters
    ----------
    x : ndarray, shape (n_frames, n_regions)
        The run's kept frames only (no padding).
    kind : str
        One of :data:`KINDS`.
    estimator : callable
        Series -> covariance; default :func:`ledoit_wolf` (nilearn's default estimator).
    """
    if kind == "correlation":
        return cov_to_corr(estimator(zscore(x)))
    covariance = np.asarray(estimator(np.asarray(x, dtype=np.float64)), dtype=np.float64)
    if kind == "precision":
        return np.linalg.inv(covariance)
    if kind == "partial correlation":
        return prec_to_partial(np.linalg.inv(covariance))
    return covariance


def map_eigenvalues(function: Callable, symmetric: np.ndarray) -> np.ndarray:
    """``function`` of symmetric matrices through their eigenvalues (nilearn's
    ``_map_eigenvalues``), batched over leading axes."""
    values, vectors = np.linalg.eigh(symmetric)
    return _form_symmetric(function, values, vectors)


def _form_symmetric(function: Callable, values: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    return np.matmul(vectors * function(values)[..., None, :], np.swapaxes(vectors, -1, -2))


def check_spd(matrices: np.ndarray, names: Iterable[object]) -> None:
    """nilearn's check of the geometric mean's inputs: symmetric to 7 decimals (relative) and
    positive eigenvalues; the error names the run."""
    for matrix, name in zip(matrices, names, strict=True):
        symmetric = np.allclose(matrix, matrix.T, atol=0, rtol=1e-7)
        if not symmetric or not np.linalg.eigvalsh(matrix).min() > 0:
            raise ValueError(
                f"the covariance of run {name!r} is not symmetric positive definite "
                "(a constant or duplicated region?): the tangent space needs every run's"
            )


class DescentState(NamedTuple):
    """The geometric mean's iterate between steps (nilearn's loop variables)."""

    gmean: np.ndarray
    inv_sqrt: np.ndarray  # gmean^(-1/2), the whitening the next step's chunks apply
    step: float
    norm_old: float
    norm: float
    iterations: int
    done: bool


def initial_state(arithmetic_mean: np.ndarray) -> DescentState:
    """The descent's start: nilearn's ``init=None``, the arithmetic mean of the covariances."""
    gmean = np.asarray(arithmetic_mean, dtype=np.float64)
    return DescentState(gmean, _inv_sqrt(gmean), 1.0, math.inf, math.inf, 0, False)


def _inv_sqrt(gmean: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(gmean)
    return _form_symmetric(np.sqrt, 1.0 / values, vectors)


def whitened_log_sum(covariances: np.ndarray, state: DescentState) -> np.ndarray:
    """A chunk's part of a descent step: Σ logm(G^-½ C G^-½) over its covariances (zeros once
    the descent has stopped, so the later steps of an unrolled graph cost nothing)."""
    n = covariances.shape[-1]
    if state.done or covariances.shape[0] == 0:
        return np.zeros((n, n))
    whitened = np.matmul(np.matmul(state.inv_sqrt, covariances), state.inv_sqrt)
    return map_eigenvalues(np.log, whitened).sum(axis=0)


def descent_step(
    state: DescentState,
    log_sum: np.ndarray,
    n_runs: int,
    max_iter: int = MAX_ITER,
    tol: float | None = TOL,
) -> DescentState:
    """One step of nilearn's gradient descent from the summed logarithms of all runs.

    The mean logarithm is the gradient; the iterate moves along the geodesic by ``step``, the
    step halves when the gradient's norm grows, and the descent stops when that norm over the
    matrix size is below ``tol`` or after ``max_iter`` steps (with nilearn's warning).
    """
    if state.done:
        return state
    logs_mean = log_sum / n_runs
    if np.any(np.isnan(logs_mean)):
        raise FloatingPointError("Nan value after logarithm operation.")
    norm = float(np.linalg.norm(logs_mean))
    vals_gmean, vecs_gmean = np.linalg.eigh(state.gmean)
    vals_log, vecs_log = np.linalg.eigh(logs_mean)
    gmean_sqrt = _form_symmetric(np.sqrt, vals_gmean, vecs_gmean)
    gmean = gmean_sqrt @ _form_symmetric(np.exp, vals_log * state.step, vecs_log) @ gmean_sqrt
    step, norm_old = state.step, state.norm_old
    if norm < norm_old:
        norm_old = norm
    elif norm > norm_old:
        step = step / 2.0
        norm = norm_old
    iterations = state.iterations + 1
    converged = tol is not None and norm / gmean.size < tol
    done = converged or iterations >= max_iter
    if done and not converged and tol is not None:
        warnings.warn(
            f"Maximum number of iterations {max_iter} reached without getting to the "
            f"requested tolerance level {tol}.",
            stacklevel=2,
        )
    return DescentState(gmean, _inv_sqrt(gmean), step, norm_old, norm, iterations, done)


def whitening(gmean: np.ndarray) -> np.ndarray:
    """nilearn's ``whitening_``: the mean's inverse square root, from its own eigenvectors."""
    return map_eigenvalues(lambda v: 1.0 / np.sqrt(v), gmean)


def tangent_vectors(covariances: np.ndarray, whitening_: np.ndarray) -> np.ndarray:
    """The runs' tangent-space matrices: logm(W C W) for each covariance C."""
    return map_eigenvalues(np.log, np.matmul(np.matmul(whitening_, covariances), whitening_))


def geometric_mean(covariances: np.ndarray, names: Iterable[object] | None = None) -> np.ndarray:
    """nilearn's ``_geometric_mean(covariances, max_iter=30, tol=1e-7)`` in memory."""
    covariances = np.asarray(covariances, dtype=np.float64)
    check_spd(covariances, range(len(covariances)) if names is None else names)
    state = initial_state(covariances.mean(axis=0))
    while not state.done:
        state = descent_step(state, whitened_log_sum(covariances, state), len(covariances))
    return state.gmean


def sym_matrix_to_vec(symmetric: np.ndarray, discard_diagonal: bool = False) -> np.ndarray:
    """nilearn's ``sym_matrix_to_vec``: the lower triangle row by row, the diagonal divided by
    √2 (so the vector's norm is the matrix's), or left out with ``discard_diagonal``.

    Examples
    --------
    >>> sym_matrix_to_vec(np.array([[1.0, 2.0], [2.0, 3.0]])).round(4)
    array([0.7071, 2.    , 2.1213])
    >>> sym_matrix_to_vec(np.array([[1.0, 2.0], [2.0, 3.0]]), discard_diagonal=True)
    array([2.])
    """
    n = symmetric.shape[-1]
    if discard_diagonal:
        return symmetric[..., np.tril(np.ones((n, n), dtype=bool), k=-1)]
    scaling = np.ones((n, n))
    np.fill_diagonal(scaling, math.sqrt(2.0))
    lower = np.tril(np.ones((n, n), dtype=bool))
    return symmetric[..., lower] / scaling[lower]


def lower_pairs(n: int, discard_diagonal: bool) -> tuple[np.ndarray, np.ndarray]:
    """The (row, column) of each entry of :func:`sym_matrix_to_vec`'s vectors."""
    rows, columns = np.nonzero(
        np.tril(np.ones((n, n), dtype=bool), k=-1 if discard_diagonal else 0)
    )
    return rows, columns
