"""The extraction graph of one image: products → (solve, clean) and (solve) as Dask arrays.

:func:`extraction_graph` takes the image's lazy data (after the spatial steps), the regression
prepared on its grid and the cleaning options, and returns the dask arrays of the cleaned signals,
the confounds and the raw region signals.  It knows nothing of xarray labels or nilearn's checks
(:mod:`daskmasker.masker.checks`); :mod:`daskmasker.masker.transform` calls it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from daskmasker.compute.clean import clean_arrays
from daskmasker.compute.projection import GridMaps, raw_signals, warn_nonfinite
from daskmasker.compute.regression import NORMAL_EQUATIONS
from daskmasker.compute.source import ChunkSource
from daskmasker.io import load
from daskmasker.io.image import READER_ENCODING
from daskmasker.masker import confounds as confounds_mod
from daskmasker.masker import params as params_mod
from daskmasker.masker.confounds import HighVariance
from daskmasker.runtime.client import active_client
from daskmasker.runtime.forwarding import forward_warnings
from daskmasker.runtime.scheduling import maps_sharing


class ExtractionGraph(NamedTuple):
    """The dask arrays of one image's extraction: cleaned and raw region signals."""

    cleaned: da.Array
    raw: da.Array


def extraction_graph(
    raw: xr.DataArray,
    img: xr.DataArray,
    grid_maps: GridMaps,
    *,
    confounds: da.Array | None,
    mask_idx: np.ndarray | None,
    clean: dict[str, Any],
    out_dtype: np.dtype,
    high_variance: bool,
) -> ExtractionGraph:
    """The products of ``img`` with the maps, then one cleaning task and one raw-solve task.

    Parameters
    ----------
    raw : xarray.DataArray
        The image as loaded (4D): high-variance confounds are computed from it.
    img : xarray.DataArray
        The image after the spatial steps (resampled, smoothed), on ``grid_maps``' grid.
    grid_maps : GridMaps
        The maps and their Gram solver on that grid.
    confounds : dask array, optional
        The confounds (:func:`confounds_graph`).
    mask_idx : ndarray, optional
        The kept volumes.
    clean : dict
        :func:`~daskmasker.compute.clean.clean_arrays` keywords (:func:`clean_kwargs`).
    out_dtype : numpy dtype
    high_variance : bool
        Whether the raw image is also read for high-variance confounds.

    Returns
    -------
    ExtractionGraph
    """
    data = img.data if isinstance(img.data, da.Array) else da.from_array(img.data)
    n_scans = int(raw.shape[0])
    products = raw_signals(
        data,
        grid_maps,
        reader=_chunk_reader(raw, img, data, high_variance),
        share=maps_sharing(),
        # a .nii.gz on a cluster: a batch per task on one worker; locally a paced read chain
        fused=active_client() is not None,
    )
    n_out = n_scans if mask_idx is None else int(mask_idx.size)
    n_kept = int(grid_maps.kept.size)
    assert grid_maps.solver is not None  # only the joint maps of several atlases have none
    operator = grid_maps.solver.operator
    # t, s and c are contracted: the task concatenates the blocks itself, and the confounds keep
    # their own time chunks (a shared index would rechunk them to the products' batches)
    args = [products, "tk"] + ([confounds, "sc"] if confounds is not None else [])
    options = dict(operator=operator, mask_idx=mask_idx, kwargs=clean, out_dtype=out_dtype)
    # one block, named up front: a cluster's compute forwards its warnings by this name
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
    raw_name = f"raw-signals-{tokenize(products, operator)}"
    solved = da.blockwise(
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
        operator=operator,
    )
    return ExtractionGraph(cleaned, solved)


def _chunk_reader(
    raw: xr.DataArray, img: xr.DataArray, data: da.Array, high_variance: bool
) -> ChunkSource | None:
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


def confounds_graph(confounds: list | None, raw: xr.DataArray) -> da.Array | None:
    """User confounds (validated now) and the lazy high-variance ones, in nilearn's order.

    Parameters
    ----------
    confounds : list, optional
        Confounds in nilearn's order, :class:`HighVariance` marking the high-variance ones
        (:func:`~daskmasker.masker.confounds.confounds_list`).
    raw : xarray.DataArray
        The image as loaded (4D): the high-variance confounds are computed from it.

    Returns
    -------
    dask array of shape (volumes, confounds), or None
    """
    n_scans = int(raw.shape[0])
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


def output_dtype(pipeline_dtype: Any, source_dtype: Any, dtype: Any) -> np.dtype:
    """nilearn's output dtype: the pipeline's float dtype, or the requested one (§3.5)."""
    pipeline = np.dtype(pipeline_dtype)
    if pipeline.kind != "f":
        pipeline = np.dtype(np.float32 if pipeline.itemsize <= 4 else np.float64)
    if dtype is None:
        return pipeline
    target = params_mod.target_dtype(source_dtype, dtype)
    return np.dtype(source_dtype if target is None else target)


def _raw_block(products: np.ndarray, *, operator: np.ndarray) -> np.ndarray:
    return NORMAL_EQUATIONS.finalize(products, operator)[0]


@forward_warnings
def _clean_block(
    products: np.ndarray,
    conf: np.ndarray | None = None,
    *,
    operator: np.ndarray,
    mask_idx: np.ndarray | None,
    kwargs: dict[str, Any],
    out_dtype: np.dtype,
) -> np.ndarray:
    signals, nonfinite = NORMAL_EQUATIONS.finalize(products, operator)
    warn_nonfinite(nonfinite)
    cleaned = clean_arrays(signals, confounds=conf, sample_mask=mask_idx, **kwargs)
    return np.asarray(cleaned).astype(out_dtype, copy=False)
