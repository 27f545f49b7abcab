"""Converting a batch store of the previous layout (one Zarr group per run) to the current one.

Each complete run group is read whole (its arrays and attributes are what a packed run holds),
packed and written to the new store, then the runs are gathered into the study's arrays.
Nothing is recomputed: values, fingerprints and provenance are carried over bit for bit, so a
resume of the same batch on the new store skips every run.  The old store is not modified.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import xarray as xr
import zarr

from daskmasker.batch.dataset import run_dataset
from daskmasker.batch.index import entry_of
from daskmasker.batch.run import finish
from daskmasker.batch.store import (
    BATCH_ATTR,
    LAYOUT,
    mark_pending,
    open_output,
    write_run,
)
from daskmasker.io.fs import Location

OLD_COMPLETE = "complete"


def upgrade(store: str, out: str, storage_options: dict | None = None) -> int:
    """Convert the previous layout's store ``store`` into a new store ``out``; returns the
    number of runs carried over.

    Raises
    ------
    ValueError
        If ``store`` is not a batch store of the previous layout, or ``out`` exists.
    """
    old = Location(store, storage_options)
    try:
        group = zarr.open_group(old.store, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise FileNotFoundError(f"no batch store at '{store}'") from exc
    found = group.attrs.get(BATCH_ATTR)
    if not isinstance(found, Mapping) or not found:
        raise ValueError(f"'{store}' is not a daskmasker batch store")
    batch: dict[str, Any] = dict(found)
    if batch.get("layout", 1) == LAYOUT:
        raise ValueError(f"'{store}' is already in the current layout: nothing to upgrade")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Object at .* is not recognized")
        runs = dict(sorted(group.groups()))
    complete = [n for n, run in runs.items() if run.attrs.get(OLD_COMPLETE)]
    older = [n for n in complete if "raw_signals" not in runs[n]]
    if older:
        raise ValueError(
            f"runs {older} of {store} have no raw_signals (written by an older daskmasker): "
            "extract them again (daskmasker extract) rather than upgrading"
        )
    target = Location(out, storage_options)
    if target.fs.exists(target.root):
        raise ValueError(f"'{out}' exists: upgrade writes a new store, give another path")
    location = open_output(out, batch.get("parameters", {}), False, storage_options)
    mark_pending(location)
    index = {}
    for name in complete:  # the others were half-written by a killed batch: a resume redoes them
        ds = xr.open_zarr(old.store, group=name, consolidated=False, chunks=None).load()
        attrs = {k: v for k, v in ds.attrs.items() if k != OLD_COMPLETE}
        confounds = ds["confounds"].values if "confounds" in ds else None
        run = run_dataset(
            ds["signals"].values,
            ds["raw_signals"].values,
            confounds,
            frames=ds["frame"].values,
            region=ds["region"].values,
            region_names=[str(n) for n in ds["region_name"].values],
            confound_names=None if confounds is None else [str(c) for c in ds["confound"].values],
            t_r=attrs.get("t_r"),
            attrs=attrs,
        )
        write_run(location, name, run)
        index[name] = entry_of(attrs.get("fingerprint") or {})
    finish(location, index)
    return len(index)
