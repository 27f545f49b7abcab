"""High-variance confounds (nilearn's CompCor-like ``high_variance_confounds``): numpy and Dask.

nilearn detrends every voxel's series, keeps the voxels whose mean of squares is strictly above
its ``100 - percentile`` percentile, and returns the leading eigenvectors of ``X Xᵀ / T`` of
the kept (T × n_kept) series.  :func:`high_variance_confounds` does exactly that on a (T × V)
array; the other functions are the same computation cut into pieces that work on chunks of
volumes, for an out-of-core version:

1. each voxel's detrended variance, a reduction over chunks of volumes
   (:data:`DETRENDED_VARIANCE`): per chunk its moments in float64 (:func:`variance_moments`),
   merged with Chan's stable formula (:func:`merge_moments`), then :func:`detrended_variance`;
2. :func:`select_high_variance` (nilearn's threshold and strict selection);
3. :func:`high_variance_components` on the selected voxels' (T × n_kept) series.

:func:`lazy_high_variance_confounds` strings these steps into a lazy Dask graph over chunks of
whole volumes: two passes (the moments, merged in a tree by
:func:`~daskmasker.compute.reduction.combine_partials`; then the selected voxels, 2 % of the
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
from daskmasker.compute.reduction import Reduction, combine_partials


def _ramp(n_scans: int) -> np.ndarray:
    """The centred, unit-norm linear ramp over ``n_scans`` volumes (nilearn's detrend regressor)."""
    ramp = np.arange(n_scans, dtype=np.float64)
    ramp -= ramp.mean()
    norm = np.sqrt((ramp**2).sum())
    return ramp / norm if not norm < np.finfo(np.float64).eps else ramp


def _float_copy(series: np.ndarray) -> np.ndarray:
    x = np.array(series, copy=True)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def variance_moments(chunk: np.ndarray, offset: int, n_scans: int) -> np.ndarray:
    """The moments of a chunk of volumes from which each voxel's detrended variance follows.

    Parameters
    ----------
    chunk : ndarray, shape (t, ...)
        Volumes ``offset`` to ``offset + t - 1`` of the series; trailing axes are voxels.
    offset : int
        Index of the chunk's first volume in the series.
    n_scans : int
        Number of volumes T of the whole series.

    Returns
    -------
    ndarray, shape (3, V + 1), float64
        Column 0 holds the chunk's count of volumes and the mean of the ramp ``r`` (the centred
        unit-norm ramp over all T volumes) over them; columns 1: hold, per voxel (flattened in C
        order), the mean of ``x``, ``Σ (x - x̄)²`` and ``Σ (r - r̄)(x - x̄)``.  Deviations from
        the chunk's means keep float64 rounding however large the mean is against the
        fluctuations (plain sums of squares lose ~1e-8 at a mean/std of 5000);
        :func:`merge_moments` merges chunks without losing it (Chan's formula).  The array is
        merged whole (never split along its voxels: column 0 belongs to all of them).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(10, 4))
    >>> parts = np.stack([variance_moments(x[:6], 0, 10), variance_moments(x[6:], 6, 10)])
    >>> merged = merge_moments(parts)
    >>> np.allclose(detrended_variance(merged, 10), (detrend_signals(x) ** 2).mean(axis=0))
    True
    """
    if offset < 0 or offset + chunk.shape[0] > n_scans:
        raise ValueError(
            f"a chunk of {chunk.shape[0]} volumes at offset {offset} does not fit in a series of "
            f"{n_scans} volumes"
        )
    x = chunk.reshape(chunk.shape[0], -1).astype(np.float64)
    n = x.shape[0]
    ramp = _ramp(n_scans)[offset : offset + n]
    out = np.zeros((3, x.shape[1] + 1))
    out[0, 0], out[1, 0] = n, ramp.mean() if n else 0.0
    if n:
        out[0, 1:] = x.mean(axis=0)
        x -= out[0, 1:]
        out[1, 1:] = np.einsum("tv,tv->v", x, x)
        out[2, 1:] = (ramp - out[1, 0]) @ x
    return out


def merge_moments(stacked: np.ndarray) -> np.ndarray:
    """Moments of consecutive chunks (:func:`variance_moments`, stacked along a first axis)
    merged into those of their union, in order, with Chan et al.'s pairwise formula.

    For counts ``a``, ``b`` and mean differences ``δx``, ``δr``: ``M2 = M2a + M2b + δx² ab/n``
    and ``C = Ca + Cb + δr δx ab/n``; no sum of squares of the raw values is ever formed.
    """
    merged = stacked[0].copy()
    for part in stacked[1:]:
        na, nb = merged[0, 0], part[0, 0]
        n = na + nb
        if nb == 0:
            continue
        dr = part[1, 0] - merged[1, 0]
        dx = part[0, 1:] - merged[0, 1:]
        weight = na * nb / n
        merged[2, 1:] += part[2, 1:] + dr * dx * weight
        merged[1, 1:] += part[1, 1:] + dx * dx * weight
        merged[0, 1:] += dx * (nb / n)
        merged[1, 0] += dr * (nb / n)
        merged[0, 0] = n
    return merged


def detrended_variance(moments: np.ndarray, n_scans: int, detrend: bool = True) -> np.ndarray:
    """Each voxel's mean of squares after detrending, from the moments of the whole series.

    ``(Σ (x - x̄)² − (Σ r x)²) / T`` (clipped at 0 against rounding): the ramp ``r`` is centred
    and of unit norm over the series, so ``Σ r x`` is the merged ``Σ (r - r̄)(x - x̄)``.  Without
    detrending, the mean of the raw squares ``Σ (x - x̄)² / T + x̄²``.  This is nilearn's
    ``_mean_of_squares(_detrend(series))``, computed in float64.

    Parameters
    ----------
    moments : ndarray, shape (3, V + 1)
        :func:`merge_moments` of the chunks covering the series.
    n_scans : int
    detrend : bool, default=True

    Returns
    -------
    ndarray, shape (V,), float64
    """
    mean, squares, ramp = moments[:, 1:]
    if detrend:
        return np.maximum((squares - ramp * ramp) / n_scans, 0.0)
    return squares / n_scans + mean * mean


DETRENDED_VARIANCE = Reduction(
    "detrended-variance",
    chunk=variance_moments,
    combine=merge_moments,
    finalize=detrended_variance,
)
"""Each voxel's detrended variance as a reduction over chunks of volumes: the chunk's moments
(:func:`variance_moments`), merged stably (:func:`merge_moments`), the variance
(:func:`detrended_variance`)."""


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
            delayed(DETRENDED_VARIANCE.chunk)(block, int(offsets[i]), n),
            shape=(3, n_vox + 1),
            dtype=np.float64,
        )
        for i, block in enumerate(first)
    ]
    moments = combine_partials(DETRENDED_VARIANCE, parts)
    variance = delayed(DETRENDED_VARIANCE.finalize)(moments, n, detrend)
    selected = delayed(select_high_variance)(variance, percentile)
    second = reread(data, "selected", after=selected).to_delayed().ravel()
    gathered = [delayed(_gather)(block, selected) for block in second]
    result = delayed(_components)(gathered, n_confounds, detrend)
    return da.from_delayed(result, shape=(n, n_confounds), dtype=np.float64)
