"""Many subjects and runs into one resumable Zarr store (see :mod:`daskmasker.batch.store`).

A rerun skips complete runs and rewrites the others, so a batch killed at any point resumes
without losing finished work; which runs are complete is read from the store's resume index
and one listing (:func:`daskmasker.batch.index.completed`), not by opening every run.  At
the end (even of a failed or interrupted batch) the new runs are gathered into the study's
arrays (:func:`daskmasker.batch.study.gather`).  Optional BIDS derivatives
(:mod:`daskmasker.batch.bids`) are written beside it, each file atomically.

Small runs (at most ``daskmasker.batch.whole-item-bytes`` of voxels, judged on the first) run
whole on the workers, several per task; larger ones run as one graph per run built here.  In
both cases the worker that computed a run writes its outputs (:mod:`daskmasker.batch.jobs`).

Several atlases (a list of maskers, a store each) are one batch: every store is opened and its
runs sorted before anything is computed, and an image is extracted once for all the atlases
whose store lacks it (their maps linked: its chunks read once); each store is then written,
resumed, refused and gathered exactly as one atlas's.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, overload

import dask
import numpy as np

from daskmasker.batch import bids
from daskmasker.batch.index import ResumeIndex, completed, write_index
from daskmasker.batch.items import Item, make_items
from daskmasker.batch.jobs import (
    Outcome,
    Target,
    build,
    run_items,
    source,
    source_name,
    store_item,
    write_bids,
)
from daskmasker.batch.record import Recorder, run_meta
from daskmasker.batch.store import is_pending, mark_pending, open_output, open_run
from daskmasker.batch.study import gather
from daskmasker.compute.plan import plan_extraction
from daskmasker.io.fs import Location, check_folder
from daskmasker.io.load import describe
from daskmasker.masker.estimator import NiftiMapsMasker
from daskmasker.masker.many import fit_together, link_specs
from daskmasker.masker.spec import ExtractionSpec
from daskmasker.runtime.client import active_client, compute, tune_local_allocator
from daskmasker.runtime.scheduling import compute_per_worker, held

if TYPE_CHECKING:
    from dask.delayed import Delayed
    from distributed import Client
    from tqdm.auto import tqdm


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


@overload
def run_batch(
    masker: NiftiMapsMasker,
    imgs: Sequence,
    store: str,
    *,
    confounds: Sequence | None = None,
    sample_masks: Sequence | None = None,
    names: Sequence[str] | None = None,
    brain_masks: Sequence | None = None,
    denoise: Sequence[dict | None] | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    tsv_dir: str | None = None,
    atlas_label: str | None = None,
    client: Client | None = None,
    progress: bool = False,
) -> BatchResult: ...


@overload
def run_batch(
    masker: Sequence[NiftiMapsMasker],
    imgs: Sequence,
    store: Sequence[str],
    *,
    confounds: Sequence | None = None,
    sample_masks: Sequence | None = None,
    names: Sequence[str] | None = None,
    brain_masks: Sequence | None = None,
    denoise: Sequence[dict | None] | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    tsv_dir: str | None = None,
    atlas_label: Sequence[str] | None = None,
    client: Client | None = None,
    progress: bool = False,
) -> list[BatchResult]: ...


def run_batch(
    masker: NiftiMapsMasker | Sequence[NiftiMapsMasker],
    imgs: Sequence,
    store: str | Sequence[str],
    *,
    confounds: Sequence | None = None,
    sample_masks: Sequence | None = None,
    names: Sequence[str] | None = None,
    brain_masks: Sequence | None = None,
    denoise: Sequence[dict | None] | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    tsv_dir: str | None = None,
    atlas_label: str | Sequence[str] | None = None,
    client: Client | None = None,
    progress: bool = False,
) -> BatchResult | list[BatchResult]:
    """Extract every image into one resumable Zarr store per atlas.

    Parameters
    ----------
    masker : NiftiMapsMasker, or a list of them (one per atlas)
        Fitted, or fitted here on the first image.  Several maskers (several atlases) share
        one pass over each image: its chunks are read and multiplied by every atlas's maps
        once (:func:`~daskmasker.masker.many.link_specs`), and each atlas's runs go to its own
        store, recorded, resumed and refused exactly as one atlas's.
    imgs : sequence
        Paths, URLs, Zarr stores or images.
    store : str, or a list of str (one per masker)
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
        raises :class:`~daskmasker.batch.record.StaleStoreError` naming what differs, before
        anything is computed (for every atlas).
    storage_options : dict, optional
        fsspec options for the output (and input checksums).
    tsv_dir : str, optional
        Also write BIDS derivatives there (:mod:`daskmasker.batch.bids`): a
        ``*_atlas-<label>_timeseries.tsv`` and its JSON sidecar per run and atlas, and the
        ``dataset_description.json``.
    atlas_label : str, or a list of str (one per masker), optional
        The ``atlas`` entity of the BIDS file names; by default from the maps' file name.
    client : distributed.Client, optional
        Run items concurrently on this cluster; None uses the local threaded scheduler.
    progress : bool, default=False
        Show a progress bar.

    Returns
    -------
    BatchResult, or a list of them (one per masker, when ``masker`` is a list)
    """
    several = not isinstance(masker, NiftiMapsMasker)
    maskers = [masker] if isinstance(masker, NiftiMapsMasker) else list(masker)
    stores = _per_atlas("store", store, len(maskers), several)
    labels = _per_atlas("atlas_label", atlas_label, len(maskers), several)
    items = make_items(list(imgs), confounds, sample_masks, names, brain_masks, denoise)
    if tsv_dir is not None:  # a label that is not BIDS is refused before anything is done
        check_folder(tsv_dir, storage_options)  # as a folder that cannot be written
        for k, m in enumerate(maskers):  # (a loop: the warning's stack level is its caller's)
            labels[k] = bids.atlas_label(m.maps_img, labels[k])
    if not all(m.__sklearn_is_fitted__() for m in maskers):  # (a URL's header is read to fit)
        fit_together(maskers, source(items[0].image, storage_options) if items else None)
    atlases = [
        _open(spec, out, items, overwrite, storage_options)
        for spec, out in zip(link_specs(maskers), stores, strict=True)
    ]
    if tsv_dir is not None:
        for atlas, label in zip(atlases, labels, strict=True):
            atlas.missing_tsv = _plan_bids(atlas, items, tsv_dir, label, storage_options)
    _extract(atlases, items, storage_options, client, progress)
    for atlas in atlases:
        for item in atlas.missing_tsv:
            write_bids(atlas.targets[item.name], open_run(atlas.location, item.name))
    results = [atlas.result for atlas in atlases]
    return results if several else results[0]


@dataclass
class _Atlas:
    """One atlas of a batch: its extraction, its store, the complete runs the store held at the
    start (their index), the index entries added or renewed since, the runs still to extract
    and where each goes."""

    spec: ExtractionSpec
    recorder: Recorder
    location: Location
    result: BatchResult
    done: ResumeIndex
    updates: dict[str, dict]
    todo: set[str]
    targets: dict[str, Target]
    missing_tsv: list[Item] = field(default_factory=list)

    def index(self) -> dict[str, dict] | None:
        """The resume index to write at the end: None when the stored one is still right."""
        if not self.updates and not self.done.extra:
            return None
        return {**self.done, **self.updates}


def _per_atlas(label: str, value: Any, n: int, several: bool) -> list:
    """One value per atlas: ``value`` itself for one masker, else its items (one per masker)."""
    if not several:
        return [value]
    if value is None:
        return [None] * n
    if isinstance(value, str | os.PathLike) or len(value) != n:
        raise ValueError(f"{label} must be a list of {n} (one per masker), got {value!r:.80}")
    return list(value)


def _open(
    spec: ExtractionSpec,
    store: str,
    items: list[Item],
    overwrite: bool,
    storage_options: dict | None,
) -> _Atlas:
    """Open (or create) an atlas's store and sort the runs: those complete with the same
    fingerprint are skipped, changed ones refused (:meth:`Recorder.split`)."""
    location = open_output(store, spec.attrs, overwrite, storage_options)
    recorder = Recorder(spec, storage_options).prepare()
    done = completed(location)
    todo, skipped = recorder.split(location, items, done)
    targets = {
        item.name: Target(url=str(store), name=item.name, storage_options=storage_options)
        for item in todo
    }
    return _Atlas(
        spec=spec,
        recorder=recorder,
        location=location,
        result=BatchResult(store=str(store), skipped=skipped),
        done=done,
        updates=dict(recorder.refreshed),
        todo={item.name for item in todo},
        targets=targets,
    )


def _extract(
    atlases: list[_Atlas],
    items: list[Item],
    storage_options: dict | None,
    client: Client | None,
    progress: bool,
) -> None:
    """Extract the runs each atlas still needs, an image's atlases in one computation (its
    chunks read once), each run written by the worker that computed it; then (also when the
    batch fails or is interrupted) each store's index is written and its new runs gathered."""
    if not any(atlas.todo for atlas in atlases):  # a resume of complete stores
        _finish_all(atlases)
        return
    wanted = {
        item.name: [k for k, atlas in enumerate(atlases) if item.name in atlas.todo]
        for item in items
    }
    todo = [item for item in items if wanted[item.name]]
    bar = _progress(len(todo), progress)
    whole = _runs_whole(todo, storage_options)
    built: list[list[str]] = []
    recorders = [atlas.recorder for atlas in atlases]
    if client is None and active_client() is None:  # the images computed by this process
        tune_local_allocator()

    def outputs(item: Item) -> list[tuple[int, Target]]:
        return [(k, atlases[k].targets[item.name]) for k in wanted[item.name]]

    def fail(name: str, error: str) -> None:
        for k in wanted[name]:
            atlases[k].result.failed[name] = error

    def jobs() -> Iterator[Delayed]:
        """Each job's graph, built when it is its turn to run.  Small items run whole, several
        per task (graph built where it runs); others one graph per item, built here (a failure
        to build, a bad input, is recorded and the batch goes on)."""
        shared = recorders if client is None else held(client, recorders, "recorder")
        if whole:
            size = _items_per_job(len(todo), client)
            for start in range(0, len(todo), size):
                chunk = todo[start : start + size]
                built.append([item.name for item in chunk])
                entries = [(item, outputs(item)) for item in chunk]
                yield _job(
                    functools.partial(run_items, entries=entries, storage_options=storage_options),
                    shared,
                    local=client is None,
                )
            return
        for item in todo:
            specs = [recorders[k].spec for k in wanted[item.name]]
            try:
                lazies = build(item, specs, storage_options)
            except Exception as exc:
                fail(item.name, f"{type(exc).__name__}: {exc}")
                bar.update(1)
                continue
            built.append([item.name])
            store = functools.partial(
                store_item,
                item=item,
                outputs=[
                    (k, run_meta(lazy.signals), target)
                    for (k, target), lazy in zip(outputs(item), lazies, strict=True)
                ],
            )
            values = [(lazy.signals.data, lazy.raw, lazy.confounds) for lazy in lazies]
            yield _job(store, values, shared, local=client is None)

    outcomes: Iterator[tuple[int, Callable[[], Outcome]]]
    for atlas in atlases:
        if atlas.todo:
            mark_pending(atlas.location)
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
                    fail(name, errors[name])
                else:
                    for k in wanted[name]:
                        atlases[k].result.done.append(name)
                        atlases[k].updates[name] = entries[(k, name)]
                bar.update(1)
    finally:
        bar.close()
        _finish_all(atlases)


