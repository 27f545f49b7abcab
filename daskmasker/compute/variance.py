"""High-variance confounds (nilearn's CompCor-like ``high_variance_confounds``): numpy and Dask.

nilearn detrends every voxel's series, keeps the voxels whose mean of squares is strictly above
its ``100 - percentile`` percentile, and returns the leading eigenvectors of ``X Xᵀ / T`` of
the kept (T × n_kept) series.  :func:`high_variance_confounds` does exactly that on a (T × V)
array; the other functions are the same computation cut into pieces that work on chunks of
volumes, for an out-of-core version:

1. per chunk of volumes, :func:`variance_partial_sums` (Σx, Σx², Σ r_t x in float64, with r the
   centred unit-norm ramp over all T volumes); the partial sums of all chunks add up;
2. :func:`detrended_variance` from the total, and :func:`select_high_variance` (nilearn's
   threshold and strict selection);
3. :func:`high_variance_components` on the selected voxels' (T × n_kept) series.

:func:`lazy_high_variance_confounds` strings these steps into a lazy Dask graph over chunks of
whole volumes: two passes (the partial sums, tree-summed; then the selected voxels, 2 % of the
image, gathered), the second waiting for the selection and reading its own copy of the chunks
(:func:`~daskmasker.compute.graph.reread`), so no chunk is held in memory between them.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
from dask import delayed
from scipy import linalg

from daskmasker.compute.clean import detrend_signals
from daskmasker.compute.graph import reread


def _ramp(n_scans: int) -> np.ndarray:
    """The centred, unit-norm linear ramp over ``n_scans`` volumes (nilearn's detrend regressor)."""
    ramp = np.arange(n_scans, dtype=np.float64)
    ramp -= ramp.mean()
    norm = np.sqrt((ramp**2).sum())
    return ramp / norm if not norm < np.finfo(np.float64).eps else ramp


def _float_copy(series: np.ndarray) -> np.ndarray:
    x = np.array(series, copy=True)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def variance_partial_sums(
    chunk: np.ndarray, offset: int, n_scans: int, center: np.ndarray | None = None
) -> np.ndarray:
    """Partial sums of a chunk of volumes for the detrended variance of each voxel.

    Parameters
    ----------
    chunk : ndarray, shape (t, ...)
        Volumes ``offset`` to ``offset + t - 1`` of the series; trailing axes are voxels.
    offset : int
        Index of the chunk's first volume in the series.
    n_scans : int
        Number of volumes T of the whole series.
    center : ndarray, optional
        One value per voxel subtracted before summing, the same for every chunk (for instance
        the first volume).  The detrended variance does not depend on it, but plain sums lose
        precision when the mean is large against the fluctuations (relative error ~1e-8 at a
        mean/std ratio of 5000); summing ``x - center`` keeps them at float64 rounding.

    Returns
    -------
    ndarray, shape (3, V), float64
        ``(Σ x_t, Σ x_t², Σ r_t x_t)`` (of ``x - center``) over the chunk's volumes, for the V
        voxels (flattened in C order).  Summed over chunks covering the series, they give the
        whole series' sums.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(10, 4))
    >>> sums = variance_partial_sums(x[:6], 0, 10) + variance_partial_sums(x[6:], 6, 10)
    >>> np.allclose(detrended_variance(sums, 10), (detrend_signals(x) ** 2).mean(axis=0))
    True
    """
    if offset < 0 or offset + chunk.shape[0] > n_scans:
        raise ValueError(
            f"a chunk of {chunk.shape[0]} volumes at offset {offset} does not fit in a series of "
            f"{n_scans} volumes"
        )
    x = chunk.reshape(chunk.shape[0], -1).astype(np.float64)
    if center is not None:
        x -= np.reshape(center, -1)
    ramp = _ramp(n_scans)[offset : offset + chunk.shape[0]]
    return np.stack([x.sum(axis=0), np.einsum("tv,tv->v", x, x), ramp @ x])


def detrended_variance(
    sums: np.ndarray, n_scans: int, detrend: bool = True, center: np.ndarray | None = None
) -> np.ndarray:
    """Each voxel's mean of squares after detrending, from the summed partial sums.

    ``(Σx² − (Σx)²/T − (Σ r x)²) / T`` (clipped at 0 against rounding), or the mean of the raw
    squares without detrending.  This is nilearn's ``_mean_of_squares(_detrend(series))``,
    computed in float64.

    Parameters
    ----------
    sums : ndarray, shape (3, V)
        Total of :func:`variance_partial_sums` over the whole series.
    n_scans : int
    detrend : bool, default=True
    center : ndarray, optional
        The ``center`` given to :func:`variance_partial_sums` (only used without detrending).

    Returns
    -------
    ndarray, shape (V,), float64
    """
    total, squares, ramp = sums
    if detrend:
        return np.maximum((squares - total * total / n_scans - ramp * ramp) / n_scans, 0.0)
    if center is None:
        return squares / n_scans
    center = np.reshape(center, -1).astype(np.float64)
    return (squares + 2 * center * total) / n_scans + center * center


def select_high_variance(variance: np.ndarray, percentile: float = 2.0) -> np.ndarray:
    """nilearn's selection: the voxels strictly above the ``100 - percentile`` nan-percentile.

    Returns
    -------
    ndarray of bool, shape (V,)
    """
    return variance > np.nanpercentile(variance, 100.0 - percentile)


def high_variance_components(
    selected: np.ndarray, n_confounds: int = 5, detrend: bool = True
) -> np.ndarray:
    """The leading eigenvectors of ``X Xᵀ / T`` of the selected voxels' series X.

    As nilearn: X is detrended first (in its float dtype: float32 stays float32), the
    symmetric eigenproblem is solved with ``scipy.linalg.eigh`` and the eigenvectors are sorted
    by decreasing eigenvalue.  Their sign (and their order for equal eigenvalues) is arbitrary.

    Parameters
    ----------
    selected : ndarray, shape (T, n_kept)
    n_confounds : int, default=5
    detrend : bool, default=True

    Returns
    -------
    ndarray, shape (T, min(n_confounds, T))
    """
    series = detrend_signals(selected) if detrend else _float_copy(selected)
    values, vectors = linalg.eigh(series.dot(series.T) / series.shape[0])
    order = np.argsort(values)[::-1]
    return vectors[:, order[:n_confounds]].copy()


def high_variance_confounds(
    series: np.ndarray, n_confounds: int = 5, percentile: float = 2.0, detrend: bool = True
) -> np.ndarray:
    """Confounds from the highest-variance series: ``nilearn.signal.high_variance_confounds``.

    Parameters
    ----------
    series : ndarray, shape (T, V)
        One series per column (voxels).
    n_confounds : int, default=5
    percentile : float, default=2.0
        Percentage of the series (highest variance) kept.
    detrend : bool, default=True
        Detrend the series before computing variances and components.

    Returns
    -------
    ndarray, shape (T, n_confounds)
        Unit-norm components (sign arbitrary), in the float dtype of the detrended series.

    Notes
    -----
    Without detrending, integer series are cast to float first (nilearn squares them in their
    integer dtype, which can overflow).
    """
    x = detrend_signals(series) if detrend else _float_copy(series)
    variance = (x**2).mean(axis=0).astype(np.float64)
    kept = x[:, select_high_variance(variance, percentile)]
    return high_variance_components(kept, n_confounds, detrend=False)


def _gather(block: np.ndarray, selected: np.ndarray) -> np.ndarray:
    return block.reshape(block.shape[0], -1)[:, selected].astype(np.float64)


def _components(parts: list, n_confounds: int, detrend: bool) -> np.ndarray:
    return high_variance_components(np.concatenate(parts, axis=0), n_confounds, detrend)


def lazy_high_variance_confounds(
    data: da.Array, n_confounds: int = 5, percentile: float = 2.0, detrend: bool = True
) -> da.Array:
    """Lazy high-variance confounds (T × n_confounds) of 4D volumes, nilearn's semantics.

    Parameters
    ----------
    data : dask array, shape (T, z, y, x)
        The raw image (not resampled, not smoothed, all voxels).
    n_confounds : int, default=5
    percentile : float, default=2.0
        Percentage of voxels (highest variance) kept.
    detrend : bool, default=True

    Returns
    -------
    dask array, shape (T, n_confounds), float64
    """
    data = data.rechunk({1: -1, 2: -1, 3: -1})
    n = int(data.shape[0])
    n_vox = int(np.prod(data.shape[1:]))
    offsets = np.cumsum((0, *data.chunks[0]))
    first = reread(data, "variance").to_delayed().ravel()
    parts = [
        da.from_delayed(
            delayed(variance_partial_sums)(block, int(offsets[i]), n),
            shape=(3, n_vox),
            dtype=np.float64,
        )
        for i, block in enumerate(first)
    ]
    sums = da.stack(parts).sum(axis=0)
    variance = delayed(detrended_variance)(sums, n, detrend)
    selected = delayed(select_high_variance)(variance, percentile)
    second = reread(data, "selected", after=selected).to_delayed().ravel()
    gathered = [delayed(_gather)(block, selected) for block in second]
    result = delayed(_components)(gathered, n_confounds, detrend)
    return da.from_delayed(result, shape=(n, n_confounds), dtype=np.float64)
