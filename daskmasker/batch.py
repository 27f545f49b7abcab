"""Many subjects and runs into one resumable Zarr store.

Layout of the output store (a Zarr v3 group, local path or fsspec URL)::

    out.zarr/                      attrs: daskmasker_batch (masker parameters, versions)
      sub-01_task-rest/            an xarray Dataset: signals (time, region), confounds
                                   attrs: source, checksum, parameters, versions, complete
      sub-02_task-rest/
      ...

An item's group is written whole and only then marked ``complete`` (one small attribute write,
atomic
on file systems and object stores alike).  A rerun skips complete items and rewrites the others, so
a
batch killed at any point resumes without losing finished work, and a half-written group is never
taken for a finished one.  Optional BIDS-derivatives ``*_timeseries.tsv`` files (with a JSON
sidecar)
are written beside it, each atomically.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import dask
import fsspec
import numpy as np
import xarray as xr
import zarr

from daskmasker import provenance
from daskmasker.cluster import compute_per_worker
from daskmasker.masker import NiftiMapsMasker
from daskmasker.retry import retry
from daskmasker.store import Location

BATCH_ATTR = "daskmasker_batch"
COMPLETE_ATTR = "complete"
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

    def __str__(self) -> str:
        return (
            f"{self.store}: {len(self.done)} extracted, {len(self.skipped)} already complete, "
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


def checksum(source: Any, storage_options: dict | None = None) -> str | None:
    """sha256 of an input file's bytes (streamed), or None for in-memory images."""
    if not isinstance(source, str | PurePosixPath) and not hasattr(source, "__fspath__"):
        return None
    path = str(source)
    fs, _, paths = fsspec.get_fs_token_paths(path, storage_options=storage_options or {})
    if fs.isdir(paths[0]):
        return None
    digest = hashlib.sha256()
    with fs.open(paths[0], "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def open_output(store: str, params: dict, overwrite: bool, storage_options: dict | None):
    """Open (or create) a batch store; refuse a path that exists and is not ours."""
    location = Location(store, storage_options)
    fs, root = location.fs, location.root
    if fs.exists(root):
        try:
            group = zarr.open_group(location.store, mode="r")
            ours = BATCH_ATTR in group.attrs
        except Exception:
            ours = False
        if not ours:
            has_content = fs.isfile(root) or bool(fs.ls(root))
            if has_content:
                raise FileExistsError(
                    f"output {store!r} exists and is not a daskmasker batch store; "
                    "choose another path or remove it yourself"
                )
        elif overwrite:
            fs.rm(root, recursive=True)
    group = zarr.open_group(location.store, mode="a", zarr_format=3)
    if BATCH_ATTR not in group.attrs:
        group.attrs[BATCH_ATTR] = {"parameters": params, "versions": provenance.versions()}
    return group, location.store


def is_complete(group: zarr.Group, name: str) -> bool:
    """Whether an item's group exists and was marked complete."""
    try:
        return bool(group[name].attrs.get(COMPLETE_ATTR, False))
    except KeyError:
        return False


def write_item(
    mapper, name: str, signals: np.ndarray, confounds: np.ndarray | None, attrs: dict
) -> None:
    """Write one item's Dataset, then mark it complete (the last write)."""
    data = {"signals": (("time", "region"), signals)}
    if confounds is not None:
        data["confounds"] = (("volume", "confound"), np.asarray(confounds, dtype=np.float64))
    ds = xr.Dataset(data, coords={"region": np.arange(signals.shape[1])})
    ds.attrs.update(attrs)
    ds.to_zarr(mapper, group=name, mode="w", zarr_format=3, consolidated=False)
    zarr.open_group(mapper, path=name, mode="a").attrs[COMPLETE_ATTR] = True


def write_tsv(
    directory: str,
    name: str,
    signals: np.ndarray,
    columns: Sequence[str],
    sidecar: dict,
    storage_options: dict | None = None,
) -> str:
    """A BIDS-derivatives ``<name>_desc-daskmasker_timeseries.tsv`` and its JSON sidecar."""
    fs, _, (root,) = fsspec.get_fs_token_paths(directory, storage_options=storage_options or {})
    fs.makedirs(root, exist_ok=True)
    stem = f"{root.rstrip('/')}/{name}_desc-daskmasker_timeseries"
    header = "\t".join(columns)
    lines = [header] + ["\t".join(repr(float(v)) for v in row) for row in signals]
    for path, text in (
        (f"{stem}.tsv", "\n".join(lines) + "\n"),
        (f"{stem}.json", json.dumps(sidecar, indent=2)),
    ):
        tmp = f"{path}.partial"
        with fs.open(tmp, "w") as f:
            f.write(text)
        fs.mv(tmp, path)
    return f"{stem}.tsv"


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
    todo = []
    for item in items:
        (result.skipped if is_complete(group, item.name) else todo).append(item)
    result.skipped = [item.name for item in result.skipped]
    bar = _progress(len(todo), progress)

    def finish(item: Item, signals: np.ndarray, conf: np.ndarray | None) -> None:
        attrs = {
            "source": str(item.image) if not hasattr(item.image, "shape") else "<in-memory image>",
            "checksum": checksum(item.image, storage_options) or "",
            "parameters": params,
            "versions": provenance.versions(),
        }
        retry(lambda: write_item(mapper, item.name, signals, conf, attrs), f"{store}/{item.name}")
        if tsv_dir is not None:
            columns = [f"map-{k:03d}" for k in range(signals.shape[1])]
            write_tsv(tsv_dir, item.name, signals, columns, attrs, storage_options)
        result.done.append(item.name)
        bar.update(1)

    built: list[Item] = []

    def graphs():
        """Each item's graph, built when it is its turn to run; a failure to build (a bad
        input) is recorded and the batch goes on."""
        for item in todo:
            try:
                signals, conf = masker._lazy_outputs(
                    _source(item.image, storage_options), *_item_confounds(masker, item)
                )
            except Exception as exc:
                result.failed[item.name] = f"{type(exc).__name__}: {exc}"
                bar.update(1)
                continue
            built.append(item)
            yield dask.delayed(_pair)(signals.data, conf)

    if client is None:
        for job in graphs():
            _guarded(result, bar, built[-1], finish, lambda job=job: job.compute())
    else:
        for index, future in compute_per_worker(client, graphs()):
            _guarded(result, bar, built[index], finish, future.result)
    bar.close()
    return result


def _pair(signals: np.ndarray, conf: np.ndarray | None) -> tuple:
    return signals, conf


def _guarded(result: BatchResult, bar, item: Item, finish, compute) -> None:
    """Compute and write one item; a failure is recorded and the batch goes on."""
    try:
        signals, conf = compute()
        finish(item, signals, conf)
    except Exception as exc:
        result.failed[item.name] = f"{type(exc).__name__}: {exc}"
        bar.update(1)


def _source(image: Any, storage_options: dict | None):
    """URLs are opened with the batch's storage options; anything else goes to the masker."""
    if storage_options and isinstance(image, str) and "://" in image:
        from daskmasker.niimg import load_image

        return load_image(image, storage_options=storage_options)
    return image


def _item_confounds(masker: NiftiMapsMasker, item: Item) -> tuple:
    conf = item.confounds
    if masker.high_variance_confounds or conf is not None:
        from daskmasker.masker import _HighVariance

        parts = [_HighVariance()] if masker.high_variance_confounds else []
        if conf is not None:
            parts += conf if isinstance(conf, list) else [conf]
        conf = parts
    return conf, item.sample_mask


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="image", desc="extract")