def _finish_all(atlases: list[_Atlas]) -> None:
    """:func:`finish` every atlas's store, each even if another's fails (the first error is
    raised after)."""
    errors = []
    for atlas in atlases:
        try:
            finish(atlas.location, atlas.index(), redone=atlas.result.done)
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def _job(func: Callable[..., Any], *args: Any, local: bool) -> Any:
    """``func(*args)`` with the Dask arrays among ``args`` computed first: a delayed call for a
    cluster, or a function that computes here (no cluster).

    Here no delayed call wraps it: a delayed call over Dask arrays imports ``distributed``
    (dask 2026.8's ``ProhibitReuse``), a large part of a local one-shot job's time.
    """
    if not local:
        return dask.delayed(func)(*args)
    return functools.partial(_computed_call, func, args)


def _computed_call(func: Callable[..., Any], args: tuple) -> Any:
    return func(*compute(*args))


def finish(
    location: Location,
    index: Mapping[str, dict] | None,
    redone: Iterable[str] = (),
) -> None:
    """The end of a batch (also of one that failed or was interrupted): the resume index
    written (None: the stored one is still right), then the runs written since the last
    commit gathered into the study's arrays and committed: the ``redone`` ones, and any that
    a batch marked pending (:func:`~daskmasker.batch.store.mark_pending`) left ungathered."""
    redone = list(redone)
    if index is not None:
        write_index(location, index)
    if redone or index is not None or is_pending(location):
        gather(location, redone=redone)


