"""Many subjects and runs into one resumable Zarr store (see :mod:`daskmasker.batch.store`).

A rerun skips complete runs and rewrites the others, so a batch killed at any point resumes
without losing finished work.  Optional BIDS-derivatives ``*_timeseries.tsv`` files (with a JSON
sidecar, :mod:`daskmasker.batch.bids`) are written beside it, each atomically.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import dask
import numpy as np

from daskmasker.batch.bids import write_tsv
from daskmasker.batch.record import Recorder
from daskmasker.batch.store import open_output, write_item
from daskmasker.io.retry import retry
from daskmasker.masker.estimator import NiftiMapsMasker
from daskmasker.runtime.scheduling import compute_per_worker

_NIFTI_SUFFIX = re.compile(r"(\.nii(\.gz)?|\.zarr)$")


@dataclass
class Item:
    """One image to process: its source, name, confounds and sample mask."""

    image: Any
    name: str
    confounds: Any = None
    sample_mask: Any = None


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


def make_items(imgs: Sequence, confounds=None, sample_masks=None, names=None) -> list[Item]:
    """Pair images with their confounds and sample masks (lists of the same length)."""
    n = len(imgs)
    for label, values in (("confounds", confounds), ("sample_masks", sample_masks)):
        if values is not None and len(values) != n:
            raise ValueError(
                f"number of {label} ({len(values)}) unequal to number of images ({n})."
            )
    names = list(names) if names is not None else [item_name(img, i) for i, img in enumerate(imgs)]
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
    overwrite: bool = False,
    storage_options: dict | None = None,
    tsv_dir: str | None = None,
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
    overwrite : bool, default=False
        Start afresh: remove an existing daskmasker batch store first (never another path).
        Without it, a complete run is skipped only if its fingerprint (parameters, input
        contents, versions: :mod:`daskmasker.batch.fingerprint`) is unchanged; one that differs
        raises :class:`~daskmasker.batch.record.StaleStoreError` naming what differs.
    storage_options : dict, optional
        fsspec options for the output (and input checksums).
    tsv_dir : str, optional
        Also write BIDS-derivatives TSV files there.
    client : distributed.Client, optional
        Run items concurrently on this cluster; None uses the local threaded scheduler.
    progress : bool, default=False
        Show a progress bar.

    Returns
    -------
    BatchResult
    """
    items = make_items(list(imgs), confounds, sample_masks, names)
    if not hasattr(masker, "n_elements_"):
        masker.fit(_source(items[0].image, storage_options) if items else None)
    params = masker._attrs_params()
    group, mapper = open_output(store, params, overwrite, storage_options)
    result = BatchResult(store=str(store))
    recorder = Recorder(masker, params, storage_options)
    todo, result.skipped = recorder.split(group, items)
    bar = _progress(len(todo), progress)

    def finish(built_item: tuple, outputs: tuple) -> None:
        item, lazy = built_item
        ds = recorder.dataset(item, lazy, *outputs)
        retry(lambda: write_item(mapper, item.name, ds), f"{store}/{item.name}")
        if tsv_dir is not None:
            columns = [str(n) for n in ds["region_name"].values]
            sidecar = {k: ds.attrs[k] for k in ("source", "checksum", "parameters", "versions")}
            write_tsv(tsv_dir, item.name, outputs[0], columns, sidecar, storage_options)
        result.done.append(item.name)
        bar.update(1)

    built: list[tuple] = []

    def graphs():
        """Each item's graph, built when it is its turn to run; a failure to build (a bad
        input) is recorded and the batch goes on."""
        for item in todo:
            try:
                signals, conf, raw = masker._lazy_outputs(
                    _source(item.image, storage_options), *_item_confounds(masker, item)
                )
            except Exception as exc:
                result.failed[item.name] = f"{type(exc).__name__}: {exc}"
                bar.update(1)
                continue
            built.append((item, signals))
            yield dask.delayed(_outputs)(signals.data, raw, conf)

    if client is None:
        for job in graphs():
            _guarded(result, bar, built[-1], finish, lambda job=job: job.compute())
    else:
        for index, future in compute_per_worker(client, graphs()):
            _guarded(result, bar, built[index], finish, future.result)
    bar.close()
    return result


def _outputs(signals: np.ndarray, raw: np.ndarray, conf: np.ndarray | None) -> tuple:
    return signals, raw, conf


def _guarded(result: BatchResult, bar, built_item: tuple, finish, compute) -> None:
    """Compute and write one item; a failure is recorded and the batch goes on."""
    try:
        finish(built_item, compute())
    except Exception as exc:
        result.failed[built_item[0].name] = f"{type(exc).__name__}: {exc}"
        bar.update(1)


def _source(image: Any, storage_options: dict | None):
    """URLs are opened with the batch's storage options; anything else goes to the masker."""
    if storage_options and isinstance(image, str) and "://" in image:
        from daskmasker.io.load import load_image

        return load_image(image, storage_options=storage_options)
    return image


def _item_confounds(masker: NiftiMapsMasker, item: Item) -> tuple:
    conf = item.confounds
    if masker.high_variance_confounds or conf is not None:
        from daskmasker.masker.transform import HighVariance

        parts = [HighVariance()] if masker.high_variance_confounds else []
        if conf is not None:
            parts += conf if isinstance(conf, list) else [conf]
        conf = parts
    return conf, item.sample_mask


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="image", desc="extract")
