"""What runs where an item is computed: its outputs written there, and small items run whole.

A batch's results are written by the worker that computed them, fingerprint and BIDS files
included (the client only records which items are done, in the store's index), and small
items run whole in one task each (their graph built there too, run with the synchronous
scheduler), several per job: with a thousand runs of a few hundred kilobytes, building graphs
and writing stores in the client, one item after the other, was most of the time of a batch.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dask
import dask.local
import numpy as np
import xarray as xr

from daskmasker.batch import bids
from daskmasker.batch.record import Recorder, index_entry, run_meta
from daskmasker.batch.store import write_run
from daskmasker.io.fs import Location
from daskmasker.io.retry import retry

if TYPE_CHECKING:
    from daskmasker.batch.items import Item
    from daskmasker.masker.spec import ExtractionSpec


@dataclass(frozen=True)
class Target:
    """Where an item's outputs are written (sent with its task)."""

    url: str
    name: str
    storage_options: dict | None = None
    bids: tuple[str, str, str, tuple[str, ...]] | None = None  # (root, stem, maps, sources)


Outcome = tuple[dict[str, str], dict[tuple[int, str], dict]]
"""What a job returns: ``({run: error}, {(atlas, run): index entry})`` of its items (``atlas``:
the position of the atlas in the batch).  An item fails for all its atlases at once: they are
computed together."""


def store_item(
    values: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    recorders: list[Recorder],
    *,
    item: Item,
    outputs: list[tuple[int, dict, Target]],
) -> Outcome:
    """Write an item's outputs where it was computed, for each atlas that wanted it: its Dataset
    (fingerprint included: the inputs are hashed here) and BIDS files (if asked); each run is
    written last, as one object, so a complete run implies its BIDS files exist.

    ``values`` are the computed ``(signals, raw, confounds)`` of each of ``outputs``, the
    ``(atlas, run_meta, target)`` of the atlases that wanted the item.  Returns their index
    entries.
    """
    entries = {}
    for (signals, raw, conf), (k, meta, target) in zip(values, outputs, strict=True):
        ds = recorders[k].dataset(item, meta, signals, raw, conf)
        if target.bids is not None:
            write_bids(target, ds)
        location = Location(target.url, target.storage_options)
        write = functools.partial(write_run, location, target.name, ds)
        retry(write, f"{target.url}/runs/{target.name}")
        entries[(k, target.name)] = index_entry(ds)
    return {}, entries


def write_bids(target: Target, ds: xr.Dataset) -> None:
    """The BIDS TSV and sidecar of a run, from its Dataset."""
    if target.bids is None:
        raise ValueError(f"run {target.name!r} has no BIDS destination")
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


def source(image: Any, storage_options: dict | None) -> Any:
    """URLs are opened with the batch's storage options; anything else goes to the masker."""
    if storage_options and isinstance(image, str) and "://" in image:
        from daskmasker.io.load import load_image

        return load_image(image, storage_options=storage_options)
    return image


def build(item: Item, specs: list[ExtractionSpec], storage_options: dict | None) -> list:
    """The lazy extractions of an item for each atlas: the image (and brain mask) opened once,
    so that linked atlases' graphs share its reads."""
    image = source(item.image, storage_options)
    brain_mask = source(item.brain_mask, storage_options)
    return [
        spec.lazy(image, item.confounds, item.sample_mask, brain_mask=brain_mask) for spec in specs
    ]


def run_items(recorders: list[Recorder], entries: list, storage_options: dict | None) -> Outcome:
    """Run items whole, one after the other: build, compute (synchronous scheduler) and store.

    ``entries`` are ``(item, [(atlas, target), ...])``: each item's atlases are computed in one
    computation (its chunks read once).  Returns the errors of the items that failed and the
    index entries of the others (complete in the store).
    """
    errors: dict[str, str] = {}
    done: dict[tuple[int, str], dict] = {}
    for item, outputs in entries:
        try:
            lazies = build(item, [recorders[k].spec for k, _ in outputs], storage_options)
            values = dask.compute(
                *[(lazy.signals.data, lazy.raw, lazy.confounds) for lazy in lazies],
                # the synchronous scheduler's function: its name would make Dask import distributed
                scheduler=dask.local.get_sync,
            )
            metas = [
                (k, run_meta(lazy.signals), target)
                for (k, target), lazy in zip(outputs, lazies, strict=True)
            ]
            done.update(store_item(list(values), recorders, item=item, outputs=metas)[1])
        except Exception as exc:
            errors[item.name] = f"{type(exc).__name__}: {exc}"
    return errors, done
