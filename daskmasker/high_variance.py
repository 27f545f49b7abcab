"""High-variance confounds of a 4D image, out of core.

nilearn's ``image.high_variance_confounds`` (no mask, 5 components, 2 %, detrend) detrends every
voxel's time series, keeps the voxels whose variance is above the 98th percentile and returns the
first left singular vectors of that (T × n_kept) matrix.  Out of core this is two passes over
chunks of
whole volumes:

1. **variance** — per chunk, the partial sums ``Σx``, ``Σx²`` and ``Σ r_t x`` (``r`` the centred,
   unit-norm ramp over all T volumes) per voxel, tree-summed in float64; the detrended variance is
   ``(Σx² − (Σx)²/T − (Σrx)²) / T``; the threshold and selection follow nilearn exactly;
2. **gather** — per chunk, the selected voxels only (2 % of the image), concatenated into the small
   T × n_kept matrix, detrended and decomposed.

The graph is lazy; the gather pass is bound to the selection (``dask.graph_manipulation.bind``) and
reads its own copy of the chunks (``clone``), so no chunk is held in memory between the passes.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr
from dask import delayed
from dask.graph_manipulation import bind, clone

from daskmasker.clean import detrend_signals


def _ramp(n: int) -> np.ndarray:
    r = np.arange(n, dtype=np.float64)
    r -= r.mean()
    norm = np.linalg.norm(r)
    return r / norm if norm > np.finfo(np.float64).eps else r


def partial_sums(block: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    """``(Σx, Σx², Σ r_t x)`` per voxel of a chunk of volumes, as a (3, V) float64 array."""
    x = block.reshape(block.shape[0], -1).astype(np.float64)
    return np.stack([x.sum(axis=0), np.einsum("tv,tv->v", x, x), ramp @ x])


def detrended_variance(sums: np.ndarray, n: int, detrend: bool = True) -> np.ndarray:
    """Mean of squares of each voxel's (demeaned, linearly detrended) series, from partial sums."""
    s1, s2, sr = sums
    if not detrend:
        return s2 / n
    return np.maximum((s2 - s1 * s1 / n - sr * sr) / n, 0.0)


def select_voxels(var: np.ndarray, percentile: float = 2.0) -> np.ndarray:
    """nilearn's selection: variance strictly above the ``100 - percentile`` percentile."""
    return var > np.nanpercentile(var, 100.0 - percentile)


def _gather(block: np.ndarray, selected: np.ndarray) -> np.ndarray:
    return block.reshape(block.shape[0], -1)[:, selected].astype(np.float64)


def components(parts: list, n_confounds: int = 5, detrend: bool = True) -> np.ndarray:
    """The first ``n_confounds`` left singular vectors of the selected voxels' series."""
    series = np.concatenate(parts, axis=0)
    if detrend:
        series = detrend_signals(series)
    u = np.linalg.svd(series, full_matrices=False)[0]
    return u[:, :n_confounds].copy()


def high_variance_confounds(
    img: xr.DataArray, n_confounds: int = 5, percentile: float = 2.0, detrend: bool = True
) -> da.Array:
    """Lazy high-variance confounds (T × n_confounds) of a 4D image, nilearn's semantics.

    Parameters
    ----------
    img : xarray.DataArray
        A 4D daskmasker image (raw: not resampled, not smoothed, all voxels).
    n_confounds : int, default=5
    percentile : float, default=2.0
        Percentage of voxels (highest variance) kept.
    detrend : bool, default=True

    Returns
    -------
    dask.array.Array, shape (T, n_confounds)
    """
    data = img.data if isinstance(img.data, da.Array) else da.from_array(img.data)
    data = data.rechunk({1: -1, 2: -1, 3: -1})
    n = int(data.shape[0])
    n_vox = int(np.prod(data.shape[1:]))
    ramp = _ramp(n)
    bounds = np.cumsum((0, *data.chunks[0]))
    first = clone(data, seed=1).to_delayed().ravel()
    parts = [
        da.from_delayed(
            delayed(partial_sums)(block, ramp[bounds[i] : bounds[i + 1]]),
            shape=(3, n_vox),
            dtype=np.float64,
        )
        for i, block in enumerate(first)
    ]
    sums = da.stack(parts).sum(axis=0)
    selected = delayed(select_voxels)(delayed(detrended_variance)(sums, n, detrend), percentile)
    second = bind(data, selected).to_delayed().ravel()
    gathered = [delayed(_gather)(block, selected) for block in second]
    result = delayed(components)(gathered, n_confounds, detrend)
    return da.from_delayed(result, shape=(n, n_confounds), dtype=np.float64)
