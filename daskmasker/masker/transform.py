"""The transform graph: an image → its lazy, cleaned region signals.

:func:`lazy_signals` checks the image's grid against the fitted maps (warning or raising as
nilearn does), applies the lazy spatial steps (resampling, smoothing), builds the projection
graph (:mod:`daskmasker.compute.projection`), the confounds and one cleaning task per image, and
labels the result as a ``DataArray`` (time, region).  Nothing is computed here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from daskmasker.compute.clean import clean_arrays
from daskmasker.compute.grid import check_same_grids
from daskmasker.compute.maps import check_overlap
from daskmasker.compute.projection import raw_signals, region_signals, warn_nonfinite
from daskmasker.io import load
from daskmasker.io.image import READER_ENCODING, REGION_DIM, TIME_DIM, image_grid
from daskmasker.masker import confounds as confounds_mod
from daskmasker.masker import params as params_mod
from daskmasker.masker import spatial
from daskmasker.masker.fitting import FittedMaps
from daskmasker.runtime.client import active_client
from daskmasker.runtime.forwarding import forward_warnings
from daskmasker.runtime.scheduling import maps_sharing
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


class HighVariance:
    """Marks where the high-variance confounds of the raw image go in the confounds list."""


def lazy_signals(
    fitted: FittedMaps,
    imgs: Any,
    params: dict,
    clean_args: dict,
    confounds: list | None = None,
    sample_mask: Any = None,
    log: Callable[[str], None] = lambda msg: None,
) -> tuple[xr.DataArray, da.Array | None, da.Array]:
    """Lazy cleaned signals of one image, the lazy confounds they are cleaned with and the
    lazy uncleaned region signals.

    Parameters
    ----------
    fitted : FittedMaps
    imgs : anything :func:`daskmasker.io.load.load_image` accepts (3D or 4D)
    params : dict
        The masker's parameters (``get_params()``).
    clean_args : dict
        The masker's ``clean_args_``.
    confounds : list, optional
        Confounds in nilearn's order, :class:`HighVariance` marking the high-variance ones.
    sample_mask : optional
        Volumes to keep.
    log : callable, optional
        Receives the verbose messages.

    Returns
    -------
    (xarray.DataArray, dask array or None, dask array)
        Signals with dims (time, region), ``region`` holding the extracted maps' indices, ``frame``
        the kept volumes and ``time`` their onsets (s) when TR is known; the confounds; and the
        region signals before cleaning, float64 ``(volumes, regions)``, all volumes (the
        cleaning of ``signals`` applied to them gives ``signals``).
    """
    img = load.load_image(imgs)
    is_3d = img.ndim == 3
    if is_3d:
        img = img.expand_dims(TIME_DIM)
    raw = img
    data_grid = image_grid(img)
    n_scans = int(img.shape[0])

    target = params["resampling_target"]
    if target is None:
        grids = {"maps": fitted.maps_grid, "data": data_grid}
        if fitted.mask is not None:
            grids["mask"] = fitted.mask_grid
        sources = {
            "maps": load.source_name(params["maps_img"]),
            "mask": load.source_name(params["mask_img"]),
            "data": load.source_name(imgs),
        }
        check_same_grids(grids, sources)
    elif target == "data":
        if not data_grid.same_as(fitted.maps_grid):
            warn("Resampling maps at transform time...\n" + RESAMPLE_TRANSFORM_HINT)
        if fitted.mask is not None and not data_grid.same_as(fitted.mask_grid):
            warn("Resampling mask at transform time...\n" + RESAMPLE_TRANSFORM_HINT)
    elif target == "maps" and not data_grid.same_as(fitted.maps_grid):
        warn(
            "Resampling images at transform time...\n"
            "To avoid this warning, make sure to resample the images you want to transform "
            "to the shape of the maps or set resampling_target to 'data'."
        )
    grid_maps = fitted.on_grid(data_grid if target == "data" else fitted.maps_grid)
    if not params["allow_overlap"]:
        check_overlap(grid_maps.maps)

    if target in ("maps", "mask") and not data_grid.same_as(fitted.maps_grid):
        log("Resampling images")
        img = spatial.resample_image(img, fitted.maps_grid, "continuous")
    if params["smoothing_fwhm"] is not None:
        log("Smoothing images")
        img = spatial.smooth_image(img, params["smoothing_fwhm"])
    data = img.data if isinstance(img.data, da.Array) else da.from_array(img.data)
    pipeline_dtype = np.result_type(data.dtype, fitted.maps.dtype)

    log("Extracting region signals")
    if params["keep_masked_maps"] and fitted.mask is not None:
        warn(KEEP_MASKED_MAPS_WARNING, FutureWarning)
    elif grid_maps.kept.size == 0:
        # fitted without an image, the mask resampled onto this grid covers no map (nilearn
        # checks this at fit when it knows the grid, and at extraction otherwise)
        raise ValueError(NO_MAP_LEFT)
    elif grid_maps.dropped:
        warn(
            "After applying mask to the maps image, maps with the following indices were "
            f"removed: {set(grid_maps.dropped)}. Out of {fitted.n_maps} maps, the masked "
            f"map image only contains {grid_maps.kept.size} maps."
        )
    products = raw_signals(
        data,
        grid_maps,
        reader=_chunk_reader(raw, img, data, params["high_variance_confounds"]),
        share=maps_sharing(),
        # a .nii.gz on a cluster: a batch per task on one worker; locally a paced read chain
        fused=active_client() is not None,
    )

    conf = _confounds(confounds, raw, n_scans)
    mask_idx = confounds_mod.load_sample_mask(sample_mask, n_scans)
    log("Cleaning extracted signals")
    out_dtype = output_dtype(pipeline_dtype, raw.dtype, params["dtype"])
    n_out = n_scans if mask_idx is None else int(mask_idx.size)
    # one block, named up front: a cluster's compute forwards its warnings by this name
    n_kept = int(grid_maps.kept.size)
    # t, s and c are contracted: the task concatenates the blocks itself, and the confounds keep
    # their own time chunks (a shared index would rechunk them to the products' batches)
    args = [products, "tk"] + ([conf, "sc"] if conf is not None else [])
    options = dict(
        operator=grid_maps.solver.operator,
        mask_idx=mask_idx,
        kwargs=clean_kwargs(params, clean_args),
        out_dtype=out_dtype,
    )
    name = f"clean_block-{tokenize(*args, options)}"
    cleaned = da.blockwise(
        _clean_block,
        "jk",
        *args,
        name=name,
        concatenate=True,
        new_axes={"j": n_out},
        adjust_chunks={"k": (n_kept,)},
        dtype=out_dtype,
        meta=np.empty((0, 0), dtype=out_dtype),
        collection=name,
        **options,
    )
    # the uncleaned region signals, solved as the cleaning task solves them (same bits), for
    # stores that are re-cleaned later; computed only when asked for
    raw_name = f"raw-signals-{tokenize(products, grid_maps.solver.operator)}"
    raw_signals_ = da.blockwise(
        _raw_block,
        "jk",
        products,
        "tk",
        name=raw_name,
        concatenate=True,
        new_axes={"j": n_scans},
        adjust_chunks={"k": (n_kept,)},
        dtype=np.float64,
        meta=np.empty((0, 0), dtype=np.float64),
        operator=grid_maps.solver.operator,
    )
    t_r = params["t_r"] or img.attrs.get("t_r")
    frames = np.arange(n_scans) if mask_idx is None else np.asarray(mask_idx)
    coords = {
        REGION_DIM: ("region", grid_maps.kept),
        "frame": ("time", frames),
    }
    if t_r:
        coords[TIME_DIM] = ("time", frames * float(t_r), {"units": "s"})
    signals = xr.DataArray(
        cleaned,
        dims=(TIME_DIM, REGION_DIM),
        coords=coords,
        name="signals",
        attrs={"is_3d": int(is_3d), **json_params(params)},
    )
    signals.encoding["source"] = raw.attrs.get("source")
    signals.encoding["header_t_r"] = img.attrs.get("t_r")
    signals.encoding["dtypes"] = {"pipeline": str(pipeline_dtype), "source": str(raw.dtype)}
    return signals, conf, raw_signals_


def _chunk_reader(raw: xr.DataArray, img: xr.DataArray, data: da.Array, high_variance: bool):
    """The chunk reader the projection may read through, if the data is used as read.

    Data used as read (not resampled, smoothed, or also read for high-variance confounds) is
    read through its reader by the projection (see :func:`daskmasker.compute.projection.project`:
    a Zarr chunk is read and gathered by one task; a ``.nii.gz`` is read in a chain, fused with
    the products on a cluster, paced by the gathers locally).
    """
    reader = raw.encoding.get(READER_ENCODING) if img is raw else None
    if reader is None or high_variance or not reader.chunks_of(data):
        return None
    return reader


def _confounds(confounds: list | None, raw: xr.DataArray, n_scans: int) -> da.Array | None:
    """User confounds (validated now) and the lazy high-variance ones, in nilearn's order."""
    if confounds is None:
        return None
    parts = []
    user = [c for c in confounds if not isinstance(c, HighVariance)]
    for item in confounds:
        if isinstance(item, HighVariance):
            from daskmasker.compute.variance import lazy_high_variance_confounds

            if raw.shape[0] == 1:
                raise load.DimensionError(4, 3)
            data = raw.data if isinstance(raw.data, da.Array) else da.from_array(raw.data)
            parts.append(lazy_high_variance_confounds(data))
        elif item is user[0]:
            loaded = confounds_mod.load_confounds(user, n_scans)
            if loaded is not None:
                values = np.atleast_2d(loaded.T).T
                # named after the image too: images given the same confounds must not
                # share a key, which would tie each image's job to another's on a cluster
                name = f"confounds-{tokenize(values, getattr(raw.data, 'name', None))}"
                parts.append(da.from_array(values, name=name))
    if not parts:
        return None
    return da.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def clean_kwargs(params: dict, clean_args: dict) -> dict:
    """The masker's cleaning parameters as :func:`~daskmasker.compute.clean.clean_arrays`
    keywords (``clean_args`` renamed: ``butterworth__order`` → ``butterworth_order``...)."""
    kwargs = {
        "detrend": params["detrend"],
        "standardize": params["standardize"],
        "standardize_confounds": params["standardize_confounds"],
        "t_r": params["t_r"],
        "low_pass": params["low_pass"],
        "high_pass": params["high_pass"],
    }
    renames = {
        "butterworth__order": "butterworth_order",
        "butterworth__padtype": "padtype",
        "butterworth__padlen": "padlen",
    }
    for key, value in clean_args.items():
        kwargs[renames.get(key, key)] = value
    return kwargs


