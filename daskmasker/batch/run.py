"""Many subjects and runs into one resumable Zarr store (see :mod:`daskmasker.batch.store`).

A rerun skips complete runs and rewrites the others, so a batch killed at any point resumes
without losing finished work; which runs are complete is read from the store's resume index
and one listing (:func:`daskmasker.batch.store.completed`), not by opening every run.  At
the end (even of a failed or interrupted batch) the new runs are gathered into the study's
arrays (:func:`daskmasker.batch.study.gather`).  Optional BIDS derivatives
(:mod:`daskmasker.batch.bids`) are written beside it, each file atomically.

Small runs (at most ``daskmasker.batch.whole-item-bytes`` of voxels, judged on the first) run
whole on the workers, several per task; larger ones run as one graph per run built here.  In
both cases the worker that computed a run writes its outputs (:mod:`daskmasker.batch.jobs`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import PurePosixPath
from typing import Any

import dask
import numpy as np

from daskmasker.batch import bids
from daskmasker.batch.jobs import (
    Target,
    run_items,
    source,
    source_name,
    store_item,
    write_bids,
)
from daskmasker.batch.record import Recorder, run_meta
from daskmasker.batch.store import check_name, completed, open_output, open_run, write_index
from daskmasker.batch.study import gather
from daskmasker.compute.plan import plan_extraction
from daskmasker.io.load import describe
from daskmasker.masker.estimator import NiftiMapsMasker
from daskmasker.runtime.client import compute
from daskmasker.runtime.scheduling import compute_per_worker, held

_NIFTI_SUFFIX = re.compile(r"(\.nii(\.gz)?|\.zarr)$")


@dataclass
class Item:
    """One image to process: its source, name, confounds and sample mask; optionally its
    brain mask (the maps' coverage is measured inside it) and a ``denoise`` record (how the
    confounds and sample mask were chosen: kept in the run's attributes and fingerprint)."""

    image: Any
    name: str
    confounds: Any = None
    sample_mask: Any = None
    brain_mask: Any = None
    denoise: dict | None = None


@dataclass
class BatchResult:
    """What a batch run did."""

    store: str
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    action: str = "extracted"

    def __str__(self) -> str:
        return (
            f"{self.store}: {len(self.done)} {self.action}, {len(self.skipped)} already complete, "
            f"{len(self.failed)} failed"
        )


def item_name(source: Any, index: int) -> str:
    """A group name for an input: the BIDS prefix of a file name, else ``item-<index>``.

    ``sub-01/func/sub-01_task-rest_bold.nii.gz`` gives ``sub-01_task-rest``.
    """
    if isinstance(source, str | PurePosixPath) or hasattr(source, "__fspath__"):
        stem = _NIFTI_SUFFIX.sub("", PurePosixPath(str(source)).name)
        stem = re.sub(r"_bold$", "", stem)
        if stem:
            return stem
    return f"item-{index:04d}"


def make_items(
    imgs: Sequence,
    confounds=None,
    sample_masks=None,
    names=None,
    brain_masks=None,
    denoise=None,
) -> list[Item]:
    """Pair images with their confounds, sample masks, brain masks and denoise records
    (lists of the same length)."""
    n = len(imgs)
    for label, values in (
        ("confounds", confounds),
        ("sample_masks", sample_masks),
        ("brain_masks", brain_masks),
        ("denoise", denoise),
    ):
        if values is not None and len(values) != n:
            raise ValueError(
                f"number of {label} ({len(values)}) unequal to number of images ({n})."
            )
    names = list(names) if names is not None else [item_name(img, i) for i, img in enumerate(imgs)]
    for name in names:
        check_name(name)
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            names[i] = f"{name}_{i:04d}"
        seen[names[i]] = i
    return [
        Item(
            image=img,
            name=names[i],
            confounds=None if confounds is None else confounds[i],
            sample_mask=None if sample_masks is None else sample_masks[i],
            brain_mask=None if brain_masks is None else brain_masks[i],
            denoise=None if denoise is None else denoise[i],
        )
        for i, img in enumerate(imgs)
    ]


def run_batch(
    masker: NiftiMapsMasker,
    imgs: Sequence,
    store: str,
    *,
    confounds=None,
    sample_masks=None,
    names=None,
    brain_masks=None,
    denoise=None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    tsv_dir: str | None = None,
    atlas_label: str | None = None,
    client=None,
    progress: bool = False,
) -> BatchResult:
    """Extract every image into one resumable Zarr store.

    Parameters
    ----------
    masker : NiftiMapsMasker
        Fitted, or fitted here on the first image.
    imgs : sequence
        Paths, URLs, Zarr stores or images.
    store : str
        Output Zarr store (path or fsspec URL).
    confounds, sample_masks : sequences, optional
        One entry (or None) per image.
    names : sequence of str, optional
        Group names; default from the BIDS file names.
    brain_masks : sequence, optional
        One brain mask (or None) per image, as fMRIPrep's ``desc-brain_mask``: each run stores
        its maps' ``coverage`` inside it, and the masker's ``min_coverage`` applies to it.
    denoise : sequence of dict, optional
        One record per image of how its confounds and sample mask were chosen (a denoising
        strategy and its parameters): kept in the run's attributes and fingerprint, so a rerun
        with another strategy is refused naming what differs.
    overwrite : bool, default=False
        Start afresh: remove an existing daskmasker batch store first (never another path).
        Without it, a complete run is skipped only if its fingerprint (parameters, input
        contents, versions: :mod:`daskmasker.batch.fingerprint`) is unchanged; one that differs
        raises :class:`~daskmasker.batch.record.StaleStoreError` naming what differs.
    storage_options : dict, optional
        fsspec options for the output (and input checksums).
    tsv_dir : str, optional
        Also write BIDS derivatives there (:mod:`daskmasker.batch.bids`): a
        ``*_atlas-<label>_timeseries.tsv`` and its JSON sidecar per run, and the
        ``dataset_description.json``.
    atlas_label : str, optional
        The ``atlas`` entity of the BIDS file names; by default from the maps' file name.
    client : distributed.Client, optional
        Run items concurrently on this cluster; None uses the local threaded scheduler.
    progress : bool, default=False
        Show a progress bar.

    Returns
    -------
    BatchResult
    """
    items = make_items(list(imgs), confounds, sample_masks, names, brain_masks, denoise)
    atlas = None if tsv_dir is None else bids.atlas_label(masker.maps_img, atlas_label)
    if not hasattr(masker, "n_elements_"):
        masker.fit(source(items[0].image, storage_options) if items else None)
    spec = masker.extraction_spec()
    location = open_output(store, spec.attrs, overwrite, storage_options)
    result = BatchResult(store=str(store))
    recorder = Recorder(spec, storage_options).prepare()
    done = completed(location)
    todo, result.skipped = recorder.split(location, items, done)
    targets = {
        item.name: Target(url=str(store), name=item.name, storage_options=storage_options)
        for item in items
    }
    missing_tsv: list[Item] = []
    if tsv_dir is not None:
        missing_tsv = _plan_bids(masker, items, targets, set(done), tsv_dir, atlas, storage_options)
    bar = _progress(len(todo), progress)
    index = {**done, **recorder.refreshed}

    whole = _runs_whole(masker, todo, storage_options)
    built: list[list[str]] = []

    def jobs():
        """Each job's graph, built when it is its turn to run.  Small items run whole, several
        per task (graph built where it runs); others one graph per item, built here (a failure
        to build, a bad input, is recorded and the batch goes on)."""
        shared = recorder if client is None else held(client, recorder, "recorder")
        if whole:
            size = _items_per_job(len(todo), client)
            for start in range(0, len(todo), size):
                chunk = todo[start : start + size]
                built.append([item.name for item in chunk])
                entries = [(item, targets[item.name]) for item in chunk]
                yield _job(
                    functools.partial(run_items, entries=entries, storage_options=storage_options),
                    shared,
                    local=client is None,
                )
            return
        for item in todo:
            try:
                signals, conf, raw = spec.lazy(
                    source(item.image, storage_options),
                    item.confounds,
                    item.sample_mask,
                    brain_mask=source(item.brain_mask, storage_options),
                )
            except Exception as exc:
                result.failed[item.name] = f"{type(exc).__name__}: {exc}"
                bar.update(1)
                continue
            built.append([item.name])
            store = functools.partial(
                store_item,
                item=item,
                meta=run_meta(signals),
                target=targets[item.name],
            )
            yield _job(store, signals.data, raw, conf, shared, local=client is None)

    try:
        if client is None:
            outcomes = enumerate(jobs())
        else:
            outcomes = ((i, f.result) for i, f in compute_per_worker(client, jobs()))
        for position, outcome in outcomes:
            try:
                errors, entries = outcome()
            except Exception as exc:
                errors = {name: f"{type(exc).__name__}: {exc}" for name in built[position]}
            for name in built[position]:
                if name in errors:
                    result.failed[name] = errors[name]
                else:
                    result.done.append(name)
                    index[name] = entries[name]
                bar.update(1)
    finally:
        bar.close()
        finish(location, index, redone=result.done, recorded=done)
    for item in missing_tsv:
        write_bids(targets[item.name], open_run(location, item.name))
    return result


def _job(func, *args, local: bool):
    """``func(*args)`` with the Dask arrays among ``args`` computed first: a delayed call for a
    cluster, or a function that computes here (no cluster).

    Here no delayed call wraps it: a delayed call over Dask arrays imports ``distributed``
    (dask 2026.8's ``ProhibitReuse``), 0.5-1 s of a local one-shot job.
    """
    if not local:
        return dask.delayed(func)(*args)
    return functools.partial(_computed_call, func, args)


def _computed_call(func, args: tuple):
    return func(*compute(*args))


def finish(
    location, index: dict[str, dict], redone=(), recorded: dict[str, dict] | None = None
) -> None:
    """The end of a batch (also of one that failed or was interrupted): the resume index
    written (unless it equals ``recorded``, the one read at the start), then the new runs
    gathered into the study's arrays and committed."""
    if index != recorded:
        write_index(location, index)
    gather(location, redone=redone)


def _plan_bids(
    masker: NiftiMapsMasker,
    items: list[Item],
    targets: dict[str, Target],
    done: set[str],
    root: str,
    atlas: str,
    storage_options: dict | None,
) -> list[Item]:
    """Give each target its BIDS destination and write ``dataset_description.json``, before
    any item runs; return the complete items whose TSV is missing (exported from the store)."""
    sources = {item.name: source_name(item.image) or item.name for item in items}
    stems, uris, present = bids.start(root, sources, atlas, version("daskmasker"), storage_options)
    maps = describe(masker.maps_img)
    for item in items:
        sources_ = (uris[item.name],) if item.name in uris else ()
        bids_target = (root, stems[item.name], maps, sources_)
        targets[item.name] = dataclasses.replace(targets[item.name], bids=bids_target)
    return [i for i in items if i.name in done and f"{stems[i.name]}.tsv" not in present]


def _runs_whole(masker: NiftiMapsMasker, todo: list[Item], storage_options) -> bool:
    """Whether the items run whole, one task each: when the first that opens has at most
    ``daskmasker.batch.whole-item-bytes`` of voxels (reading its header only)."""
    from daskmasker.io.load import load_image

    for item in todo[:3]:
        try:
            img = load_image(source(item.image, storage_options))
        except Exception:
            continue
        volumes = int(img.shape[0]) if img.ndim == 4 else 1
        volume_nbytes = int(np.prod(img.shape[-3:])) * img.dtype.itemsize
        return plan_extraction(volumes, volume_nbytes).runs_whole
    return False


def _items_per_job(n_items: int, client) -> int:
    """Small items per job, as planned for the client's threads
    (:func:`~daskmasker.compute.plan.items_per_job`)."""
    slots = 1 if client is None else max(1, sum(client.nthreads().values()))
    return plan_extraction(0, 0, n_items=n_items, slots=slots).items_per_job


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="image", desc="extract")
