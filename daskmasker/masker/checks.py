"""The checks of an image against a fitted extraction, with nilearn 0.14.1's warnings and errors.

Pure: each takes grids, fitted maps and parameters and warns or raises; none builds a graph or
reads voxels.  :func:`daskmasker.masker.transform.lazy_signals` calls them in nilearn's order.
"""

from __future__ import annotations

import numpy as np

from daskmasker.compute.grid import Grid, check_same_grids
from daskmasker.compute.maps import check_overlap
from daskmasker.compute.projection import GridMaps
from daskmasker.masker.fitting import FittedMaps
from daskmasker.stacklevel import warn

RESAMPLE_TRANSFORM_HINT = (
    "To avoid this warning, make sure to pass the images "
    "you want to transform to fit() first, "
    "or directly use fit_transform()."
)
KEEP_MASKED_MAPS_WARNING = (
    'Applying "mask_img" before signal extraction may result in empty region signals in the '
    'output. These are currently kept.\n"keep_masked_maps" parameter will be removed in version '
    '0.15. Set "keep_masked_maps=False" to silence this warning.'
)
NO_MAP_LEFT = "No map left after applying mask to the maps image."


def check_real(dtype: np.dtype, source: str | None) -> None:
    """Refuse complex image data, naming the image.

    nilearn 0.14.1 drops the imaginary part silently and returns float32 or float64 depending
    on the complex width and the image's dimensionality; a region signal of complex data has no
    meaning without choosing a part first (docs/differences.md).
    """
    if np.dtype(dtype).kind == "c":
        raise TypeError(
            f"the image {source or '(in memory)'} holds complex values ({np.dtype(dtype)}): "
            "extract from their magnitude (np.abs) or real part, as a real image"
        )


def check_grid(
    fitted: FittedMaps,
    data_grid: Grid,
    target: str | None,
    sources: dict[str, str] | None = None,
) -> None:
    """Raise when ``target`` is None and the grids differ; else warn of what will be resampled.

    Parameters
    ----------
    fitted : FittedMaps
    data_grid : Grid
        The image's grid.
    target : {'data', 'mask', 'maps', None}
        The masker's ``resampling_target``.
    sources : dict, optional
        ``{"maps"|"mask"|"data": file name}``, named in the error with shapes and affines.
    """
    if target is None:
        grids = {"maps": fitted.maps_grid, "data": data_grid}
        if fitted.mask_grid is not None:  # a mask was given
            grids["mask"] = fitted.mask_grid
        check_same_grids(grids, sources)
    elif target == "data":
        if not data_grid.same_as(fitted.maps_grid):
            warn("Resampling maps at transform time...\n" + RESAMPLE_TRANSFORM_HINT)
        if fitted.mask_grid is not None and not data_grid.same_as(fitted.mask_grid):
            warn("Resampling mask at transform time...\n" + RESAMPLE_TRANSFORM_HINT)
    elif target == "maps" and not data_grid.same_as(fitted.maps_grid):
        warn(
            "Resampling images at transform time...\n"
            "To avoid this warning, make sure to resample the images you want to transform "
            "to the shape of the maps or set resampling_target to 'data'."
        )


def check_overlap_allowed(grid_maps: GridMaps, allow_overlap: bool) -> None:
    """nilearn's ``allow_overlap=False``: raise when maps overlap on the extraction grid."""
    if not allow_overlap:
        check_overlap(grid_maps.maps)


def check_extracted_maps(fitted: FittedMaps, grid_maps: GridMaps, keep_masked_maps: bool) -> None:
    """Warn of maps the mask removes (or keeps), raise when it removes them all.

    Fitted without an image, the mask resampled onto the image's grid may cover no map: nilearn
    checks this at fit when it knows the grid, and at extraction otherwise.
    """
    if keep_masked_maps and fitted.mask is not None:
        warn(KEEP_MASKED_MAPS_WARNING, FutureWarning)
    elif grid_maps.kept.size == 0:
        raise ValueError(NO_MAP_LEFT)
    elif grid_maps.dropped:
        warn(
            "After applying mask to the maps image, maps with the following indices were "
            f"removed: {set(grid_maps.dropped)}. Out of {fitted.n_maps} maps, the masked "
            f"map image only contains {grid_maps.kept.size} maps."
        )
