"""The batch store: a Zarr v3 group per run, written whole and then marked complete.

Layout (a local path or fsspec URL)::

    out.zarr/                      attrs: daskmasker_batch (masker parameters, versions)
      sub-01_task-rest/            an xarray Dataset: signals (time, region), confounds
                                   attrs: source, checksum, parameters, versions, complete
      sub-02_task-rest/
      ...

A run's group is written whole and only then marked ``complete`` (one small attribute write,
atomic on file systems and object stores alike), so a half-written group is never taken for a
finished one.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath
from typing import Any

import fsspec
import numpy as np
import xarray as xr
import zarr

from daskmasker.batch import provenance
from daskmasker.io.fs import Location

BATCH_ATTR = "daskmasker_batch"


COMPLETE_ATTR = "complete"


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
