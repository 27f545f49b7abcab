"""Reading batch stores: :func:`open_timeseries` (one lazy xarray Dataset of the whole study)
and :func:`store_info`."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import xarray as xr
import zarr

from daskmasker.batch.fingerprint import NOT_NUMBERS, ROLES, VERSIONED
from daskmasker.batch.provenance import versions
from daskmasker.batch.store import (
    BATCH_ATTR,
    check_layout,
    entry_of,
    listed_runs,
    open_run,
    read_index,
    run_attrs,
)
from daskmasker.io.checksum import digest
from daskmasker.io.fs import Location


def open_store(store: str, storage_options: dict | None = None) -> tuple[Location, dict]:
    """A batch store's location and root attributes; errors name what is there instead, and a
    store of the previous layout is refused with the command that converts it."""
    location = Location(store, storage_options)
    try:
        group = zarr.open_group(location.store, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise FileNotFoundError(f"no batch store at '{store}'") from exc
    attrs = dict(group.attrs)
    if BATCH_ATTR not in attrs:
        raise ValueError(f"'{store}' is a Zarr group but not a daskmasker batch store")
    check_layout(attrs, str(store))
    return location, attrs


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
    missing = len(listed_runs(location) - set(ds["run"].values.tolist()))
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


def store_info(store: str, storage_options: dict | None = None) -> str:
    """A readable summary of a batch store: runs, shapes, parameters, fingerprint status.

    The fingerprint status compares each run's recorded inputs with the files as they are now
    (size and modification time first, contents when those changed) and the recorded versions
    with the installed ones: ``current``, or what changed since.  Reads the root, the resume
    index, the study's per-run coordinates and one listing, whatever the number of runs.
    """
    location, attrs = open_store(store, storage_options)
    batch = attrs[BATCH_ATTR]
    listed = listed_runs(location)
    shapes: dict[str, tuple[int, int, int]] = {}
    cover: dict[str, str] = {}
    ds = xr.open_zarr(location.store, consolidated=True, zarr_format=3)
    if "run" in ds.dims:
        names = ds["run"].values.tolist()
        frames, volumes = ds["n_frames"].values.tolist(), ds["n_volumes"].values.tolist()
        n_regions = ds.sizes["region"]
        shapes = {n: (f, n_regions, v) for n, f, v in zip(names, frames, volumes, strict=True)}
        if "coverage" in ds:
            lowest = _coverage(ds["coverage"].values, batch)
            cover = dict(zip(names, lowest, strict=True))
    runs = sorted(listed | set(shapes))
    lines = [
        f"{store}: daskmasker batch store, {len(runs)} runs ({len(listed)} complete, "
        f"{len(set(shapes) & listed)} in the study's arrays)"
    ]
    params = batch.get("parameters", {})
    shown = sorted((k, v) for k, v in params.items() if k not in NOT_NUMBERS)
    lines.append("parameters: " + ", ".join(f"{k}={v}" for k, v in shown))
    if batch.get("recleaned_from"):
        lines.append(f"re-cleaned from: {batch['recleaned_from']}")
    head = f"{'run':<32} {'complete':<9} {'time x region':<14} {'volumes':<8}"
    lines.append(f"{head} {'coverage min (below)':<21} fingerprint")
    index = read_index(location)
    unindexed = listed - set(index)
    index.update(
        {n: entry_of(a.get("fingerprint") or {}) for n, a in run_attrs(location, unindexed).items()}
    )
    installed = versions()
    shared: dict = {}
    for name in runs:
        done = "yes" if name in listed else "no"
        frames, n_regions, volumes = shapes.get(name, ("-", "-", "-"))
        shape = f"{frames}x{n_regions}" if name in shapes else "-"
        status = _status(index.get(name), installed, storage_options, shared)
        coverage = cover.get(name, "-")
        lines.append(f"{name:<32} {done:<9} {shape:<14} {volumes!s:<8} {coverage:<21} {status}")
    return "\n".join(lines)


def _coverage(values: np.ndarray, batch: dict) -> list[str]:
    """Each run's lowest map coverage by its brain mask and how many regions are below the
    masker's ``min_coverage`` (``-`` for a run extracted without a brain mask)."""
    threshold = (batch.get("parameters") or {}).get("min_coverage")
    threshold = None if threshold in (None, "None") else float(threshold)
    out = []
    for row in values:
        if np.all(np.isnan(row)):
            out.append("-")
            continue
        low = 0 if threshold is None else int(np.sum(row < threshold))
        out.append(f"{float(np.nanmin(row)):.3f} ({low})")
    return out


def _status(entry: dict | None, installed: dict, storage_options: dict | None, shared: dict) -> str:
    """``current``, or what changed in the run's inputs and packages since it was written."""
    if not entry or not entry.get("fingerprint"):
        return "none recorded"
    changed = []
    for role in ROLES:
        recorded = entry.get(role)
        if recorded is None or not isinstance(recorded.get("source"), str):
            continue
        if recorded["source"].startswith("<"):
            recorded = recorded.get("file")  # a table read from a file: compare the file
            if recorded is None:
                continue  # in memory when extracted: nothing to compare with
        source = recorded["source"]
        key = (source, str(recorded.get("stat")))
        if key not in shared:
            try:
                found = digest(source, storage_options, recorded)  # None only for no input
                shared[key] = None if found is None else found["sha256"]
            except (FileNotFoundError, OSError):
                shared[key] = None
        if shared[key] is None:
            changed.append(f"{role} missing")
        elif shared[key] != recorded["sha256"]:
            changed.append(f"{role} changed")
    recorded_versions = entry.get("versions") or {}
    for name in VERSIONED:
        if recorded_versions.get(name) != installed.get(name):
            changed.append(f"{name} {recorded_versions.get(name)} -> {installed.get(name)}")
    return ", ".join(changed) if changed else "current"
