"""How much of each map a brain mask covers: the fraction of the map's weight inside it.

fMRIPrep's brain mask differs from run to run (signal dropout, a cropped field of view); a
map mostly outside it gives a signal made of few voxels.  xcp_d's ``min_coverage`` measures
the same quantity for parcels and drops those below a threshold; for continuous maps the
voxel count is the weight (``|map|``) summed, so a map's coverage is
``Σ_inside |m| / Σ_all |m|`` over the grid the maps are extracted on.
"""

from __future__ import annotations

import numpy as np

from daskmasker.compute.maps import SparseMaps, is_sparse


def map_coverage(maps: np.ndarray | SparseMaps, inside: np.ndarray) -> np.ndarray:
    """The fraction of each map's absolute weight inside a boolean mask.

    Parameters
    ----------
    maps : ndarray of shape (K, z, y, x), or SparseMaps
        The maps on one grid.
    inside : bool ndarray of shape (z, y, x)
        The mask on the same grid.

    Returns
    -------
    ndarray of shape (K,), float64
        In [0, 1]; 0 for a map that is zero everywhere.

    Examples
    --------
    >>> maps = np.zeros((2, 1, 1, 4))
    >>> maps[0, 0, 0] = [1, 1, 2, 0]
    >>> maps[1, 0, 0] = [0, 0, 0, -3]
    >>> map_coverage(maps, np.array([[[True, True, False, False]]])).tolist()
    [0.5, 0.0]
    """
    inside = np.asarray(inside, dtype=bool)
    if inside.shape != tuple(maps.shape[1:]):
        raise ValueError(f"mask of shape {inside.shape} is not on the maps' grid {maps.shape[1:]}")
    if is_sparse(maps):
        within = maps.abs_sums(inside)
        total = maps.abs_sums(np.ones(inside.shape, dtype=bool))
    else:
        flat = np.abs(np.asarray(maps, dtype=np.float64).reshape(maps.shape[0], -1))
        within = flat[:, inside.reshape(-1)].sum(axis=1)
        total = flat.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, within / np.where(total > 0, total, 1), 0.0)


def below(coverage: np.ndarray, min_coverage: float | None) -> np.ndarray:
    """Indices of the maps whose coverage is below ``min_coverage`` (none when it is None)."""
    if min_coverage is None:
        return np.zeros(0, dtype=int)
    return np.flatnonzero(np.asarray(coverage) < float(min_coverage))