def _plan_bids(
    atlas: _Atlas,
    items: list[Item],
    root: str,
    label: str,
    storage_options: dict | None,
) -> list[Item]:
    """Give each of an atlas's targets its BIDS destination and write
    ``dataset_description.json``, before any item runs; return the complete items whose TSV is
    missing (exported from the store)."""
    sources = {item.name: source_name(item.image) or item.name for item in items}
    stems, uris, present = bids.start(root, sources, label, version("daskmasker"), storage_options)
    maps = describe(atlas.spec.params["maps_img"])
    missing = [i for i in items if i.name in atlas.done and f"{stems[i.name]}.tsv" not in present]
    for item in missing:
        atlas.targets[item.name] = Target(
            url=atlas.result.store, name=item.name, storage_options=storage_options
        )
    for name, target in atlas.targets.items():
        sources_ = (uris[name],) if name in uris else ()
        atlas.targets[name] = dataclasses.replace(target, bids=(root, stems[name], maps, sources_))
    return missing


def _runs_whole(todo: list[Item], storage_options: dict | None) -> bool:
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


def _items_per_job(n_items: int, client: Client | None) -> int:
    """Small items per job, as planned for the client's threads
    (:func:`~daskmasker.compute.plan.items_per_job`)."""
    slots = 1 if client is None else max(1, sum(client.nthreads().values()))
    return plan_extraction(0, 0, n_items=n_items, slots=slots).items_per_job


def _progress(total: int, enabled: bool) -> tqdm:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="image", desc="extract")
