"""What runs where an item is computed: its outputs written there, and small items run whole.

A batch's results are written by the worker that computed them (the client only records which
items are done), and small items run whole in one task each (their graph built there too, run
with the synchronous scheduler), several per job: with a thousand runs of a few hundred
kilobytes, building graphs and writing stores in the client, one item after the other, was most
of the time of a batch.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np

from daskmasker.batch import bids, provenance
from daskmasker.batch.store import write_item
from daskmasker.io.checksum import checksum
from daskmasker.io.fs import normalize
from daskmasker.io.retry import retry


@dataclass(frozen=True)
class Target:
    """Where and with what provenance an item's outputs are written (sent with its task)."""

    store: Any
    url: str
    name: str
    parameters: dict
    source: str = ""
    checksum: str | None = None
    checksum_of: Any = None
    storage_options: dict | None = None
    bids: tuple[str, str, dict] | None = None  # (root, relative stem, sidecar arguments)


def store_item(signals: np.ndarray, conf: np.ndarray | None, *, target: Target) -> dict[str, str]:
    """Write an item's outputs where it was computed: the BIDS files (if asked), then its group,
    marked complete last, so a complete group implies its BIDS files exist.  Returns no error
    (``{}``: the errors of :func:`run_items`, whose jobs are handled alike)."""
    digest = target.checksum
    if digest is None and target.checksum_of is not None:
        digest = checksum(target.checksum_of, target.storage_options)
    attrs = {
        "source": target.source,
        "checksum": digest or "",
        "parameters": target.parameters,
        "versions": provenance.versions(),
    }
    if target.bids is not None:
        write_bids(target, signals, attrs)
    retry(
        lambda: write_item(target.store, target.name, signals, conf, attrs),
        f"{target.url}/{target.name}",
    )
    return {}


def describe_target(target: Target, item, signals, storage_options: dict | None) -> Target:
    """The item's target completed with its source, its checksum (of an in-memory image; a
    file's is taken where the item runs) and its BIDS columns and timing."""
    source = source_name(item.image)
    changes = {
        "source": source or "<in-memory image>",
        "checksum": None if source else checksum(item.image),
        "checksum_of": normalize(source) if source else None,
        "storage_options": storage_options,
    }
    if target.bids is not None:
        root, stem, arguments = target.bids
        by_region = dict(zip(arguments["regions"], arguments["columns"], strict=True))
        regions = signals["region"].values.tolist()
        t_r, start = timing(signals)
        arguments = {
            **arguments,
            "regions": regions,
            "columns": [by_region[k] for k in regions],
            "t_r": t_r,
            "start_time": start,
            "volumes": None if item.sample_mask is None else signals["frame"].values.tolist(),
        }
        changes["bids"] = (root, stem, arguments)
    return dataclasses.replace(target, **changes)


def write_bids(target: Target, signals: np.ndarray, attrs: dict) -> None:
    root, stem, arguments = target.bids
    meta = bids.sidecar(**arguments, provenance={**attrs, "checksum": attrs["checksum"] or None})
    texts = {
        f"{stem}.tsv": bids.tsv_text(signals, arguments["columns"]),
        f"{stem}.json": bids.to_json(meta),
    }
    retry(lambda: bids.write_files(root, texts, target.storage_options), f"{root}/{stem}")


def timing(signals) -> tuple[float | None, float | None]:
    """TR and onset (s) of the first row, from the signals' ``time = frame × TR`` coordinate."""
    frames = signals["frame"].values
    if "time" not in signals.coords:
        return None, (0.0 if frames.size and frames[0] == 0 else None)
    times = signals["time"].values
    moving = np.flatnonzero(frames)
    t_r = float(times[moving[0]] / frames[moving[0]]) if moving.size else None
    return t_r, float(times[0])


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


def item_confounds(masker, item) -> tuple:
    conf = item.confounds
    if masker.high_variance_confounds or conf is not None:
        from daskmasker.masker.transform import HighVariance

        parts = [HighVariance()] if masker.high_variance_confounds else []
        if conf is not None:
            parts += conf if isinstance(conf, list) else [conf]
        conf = parts
    return conf, item.sample_mask


def run_items(masker, entries: list, storage_options: dict | None) -> dict[str, str]:
    """Run items whole, one after the other: build, compute (synchronous scheduler) and store.

    ``entries`` are ``(item, target)`` pairs; returns ``{name: error}`` of the items that
    failed (the others are complete in the store).
    """
    errors = {}
    for item, target in entries:
        try:
            signals, conf = masker._lazy_outputs(
                source(item.image, storage_options), *item_confounds(masker, item)
            )
            target = describe_target(target, item, signals, storage_options)
            values, conf_values = dask.compute(signals.data, conf, scheduler="sync")
            store_item(values, conf_values, target=target)
        except Exception as exc:
            errors[item.name] = f"{type(exc).__name__}: {exc}"
    return errors
