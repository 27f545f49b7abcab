"""Reading batch stores: :func:`open_timeseries` (lazy xarray) and :func:`store_info`."""

from __future__ import annotations

from typing import Any

import pandas as pd
import xarray as xr
import zarr

from daskmasker.batch.fingerprint import NOT_NUMBERS, ROLES, VERSIONED
from daskmasker.batch.provenance import versions
from daskmasker.batch.store import BATCH_ATTR, COMPLETE_ATTR, run_names
from daskmasker.io.checksum import digest
from daskmasker.io.fs import Location


def open_store(store: str, storage_options: dict | None = None) -> tuple[zarr.Group, Any]:
    """A batch store's root group and zarr store; errors name what is there instead."""
    location = Location(store, storage_options)
    try:
        group = zarr.open_group(location.store, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise FileNotFoundError(f"no batch store at '{store}'") from exc
    if BATCH_ATTR not in group.attrs:
        raise ValueError(f"'{store}' is a Zarr group but not a daskmasker batch store")
    return group, location.store


def open_timeseries(
    store: str, run: str | None = None, *, storage_options: dict | None = None
) -> xr.Dataset:
    """A batch store's region signals as a lazy xarray Dataset (nothing is read until used).

    Parameters
    ----------
    store : str
        A batch store (path or fsspec URL) written by ``run_batch``, ``daskmasker extract``,
        ``reclean`` or ``daskmasker clean``.
    run : str, optional
        One run's group name: its whole Dataset (``signals``, ``raw_signals``, ``confounds``
        and their coordinates, see :mod:`daskmasker.batch.store`).
    storage_options : dict, optional
        fsspec options for URLs.

    Returns
    -------
    xarray.Dataset
        With ``run``: that run's Dataset.  Without: the ``signals`` of every complete run along
        a new ``run`` dimension, dims (run, time, region), aligned on ``time`` (seconds when the
        TR is known, else the volume index) and ``region`` (map index), NaN where a run has no
        such volume or region; coordinates ``region_name`` and ``source`` (per run).
    """
    group, zstore = open_store(store, storage_options)
    if run is not None:
        if run not in run_names(group):
            raise KeyError(f"no run {run!r} in {store}; runs: {run_names(group)}")
        return xr.open_zarr(zstore, group=run, consolidated=False)
    names = run_names(group, complete_only=True)
    if not names:
        raise ValueError(f"{store} holds no complete run")
    parts = []
    for name in names:
        ds = xr.open_zarr(zstore, group=name, consolidated=False)
        signals = ds["signals"]
        if "time" not in signals.coords:
            signals = signals.assign_coords(time=("time", ds["frame"].values, {"units": "volume"}))
        signals = signals.drop_vars("frame").assign_coords(region_name=ds["region_name"].load())
        parts.append(signals.assign_coords(source=ds.attrs.get("source", "")))
    combined = xr.concat(
        parts, dim=pd.Index(names, name="run"), join="outer", coords="different", compat="equals"
    )
    return combined.to_dataset(name="signals").assign_attrs(store=str(store))


def store_info(store: str, storage_options: dict | None = None) -> str:
    """A readable summary of a batch store: runs, shapes, parameters, fingerprint status.

    The fingerprint status compares each run's recorded inputs with the files as they are now
    (size and modification time first, contents when those changed) and the recorded versions
    with the installed ones: ``current``, or what changed since.
    """
    group, _ = open_store(store, storage_options)
    runs = run_names(group)
    complete = run_names(group, complete_only=True)
    lines = [f"{store}: daskmasker batch store, {len(runs)} runs ({len(complete)} complete)"]
    first = dict(group[complete[0]].attrs) if complete else {}
    params = first.get("parameters") or group.attrs[BATCH_ATTR].get("parameters", {})
    shown = sorted((k, v) for k, v in params.items() if k not in NOT_NUMBERS)
    lines.append("parameters: " + ", ".join(f"{k}={v}" for k, v in shown))
    if first.get("recleaned_from"):
        lines.append(f"re-cleaned from: {first['recleaned_from']['store']}")
    head = f"{'run':<32} {'complete':<9} {'time x region':<14} {'volumes':<8}"
    lines.append(f"{head} {'coverage min (below)':<21} fingerprint")
    installed = versions()
    shared: dict = {}
    for name in runs:
        attrs = dict(group[name].attrs)
        done = "yes" if attrs.get(COMPLETE_ATTR) else "no"
        try:
            shape = "x".join(str(s) for s in group[name]["signals"].shape)
            volumes = str(group[name]["raw_signals"].shape[0])
        except KeyError:
            shape, volumes = "-", "-"
        status = _status(attrs.get("fingerprint"), installed, storage_options, shared)
        cover = _coverage(group[name], attrs)
        lines.append(f"{name:<32} {done:<9} {shape:<14} {volumes:<8} {cover:<21} {status}")
    return "\n".join(lines)


def _coverage(run: zarr.Group, attrs: dict) -> str:
    """The run's lowest map coverage by its brain mask, and how many regions are below
    ``min_coverage`` (``-`` for a run extracted without a brain mask)."""
    try:
        values = run["coverage"][...]
    except KeyError:
        return "-"
    low = len(attrs.get("low_coverage_regions") or [])
    return f"{float(values.min()):.3f} ({low})" if values.size else "-"


def _status(fp: dict | None, installed: dict, storage_options, shared: dict) -> str:
    """``current``, or what changed in the run's inputs and packages since it was written."""
    if not fp:
        return "none recorded"
    changed = []
    for role in ROLES:
        recorded = fp.get(role)
        if recorded is None or not isinstance(recorded.get("source"), str):
            continue
        if recorded["source"].startswith("<"):
            recorded = recorded.get("file")  # a table read from a file: compare the file
            if recorded is None:
                continue  # in memory when extracted: nothing to compare with
        source = recorded["source"]
        key = (source, recorded.get("stat"))
        if key not in shared:
            try:
                shared[key] = digest(source, storage_options, recorded)["sha256"]
            except (FileNotFoundError, OSError):
                shared[key] = None
        if shared[key] is None:
            changed.append(f"{role} missing")
        elif shared[key] != recorded["sha256"]:
            changed.append(f"{role} changed")
    for name in VERSIONED:
        if fp.get("versions", {}).get(name) != installed.get(name):
            changed.append(f"{name} {fp['versions'].get(name)} -> {installed.get(name)}")
    return ", ".join(changed) if changed else "current"
