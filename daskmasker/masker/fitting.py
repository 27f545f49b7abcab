"""Fitting: the maps and mask loaded, cleaned, resampled for the resampling target and checked.

:func:`fit_maps` returns a :class:`FittedMaps`; a small process-wide
:class:`~daskmasker.masker.fit_cache.FitCache` lets a second masker fitting the same maps and
mask for the same grid (the many-subjects case) reuse them.  :func:`prefit_maps` fits several
atlases at once, in threads, into that cache.  Only the maps and mask are read: for the data,
its header (the grid) is enough.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np
import xarray as xr

from daskmasker.compute.grid import Grid, check_same_grids
from daskmasker.compute.maps import any_in_mask, is_sparse
from daskmasker.compute.projection import GridMaps, joint_grid_maps, prepare_grid_maps
from daskmasker.compute.sparse_maps import SparseMaps
from daskmasker.compute.sparse_resample import SparseResampler
from daskmasker.io import load
from daskmasker.io.image import as_nibabel, header_from_attrs, image_grid
from daskmasker.masker import spatial
from daskmasker.masker.fit_cache import FIT_CACHE, FitCache
from daskmasker.masker.maps_loading import SparseMapsProxy, load_maps, resample_maps


@dataclass
class FittedMaps:
    """The fitted maps and mask, and their preparation for extraction on each grid met.

    Attributes
    ----------
    maps : ndarray of shape (K, z, y, x), or SparseMaps
        Finite float maps on ``maps_grid`` (resampled for the resampling target); sparse for
        atlases of small maps (see :func:`~daskmasker.masker.maps_loading.load_maps`).
    maps_grid : Grid
    maps_header : nibabel header or None
        The maps file's header (kept in ``maps_img_``).
    mask : bool ndarray of shape (z, y, x), or None
    mask_grid : Grid or None
    keep_masked_maps : bool
    messages : tuple of str
        What the fit did, for verbose logs ("Resampling regions", "Resampling mask").
    """

    maps: np.ndarray | SparseMaps
    maps_grid: Grid
    maps_header: nib.Nifti1Header | None
    mask: np.ndarray | None
    mask_grid: Grid | None
    keep_masked_maps: bool
    messages: tuple[str, ...] = ()
    joint: tuple[list[FittedMaps], list[FittedMaps]] | None = field(
        default=None, repr=False, compare=False
    )
    _on_grid: dict = field(default_factory=dict, repr=False)

    @property
    def n_maps(self) -> int:
        """K, the number of maps."""
        return int(self.maps.shape[0])

    def on_grid(self, grid: Grid) -> GridMaps:
        """The maps (and mask) on ``grid``, trimmed and prepared for extraction once per grid."""
        if grid.key not in self._on_grid and self.joint is not None:
            originals, members = self.joint
            linked = joint_grid_maps([f.on_grid(grid) for f in originals])
            for member, grid_maps in zip(members, linked, strict=True):
                member._on_grid[grid.key] = grid_maps
        if grid.key not in self._on_grid:
            maps, mask = self.maps, self.mask
            if not grid.same_as(self.maps_grid):
                if is_sparse(maps):
                    maps = SparseResampler(self.maps_grid, grid)(maps)
                else:
                    maps = resample_maps(maps, self.maps_grid, grid)
                if not maps.any():
                    raise ValueError("No map left after resampling maps_img.")
            mask_grid = self.mask_grid
            if mask is not None and mask_grid is not None and not grid.same_as(mask_grid):
                mask = spatial.resample_mask(mask, mask_grid, grid, check=False)
            self._on_grid[grid.key] = prepare_grid_maps(maps, mask, self.keep_masked_maps)
        return self._on_grid[grid.key]

    @property
    def kept(self) -> np.ndarray:
        """Indices of the maps extracted on the fitted grid."""
        return self.on_grid(self.maps_grid).kept

    def maps_image(self) -> nib.Nifti1Image:
        """The fitted maps as a nibabel image (``maps_img_``); sparse maps stay sparse behind a
        lazy array proxy until its data is asked for."""
        if not is_sparse(self.maps):
            return as_nibabel(self.maps, self.maps_grid.affine, self.maps_header)
        return nib.Nifti1Image(
            SparseMapsProxy(self.maps), self.maps_grid.affine, header=self.maps_header
        )

    def voxel_signals(self, signals: np.ndarray, maps_index: np.ndarray) -> np.ndarray:
        """``Σ_k s_k · map_k`` over the kept maps' support (inside the mask), zero elsewhere.

        Parameters
        ----------
        signals : ndarray, shape (T, len(maps_index))
        maps_index : ndarray of int
            The maps the columns of ``signals`` belong to.

        Returns
        -------
        ndarray, shape (T, z, y, x)
        """
        maps, kept = self.maps, self.kept
        shape = maps.shape[1:]
        if self.mask is None:
            support = np.ones(shape, dtype=bool)
        elif is_sparse(maps):
            support = maps.nonzero_voxels(kept) & self.mask
        else:
            support = np.zeros(shape, dtype=bool)
            for m in maps[kept]:
                support |= m != 0
            support &= self.mask
        flat = np.flatnonzero(support)
        if is_sparse(maps):
            values = (maps.voxel_rows(flat, maps_index) @ signals.T).T
        else:
            rows = maps[maps_index].reshape(len(maps_index), -1)[:, flat]
            values = signals @ rows
        out = np.zeros((values.shape[0], support.size), dtype=values.dtype)
        out[:, flat] = values
        return out.reshape((values.shape[0], *shape))


def link_fitted(fitted: list[FittedMaps]) -> list[FittedMaps]:
    """Copies of several atlases' fitted maps that share one pass over each image.

    On each grid the copies' maps are linked
    (:func:`~daskmasker.compute.projection.joint_grid_maps`): an image's products with every
    atlas come from one read and one product; each atlas keeps its own solver.  The originals
    (perhaps cached) are not changed; maps linked already are linked again from their
    originals (:func:`~daskmasker.masker.many.fit_many`'s maskers given to a several-atlas batch).
    """
    originals = [_original(f) for f in fitted]
    members: list[FittedMaps] = []
    members.extend(
        dataclasses.replace(f, joint=(originals, members), _on_grid={}) for f in originals
    )
    return members


def _original(fitted: FittedMaps) -> FittedMaps:
    """The fitted maps a linked copy was made from (itself if not linked)."""
    if fitted.joint is None:
        return fitted
    originals, members = fitted.joint
    return next(o for o, m in zip(originals, members, strict=True) if m is fitted)


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
    key = _cache_key(maps_img, mask_img, resampling_target, keep_masked_maps, data_grid)
    cached = FIT_CACHE.get(key)
    if cached is None:
        sources = {"maps": load.source_name(maps_img), "mask": load.source_name(mask_img)}
        if data is not None:
            sources["data"] = load.source_name(data)
        cached = _fit(
            maps_img, mask, mask_grid, resampling_target, keep_masked_maps, data_grid, sources
        )
        FIT_CACHE.put(key, (maps_img, mask_img), cached)
    return cached


def _cache_key(
    maps_img: Any,
    mask_img: Any,
    resampling_target: str | None,
    keep_masked_maps: bool,
    data_grid: Grid | None,
) -> tuple:
    return (
        FitCache.identity(maps_img),
        FitCache.identity(mask_img),
        resampling_target,
        bool(keep_masked_maps),
        None if data_grid is None else data_grid.key,
    )


def prefit_maps(
    atlases: list,
    mask_img: Any,
    resampling_target: str | None,
    keep_masked_maps: bool,
    data: xr.DataArray | None = None,
) -> None:
    """Fit several atlases' maps at once, in threads, into the fit cache (largest file first).

    A ``.nii.gz`` is inflated by one thread, so fitting atlases one after another leaves the
    other cores idle; here each thread fits one atlas, the longest-running first.
    :func:`fit_maps` called afterwards with the same inputs finds them cached (the caller keeps
    the cache large enough: :meth:`FitCache.holding`).

    Nothing here is reported: an atlas that fails is left out of the cache, and if a fit warned,
    every atlas fitted here is taken out again, so that each atlas's own ``fit_maps`` call raises
    or warns, in order, as it would have without this.  (Warnings from other threads of the
    process meanwhile are emitted again as they were.)
    """
    if len(atlases) < 2 or (os.cpu_count() or 1) < 2:
        return
    data_grid = None if data is None else image_grid(data)
    todo = {}
    for atlas in atlases:
        key = _cache_key(atlas, mask_img, resampling_target, keep_masked_maps, data_grid)
        if FIT_CACHE.get(key) is None:
            todo[key] = atlas
    if len(todo) < 2:  # nothing to do at once
        return
    order = sorted(todo, key=lambda key: -_file_size(todo[key]))

    def fit_one(key: tuple) -> None:
        try:
            fitted = fit_maps(todo[key], mask_img, resampling_target, keep_masked_maps, data)
            fitted.on_grid(fitted.maps_grid)  # the Gram solver, as the masker's fit prepares it
        except Exception:  # raised again by the atlas's own fit_maps, in order
            pass

    prefix = "daskmasker-prefit"
    ours: list[tuple] = []
    others: list[tuple] = []

    def record(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        mine = threading.current_thread().name.startswith(prefix)
        (ours if mine else others).append((message, category, filename, lineno))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        workers = min(len(order), os.cpu_count() or 1)
        with ThreadPoolExecutor(workers, thread_name_prefix=prefix) as pool:
            list(pool.map(fit_one, order))
    for message, category, filename, lineno in others:
        warnings.warn_explicit(message, category, filename, lineno)
    if ours:
        for key in order:
            FIT_CACHE.discard(key)


def _file_size(obj: Any) -> int:
    """A local file's size (0 for anything else): the work of its fit, for the order."""
    try:
        return os.path.getsize(obj) if isinstance(obj, str | os.PathLike) else 0
    except OSError:
        return 0


def _fit(
    maps_img: Any,
    mask: np.ndarray | None,
    mask_grid: Grid | None,
    resampling_target: str | None,
    keep_masked_maps: bool,
    data_grid: Grid | None,
    sources: dict[str, str] | None = None,
) -> FittedMaps:
    messages: list[str] = []
    maps_image = load.load_image(maps_img, atleast_4d=True, maps=True)
    maps_grid = image_grid(maps_image)
    maps_header = header_from_attrs(maps_image.attrs)

    if resampling_target is None:
        grids = {"maps": maps_grid}
        if mask_grid is not None:  # a mask was given
            grids["mask"] = mask_grid
        if data_grid is not None:
            grids["data"] = data_grid
        check_same_grids(grids, sources)

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
    maps = load_maps(maps_image, onto=onto)
    any_map = bool(maps.any())
    if onto is not None:
        messages.append("Resampling regions")
        maps_grid = onto
        if not any_map:
            raise ValueError("No map left after resampling maps_img.")
    if (
        ref is not None
        and mask is not None
        and mask_grid is not None
        and not ref.same_as(mask_grid)
    ):
        messages.append("Resampling mask")
        mask = spatial.resample_mask(mask, mask_grid, ref)
        mask_grid = ref

    if not any_map:
        raise ValueError("maps_img contains no map.")
    if mask is not None and ref is not None and not any_in_mask(maps, mask):
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
