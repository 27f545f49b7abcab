"""The maps' coverage by a run's brain mask, and ``min_coverage``: regions below it are NaN.

A map whose weight lies mostly outside a run's brain mask (fMRIPrep's ``desc-brain_mask``:
dropout, a cropped field of view) gives a signal from few voxels; as xcp_d's ``min_coverage``
does for parcels, such regions are set to NaN in that run (with a warning naming them) rather
than passed on as if they were measured.  The coverage itself is
:func:`daskmasker.compute.coverage.map_coverage`, over the grid the maps are extracted on,
inside the run's brain mask and the masker's mask.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask
import dask.local
import numpy as np
import xarray as xr

from daskmasker.compute.coverage import below, map_coverage
from daskmasker.compute.grid import Grid
from daskmasker.compute.projection import GridMaps
from daskmasker.io import load
from daskmasker.io.image import image_grid
from daskmasker.masker import labels, spatial
from daskmasker.stacklevel import find_stack_level


def check_min_coverage(value: Any) -> None:
    """``min_coverage`` is None or a number in [0, 1]."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"'min_coverage' must be a float in [0, 1] or None.\nGot: '{value!r}'")
    if not 0 <= float(value) <= 1:
        raise ValueError(f"'min_coverage' must be in [0, 1], got {value}")


def inside_mask(grid_maps: GridMaps, grid: Grid, brain_mask: Any) -> np.ndarray:
    """The voxels of ``grid`` inside the brain mask (nearest-neighbour resampled onto the grid
    when it is on another one) and the masker's mask."""
    inside = np.ones(grid_maps.maps.shape[1:], dtype=bool)
    if grid_maps.mask is not None:
        inside &= grid_maps.mask
    if brain_mask is not None:
        image = load.load_image(brain_mask, atleast_4d=True)
        # read here, in this thread: on a worker, the default scheduler would open a client
        # there, and the extraction graphs built next would share their maps through it (the
        # synchronous scheduler's function: its name would make Dask import distributed)
        with dask.config.set(scheduler=dask.local.get_sync):
            mask = spatial.binarize_mask(image)
        source = image_grid(image)
        if not source.same_as(grid):
            mask = spatial.resample_mask(mask, source, grid, check=False)
        inside &= mask
    return inside


def apply(
    signals: xr.DataArray, grid_maps: GridMaps, grid: Grid, brain_mask: Any, params: dict
) -> xr.DataArray:
    """``signals`` with a ``coverage`` coordinate, NaN in the regions below ``min_coverage``.

    The warning names the regions (by their names) and their coverage; the regions' indices
    are in ``signals.attrs["low_coverage_regions"]``.
    """
    kept = np.asarray(signals["region"].values)
    cov = map_coverage(grid_maps.maps, inside_mask(grid_maps, grid, brain_mask))[kept]
    signals = signals.assign_coords(coverage=("region", cov))
    signals["coverage"].attrs.update(
        long_name="coverage",
        units="1",
        description="fraction of the map's weight inside the run's brain mask (and the "
        "masker's mask)",
    )
    min_coverage = params.get("min_coverage")
    check_min_coverage(min_coverage)
    low = below(cov, min_coverage)
    signals.attrs["low_coverage_regions"] = [int(k) for k in kept[low]]
    if low.size:
        n_maps = int(grid_maps.maps.shape[0])
        given = labels.region_names(params.get("region_names"), n_maps)
        # nilearn's default names without region_names
        names = [f"niftimapsmasker{k}" for k in range(n_maps)] if given is None else list(given)
        listed = ", ".join(f"{names[kept[i]]} ({cov[i]:.2f})" for i in low)
        source = load.describe(brain_mask) if brain_mask is not None else "the mask"
        warnings.warn(
            f"{low.size} regions cover less than min_coverage={min_coverage} of their weight "
            f"inside {source}; their signals are NaN: {listed}",
            UserWarning,
            stacklevel=find_stack_level(),
        )
        keep = xr.DataArray(~np.isin(np.arange(kept.size), low), dims="region")
        signals = signals.where(keep).assign_attrs(signals.attrs)
    return signals