def json_params(values: dict, none: Any = "None") -> dict:
    """Masker parameters as attrs: JSON-friendly values, images described by their repr, None
    as ``none`` (the string "None" by default: netCDF attributes have no null)."""
    out = {}
    for key, value in values.items():
        if value is None or isinstance(value, bool | int | float | str):
            out[key] = value if value is not None else none
        elif isinstance(value, dict):
            out[key] = repr(value)
        else:
            out[key] = load.describe(value)
    return out


def _raw_block(products: np.ndarray, *, operator: np.ndarray) -> np.ndarray:
    return region_signals(products, operator)[0]


@forward_warnings
def _clean_block(products, conf=None, *, operator, mask_idx, kwargs, out_dtype):
    signals, nonfinite = region_signals(products, operator)
    warn_nonfinite(nonfinite)
    cleaned = clean_arrays(signals, confounds=conf, sample_mask=mask_idx, **kwargs)
    return np.asarray(cleaned).astype(out_dtype, copy=False)


def output_dtype(pipeline_dtype, source_dtype, dtype) -> np.dtype:
    """nilearn's output dtype: the pipeline's float dtype, or the requested one (§3.5)."""
    pipeline = np.dtype(pipeline_dtype)
    if pipeline.kind != "f":
        pipeline = np.dtype(np.float32 if pipeline.itemsize <= 4 else np.float64)
    if dtype is None:
        return pipeline
    target = params_mod.target_dtype(source_dtype, dtype)
    return np.dtype(source_dtype if target is None else target)
