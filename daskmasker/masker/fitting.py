"""Fitting: the maps and mask loaded, cleaned, resampled for the resampling target and checked.

:func:`fit_maps` returns a :class:`FittedMaps`; a small process-wide :class:`FitCache` lets a
second masker fitting the same maps and mask for the same grid (the many-subjects case) reuse them.
Only the maps and mask are read: for the data, its header (the grid) is enough.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np
import xarray as xr

from daskmasker import config
from daskmasker.compute.grid import Grid, check_same_grids
from daskmasker.compute.projection import GridMaps, prepare_grid_maps
from daskmasker.io import load
from daskmasker.io.image import header_from_attrs, image_grid
from daskmasker.masker import spatial


@dataclass
class FittedMaps:
    """The fitted maps and mask, and their preparation for extraction on each grid met.

    Attributes
    ----------
    maps : ndarray, shape (K, z, y, x)
        Finite float maps on ``maps_grid`` (resampled for the resampling target).
    maps_grid : Grid
    maps_header : nibabel header or None
        The maps file's header (kept in ``maps_img_``).
    mask : bool ndarray of shape (z, y, x), or None
    mask_grid : Grid or None
    keep_masked_maps : bool
    messages : tuple of str
        What the fit did, for verbose logs ("Resampling regions", "Resampling mask").
    """

    maps: np.ndarray
    maps_grid: Grid
    maps_header: nib.Nifti1Header | None
    mask: np.ndarray | None
    mask_grid: Grid | None
    keep_masked_maps: bool
    messages: tuple[str, ...] = ()
    _on_grid: dict = field(default_factory=dict, repr=False)

    @property
    def n_maps(self) -> int:
        """K, the number of maps."""
        return int(self.maps.shape[0])

    def on_grid(self, grid: Grid) -> GridMaps:
        """The maps (and mask) on ``grid``, trimmed and prepared for extraction once per grid."""
        if grid.key not in self._on_grid:
            maps, mask = self.maps, self.mask
            if not grid.same_as(self.maps_grid):
                maps = spatial.resample_maps(maps, self.maps_grid, grid)
                if not maps.any():
                    raise ValueError("No map left after resampling maps_img.")
            if mask is not None and not grid.same_as(self.mask_grid):
                mask = spatial.resample_mask(mask, self.mask_grid, grid, check=False)
            self._on_grid[grid.key] = prepare_grid_maps(maps, mask, self.keep_masked_maps)
        return self._on_grid[grid.key]

    @property
    def kept(self) -> np.ndarray:
        """Indices of the maps extracted on the fitted grid."""
        return self.on_grid(self.maps_grid).kept


def load_mask(mask_img: Any) -> tuple[np.ndarray, Grid]:
    """A mask image binarised and checked as nilearn does, with its grid."""
    image = load.load_image(mask_img, atleast_4d=True)
    return spatial.binarize_mask(image), image_grid(image)


def fit_maps(
    maps_img: Any,
    mask_img: Any,
    resampling_target: str | None,
    keep_masked_maps: bool,
    data: xr.DataArray | None = None,
) -> FittedMaps:
    """Load, clean and resample the maps (and mask) for the resampling target (cached).

    Parameters
    ----------
    maps_img, mask_img : anything :func:`daskmasker.io.load.load_image` accepts
    resampling_target : {'data', 'mask', 'maps', None}
    keep_masked_maps : bool
    data : xarray.DataArray, optional
        The image given to ``fit`` (its grid only).

    Returns
    -------
    FittedMaps

    Raises
    ------
    ValueError
        nilearn's errors: grids that differ without resampling, no map left after resampling or
        masking, an empty maps image.
    """
    mask = mask_grid = None
    if mask_img is not None:
        mask, mask_grid = load_mask(mask_img)
    data_grid = None if data is None else image_grid(data)
    key = (
        FitCache.identity(maps_img),
        FitCache.identity(mask_img),
        resampling_target,
        bool(keep_masked_maps),
        None if data_grid is None else data_grid.key,
    )
    cached = FIT_CACHE.get(key)
    if cached is None:
        cached = _fit(maps_img, mask, mask_grid, resampling_target, keep_masked_maps, data_grid)
        FIT_CACHE.put(key, (maps_img, mask_img), cached)
    return cached


def _fit(maps_img, mask, mask_grid, resampling_target, keep_masked_maps, data_grid) -> FittedMaps:
    messages: list[str] = []
    maps_image = load.load_image(maps_img, atleast_4d=True, maps=True)
    maps_grid = image_grid(maps_image)
    maps_header = header_from_attrs(maps_image.attrs)

    if resampling_target is None:
        grids = {"maps": maps_grid}
        if mask is not None:
            grids["mask"] = mask_grid
        if data_grid is not None:
            grids["data"] = data_grid
        check_same_grids(grids)

    ref = None
    if resampling_target == "data" and data_grid is not None:
        ref = data_grid
    elif resampling_target == "mask":
        ref = mask_grid
    elif resampling_target == "maps":
        ref = maps_grid

    onto = None
    if ref is not None and resampling_target != "maps":
        onto = None if ref.same_as(maps_grid) else ref
    maps = spatial.load_maps(maps_image, onto=onto)
    any_map = bool(maps.any())
    if onto is not None:
        messages.append("Resampling regions")
        maps_grid = ref
        if not any_map:
            raise ValueError("No map left after resampling maps_img.")
    if ref is not None and mask is not None and not ref.same_as(mask_grid):
        messages.append("Resampling mask")
        mask = spatial.resample_mask(mask, mask_grid, ref)
        mask_grid = ref

    if not any_map:
        raise ValueError("maps_img contains no map.")
    if mask is not None and ref is not None and not any(m[mask].any() for m in maps):
        raise ValueError("No map left after applying mask to the maps image.")
    return FittedMaps(
        maps=maps,
        maps_grid=maps_grid,
        maps_header=maps_header,
        mask=mask,
        mask_grid=mask_grid,
        keep_masked_maps=bool(keep_masked_maps),
        messages=tuple(messages),
    )


class FitCache:
    """A small process-wide cache of fitted maps, keyed by the inputs' identity and the grid.

    A second masker fitting the same maps and mask for the same grid (the many-subjects case)
    reuses the loaded, resampled maps and their prepared Gram solvers instead of reading them
    again.  Files are identified by path, size and modification time; in-memory objects by their
    id (the cache keeps a reference, so the id cannot be reused while cached).
    """

    def __init__(self, size: int | None = None):
        self._size = size
        self._entries: dict = {}

    @property
    def size(self) -> int:
        """Entries kept: ``size``, or the ``daskmasker.fit-cache-size`` setting."""
        return int(config.get("fit-cache-size")) if self._size is None else self._size

    @staticmethod
    def identity(obj) -> tuple:
        """What identifies an input: a file's path, size and mtime; a URL; an object's id."""
        if obj is None:
            return (None,)
        if isinstance(obj, str | os.PathLike) and "://" not in str(obj):
            path = os.path.abspath(os.path.expanduser(str(obj)))
            try:
                st = os.stat(path)
            except OSError:
                return ("path", path)
            return ("file", path, st.st_size, st.st_mtime_ns)
        if isinstance(obj, str):
            return ("url", obj)
        return ("object", id(obj))

    def get(self, key):
        """The cached value for ``key`` (now the most recent), or None."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._entries[key] = entry
            return entry[1]
        return None

    def put(self, key, objects, value) -> None:
        """Cache ``value``, keeping ``objects`` alive with it; the oldest entries go."""
        self._entries[key] = (objects, value)
        while len(self._entries) > self.size:
            self._entries.pop(next(iter(self._entries)))


FIT_CACHE = FitCache()
