"""An image → its lazy, cleaned region signals, read top to bottom.

:func:`lazy_signals` loads the image (header only), checks it against the fitted maps
(:mod:`daskmasker.masker.checks`: nilearn's warnings and errors), applies the lazy spatial steps
(resampling, smoothing: :mod:`daskmasker.masker.spatial`), builds the extraction graph
(:mod:`daskmasker.masker.graph`: products, solve, clean) and labels the result as a ``DataArray``
(time, region).  Nothing is computed here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from daskmasker.compute.grid import Grid
from daskmasker.io import load
from daskmasker.io.image import REGION_DIM, TIME_DIM, image_grid
from daskmasker.masker import checks, coverage, spatial
from daskmasker.masker import confounds as confounds_mod
from daskmasker.masker.fitting import FittedMaps
from daskmasker.masker.graph import clean_kwargs, confounds_graph, extraction_graph, output_dtype


def lazy_signals(
    fitted: FittedMaps,
    imgs: Any,
    params: dict,
    clean_args: dict,
    confounds: list | None = None,
    sample_mask: Any = None,
    log: Callable[[str], None] = lambda msg: None,
    brain_mask: Any = None,
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
        Confounds in nilearn's order, :class:`~daskmasker.masker.confounds.HighVariance` marking
        the high-variance ones (:func:`~daskmasker.masker.confounds.confounds_list`).
    sample_mask : optional
        Volumes to keep.
    log : callable, optional
        Receives the verbose messages.
    brain_mask : 3D image, optional
        The run's brain mask (fMRIPrep's ``desc-brain_mask``): the maps' coverage
        (:mod:`daskmasker.masker.coverage`) is measured inside it (and the masker's mask).

    Returns
    -------
    (xarray.DataArray, dask array or None, dask array)
        Signals with dims (time, region), ``region`` holding the extracted maps' indices, ``frame``
        the kept volumes and ``time`` their onsets (s) when TR is known; the confounds; and the
        region signals before cleaning, float64 ``(volumes, regions)``, all volumes (the
        cleaning of ``signals`` applied to them gives ``signals``).  With a ``brain_mask`` or a
        ``min_coverage`` parameter, ``signals`` has a ``coverage`` coordinate (region,) and the
        regions below ``min_coverage`` are NaN.
    """
    raw = load.load_image(imgs)
    checks.check_real(raw.dtype, raw.attrs.get("source"))
    is_3d = raw.ndim == 3
    if is_3d:
        raw = raw.expand_dims(TIME_DIM)
    data_grid = image_grid(raw)
    n_scans = int(raw.shape[0])
    target = params["resampling_target"]

    sources = {
        "maps": load.source_name(params["maps_img"]),
        "mask": load.source_name(params["mask_img"]),
        "data": load.source_name(imgs),
    }
    checks.check_grid(fitted, data_grid, target, sources)
    grid_maps = fitted.on_grid(data_grid if target == "data" else fitted.maps_grid)
    checks.check_overlap_allowed(grid_maps, params["allow_overlap"])
    img = _spatial_steps(raw, fitted, data_grid, params, log)
    log("Extracting region signals")
    checks.check_extracted_maps(fitted, grid_maps, params["keep_masked_maps"])

    pipeline_dtype = np.result_type(img.dtype, fitted.maps.dtype)
    conf = confounds_graph(confounds, raw)  # validated now, before the sample mask (nilearn)
    mask_idx = confounds_mod.load_sample_mask(sample_mask, n_scans)
    log("Cleaning extracted signals")
    graph = extraction_graph(
        raw,
        img,
        grid_maps,
        confounds=conf,
        mask_idx=mask_idx,
        clean=clean_kwargs(params, clean_args),
        out_dtype=output_dtype(pipeline_dtype, raw.dtype, params["dtype"]),
        high_variance=params["high_variance_confounds"],
    )
    signals = _labelled(graph.cleaned, grid_maps.kept, mask_idx, n_scans, params, img, is_3d)
    if brain_mask is not None or params.get("min_coverage") is not None:
        on = data_grid if target == "data" else fitted.maps_grid
        signals = coverage.apply(signals, grid_maps, on, brain_mask, params)
    signals.encoding["source"] = raw.attrs.get("source")
    signals.encoding["header_t_r"] = img.attrs.get("t_r")
    signals.encoding["dtypes"] = {"pipeline": str(pipeline_dtype), "source": str(raw.dtype)}
    return signals, conf, graph.raw


def _spatial_steps(
    img: xr.DataArray,
    fitted: FittedMaps,
    data_grid: Grid,
    params: dict,
    log: Callable[[str], None],
) -> xr.DataArray:
    """The image on the extraction grid, smoothed if asked (lazy)."""
    if params["resampling_target"] in ("maps", "mask") and not data_grid.same_as(fitted.maps_grid):
        log("Resampling images")
        img = spatial.resample_image(img, fitted.maps_grid, "continuous")
    if params["smoothing_fwhm"] is not None:
        log("Smoothing images")
        img = spatial.smooth_image(img, params["smoothing_fwhm"])
    return img


def _labelled(
    cleaned: da.Array,
    kept: np.ndarray,
    mask_idx: np.ndarray | None,
    n_scans: int,
    params: dict,
    img: xr.DataArray,
    is_3d: bool,
) -> xr.DataArray:
    """The cleaned signals as a DataArray (time, region) with the kept frames and their onsets."""
    t_r = params["t_r"] or img.attrs.get("t_r")
    frames = np.arange(n_scans) if mask_idx is None else np.asarray(mask_idx)
    coords = {
        REGION_DIM: ("region", kept, _cf("map index", "1", "index of each map in maps_img")),
        "frame": ("time", frames, _cf("volume index", "1", "index of each kept volume")),
    }
    if t_r:
        onset = "onset of each kept volume: its index times the repetition time"
        coords[TIME_DIM] = ("time", frames * float(t_r), _cf("time", "s", onset))
    else:  # every dimension has a coordinate: without a TR, the kept volumes' indices
        unknown = "index of each kept volume (no repetition time: give t_r for onsets in s)"
        coords[TIME_DIM] = ("time", frames, _cf("kept volume", "1", unknown))
    units = {"zscore_sample": "1", "zscore": "1", "psc": "%"}.get(params["standardize"], "1")
    return xr.DataArray(
        cleaned,
        dims=(TIME_DIM, REGION_DIM),
        coords=coords,
        name="signals",
        attrs={
            **_cf(
                "region signals",
                units,
                "each map's time series: the least-squares fit of the maps to each volume's "
                "voxels, cleaned with the masker's parameters (these attributes); standardize="
                f"{params['standardize']!r} (units 1: z-scores or the image's own units)",
            ),
            "is_3d": int(is_3d),
            **json_params(params),
        },
    )


def _cf(long_name: str, units: str, description: str) -> dict[str, str]:
    return {"long_name": long_name, "units": units, "description": description}


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
