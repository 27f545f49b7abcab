"""What runs where an item is computed: its outputs written there, and small items run whole.

A batch's results are written by the worker that computed them, fingerprint and BIDS files
included (the client only records which items are done, in the store's index), and small
items run whole in one task each (their graph built there too, run with the synchronous
scheduler), several per job: with a thousand runs of a few hundred kilobytes, building graphs
and writing stores in the client, one item after the other, was most of the time of a batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import dask
import dask.local
import numpy as np
import xarray as xr

from daskmasker.batch import bids
from daskmasker.batch.record import Recorder, index_entry, run_meta
from daskmasker.batch.store import write_run
from daskmasker.io.fs import Location
from daskmasker.io.retry import retry


@dataclass(frozen=True)
class Target:
    """Where an item's outputs are written (sent with its task)."""

    url: str
    name: str
    storage_options: dict | None = None
    bids: tuple[str, str, str, tuple[str, ...]] | None = None  # (root, stem, maps, sources)


Outcome = tuple[dict[str, str], dict[str, dict]]
"""What a job returns: ``({name: error}, {name: index entry})`` of its items."""


def store_item(
    signals: np.ndarray,
    raw: np.ndarray,
    conf: np.ndarray | None,
    recorder: Recorder,
    *,
    item,
    meta: dict,
    target: Target,
) -> Outcome:
    """Write an item's outputs where it was computed: its Dataset (fingerprint included: the
    inputs are hashed here) and BIDS files (if asked); the run is written last, as one object,
    so a complete run implies its BIDS files exist.  Returns its index entry."""
    ds = recorder.dataset(item, meta, signals, raw, conf)
    if target.bids is not None:
        write_bids(target, ds)
    location = Location(target.url, target.storage_options)
    retry(lambda: write_run(location, target.name, ds), f"{target.url}/runs/{target.name}")
    return {}, {target.name: index_entry(ds)}


def write_bids(target: Target, ds: xr.Dataset) -> None:
    """The BIDS TSV and sidecar of a run, from its Dataset."""
    root, stem, maps, sources = target.bids
    texts = bids.run_files(ds, stem, maps, sources)
    retry(lambda: bids.write_files(root, texts, target.storage_options), f"{root}/{stem}")


def source_name(image: Any) -> str | None:
    """The path or URL an input comes from, if it has one."""
    if isinstance(image, str) or hasattr(image, "__fspath__"):
        return os.fspath(image)
    if hasattr(image, "get_filename"):
        return image.get_filename()
    origin = getattr(image, "attrs", {}).get("source") if hasattr(image, "dims") else None
    return str(origin) if origin else None


def source(image: Any, storage_options: dict | None):
    """URLs are opened with the batch's storage options; anything else goes to the masker."""
    if storage_options and isinstance(image, str) and "://" in image:
        from daskmasker.io.load import load_image

        return load_image(image, storage_options=storage_options)
    return image


def run_items(recorder: Recorder, entries: list, storage_options: dict | None) -> Outcome:
    """Run items whole, one after the other: build, compute (synchronous scheduler) and store.

    ``entries`` are ``(item, target)`` pairs; returns the errors of the items that failed and
    the index entries of the others (complete in the store).
    """
    spec = recorder.spec
    errors, done = {}, {}
    for item, target in entries:
        try:
            signals, conf, raw = spec.lazy(
                source(item.image, storage_options),
                item.confounds,
                item.sample_mask,
                brain_mask=source(item.brain_mask, storage_options),
            )
            # the synchronous scheduler's function: its name would make Dask import distributed
            values, raw_values, conf_values = dask.compute(
                signals.data, raw, conf, scheduler=dask.local.get_sync
            )
            _, entry = store_item(
                values,
                raw_values,
                conf_values,
                recorder,
                item=item,
                meta=run_meta(signals),
                target=target,
            )
            done.update(entry)
        except Exception as exc:
            errors[item.name] = f"{type(exc).__name__}: {exc}"
    return errors, done
