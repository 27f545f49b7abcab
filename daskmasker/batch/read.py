"""Reading batch stores: :func:`open_timeseries` (one lazy xarray Dataset of the whole study);
:func:`store_info` (:mod:`daskmasker.batch.info`) and :func:`open_store` are here too."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import xarray as xr

from daskmasker.batch.info import store_info
from daskmasker.batch.store import is_pending, listed_runs, open_run, open_store

__all__ = ["open_store", "open_timeseries", "store_info"]


def open_timeseries(
    store: str, run: str | None = None, *, storage_options: dict | None = None
) -> xr.Dataset:
    """A batch store's runs as one lazy xarray Dataset (nothing is read until used).

    Parameters
    ----------
    store : str
        A batch store (path or fsspec URL) written by ``run_batch``, ``daskmasker extract``,
        ``reclean`` or ``daskmasker clean``.
    run : str, optional
        One run's name: that run alone, in memory, as it was written (``signals`` on (time,
        region), ``raw_signals`` and ``confounds`` on (volume, ...), see
        :mod:`daskmasker.batch.dataset`).
    storage_options : dict, optional
        fsspec options for URLs.

    Returns
    -------
    xarray.Dataset
        Without ``run``: the study, dims (run, time, region, volume, confound), Dask-backed:

        - ``signals`` (run, time, region): run ``r``'s kept frames in ``time < n_frames[r]``
          (left-aligned: ``time`` is the position among the kept frames), **NaN past them**;
        - ``raw_signals`` (run, volume, region) and ``confounds`` (run, volume, confound),
          NaN past ``n_volumes[r]`` (and for confound columns a run has not);
        - on ``run``: the run names (index, in name order whatever the order the runs were
          written in: a resumed batch appends its runs), the BIDS entities of the source file names
          (``subject``, ``session``, ``task``, ``acquisition``, ``bids_run``, ``space``,
          ``description``, and any other present; ``""`` when absent), ``t_r`` (s, NaN when
          unknown), ``n_volumes``, ``n_frames``, ``source``, ``checksum``;
        - ``frame`` and ``onset`` (run, time): the kept volume of each time point (-1 past
          ``n_frames``) and its onset in s; ``region_name`` on ``region``.

        The one-dimensional coordinates are read (so they index without computing), the
        others are lazy.  So ``ds.where(ds.subject == "01", drop=True)``, ``ds.groupby("task")`` and
        ``ds.sel(run="sub-01_task-rest")`` work as on any Dataset; ``xr.open_zarr(store)`` opens
        the same arrays.

    Raises
    ------
    FileNotFoundError, ValueError
        No batch store there, or a store of the previous layout (the message names
        ``daskmasker upgrade``).
    """
    location, _ = open_store(store, storage_options)
    if run is not None:
        try:
            return open_run(location, run)
        except KeyError:
            names = sorted(listed_runs(location))
            shown = f"{names[:10]}" + (f" and {len(names) - 10} more" if len(names) > 10 else "")
            raise KeyError(f"no run {run!r} in {store}; runs: {shown}") from None
    ds = xr.open_zarr(location.store, consolidated=True, zarr_format=3)
    if "run" not in ds.dims:
        raise ValueError(f"{store} holds no complete run (or none gathered yet: rerun the batch)")
    # listed only when a batch has not gathered its runs (runs/.pending): a listing of 10,000
    # runs on S3 is 10 requests in turn, most of an open
    missing = is_pending(location) and len(listed_runs(location) - set(ds["run"].values.tolist()))
    if missing:
        warnings.warn(
            f"{store}: {missing} complete runs are not in the study's arrays yet (the batch "
            "was stopped before gathering them); rerun the same batch (it resumes and gathers "
            "them) or call daskmasker.batch.study.gather",
            stacklevel=2,
        )
    names = [name for name, c in ds.coords.items() if c.ndim == 1 and name not in ds.dims]
    values = dask.compute(*[ds[name].data for name in names])  # concurrent reads
    small = {
        name: xr.Variable(ds[name].dims, value, ds[name].attrs)
        for name, value in zip(names, values, strict=True)
    }
    ds = ds.assign_coords(small).assign_attrs(store=str(store))
    order = np.argsort(ds["run"].values, kind="stable")
    if np.any(order != np.arange(order.size)):  # a resumed batch appended runs: name order
        ds = ds.isel(run=order)
    return ds
