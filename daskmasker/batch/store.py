"""The batch store of a study: one packed object per run, gathered into study-level arrays.

Layout (Zarr v3; a local path or fsspec URL)::

    out.zarr/
      zarr.json            root group: attrs ``daskmasker_batch`` (layout, masker parameters,
                           versions) and the consolidated metadata of every array below
      signals/ ...         the study's arrays, a ``run`` axis first (:mod:`~.study`): what
                           ``xr.open_zarr(out.zarr)`` and ``open_timeseries`` open
      runs/<name>.npz      each complete run, packed in one object (:mod:`~.pack`)
      runs/index.json      the resume index (:mod:`~.index`): per run, its fingerprint sha256
                           and input digests, stored by column

A run is written by the worker that computed it, as one object under its final name, atomically
(a local file is written beside and renamed; an object store's PUT is whole or absent): a run is
complete exactly when ``runs/<name>.npz`` exists, so a killed batch never leaves a half-written
run taken for a finished one.  At the end of a batch the client gathers the new runs into the
study's arrays and commits them by rewriting the root's consolidated metadata (see
:func:`daskmasker.batch.study.gather`).  A study therefore adds one object per run (13 with one
Zarr group per run, the previous layout, which :func:`check_layout` refuses with the command
that converts it: ``daskmasker upgrade OLD NEW``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

import fsspec
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import ConsolidatedMetadata, GroupMetadata

from daskmasker.batch import provenance
from daskmasker.batch.pack import pack, unpack, unpack_attrs
from daskmasker.io.fs import Location, check_bucket

if TYPE_CHECKING:  # not imported at run time: `daskmasker info` needs no xarray
    import xarray as xr

BATCH_ATTR = "daskmasker_batch"
LAYOUT = 2
"""The store layout written by this daskmasker: 2 = packed runs and study arrays."""
RUNS = "runs"
SUFFIX = ".npz"
INDEX = "index.json"
_INDEX_NAME = INDEX.removesuffix(".json")
PARTIAL = ".partial"
PENDING = ".pending"
"""``runs/.pending``: written before a batch writes its first run, removed when its runs are
gathered (the commit); while it is there, complete runs may be missing from the study's arrays."""


class LegacyStoreError(ValueError):
    """A batch store in the previous layout (one Zarr group per run)."""


def upgrade_hint(store: str) -> str:
    return (
        f"'{store}' is a daskmasker batch store in the previous layout (one Zarr group per run, "
        f"13 objects each); convert it with: daskmasker upgrade {store} NEW_STORE"
    )


def batch_location(store: str, storage_options: dict | None) -> Location:
    """A batch store's :class:`~daskmasker.io.fs.Location`, read one request per object.

    s3fs reads a whole object with a HEAD first (its size: objects over its 50 MB block are
    read by concurrent ranged GETs), then the GET, and asks a missing object twice (HEAD, then a
    listing): two requests an object.  A batch store's objects are smaller (chunks of about
    8 MiB, packed runs, the index), so on S3 it is opened with ``max_concurrency=1`` (one GET,
    a 404 for a missing chunk) unless the options set it.
    """
    options = dict(storage_options or {})
    if str(store).startswith(("s3://", "s3a://")) and "max_concurrency" not in options:
        options["max_concurrency"] = 1
    return Location(store, options)


def check_layout(attrs: dict, store: str) -> None:
    """Refuse a batch store of another layout, naming the command that converts it."""
    layout = attrs.get(BATCH_ATTR, {}).get("layout", 1)
    if layout == 1:
        raise LegacyStoreError(upgrade_hint(store))
    if layout != LAYOUT:
        raise ValueError(
            f"'{store}' is a daskmasker batch store of layout {layout}, newer than this "
            f"daskmasker reads ({LAYOUT}): upgrade daskmasker"
        )


def open_output(
    store: str,
    params: dict,
    overwrite: bool,
    storage_options: dict | None,
    recleaned_from: str | None = None,
) -> Location:
    """Open (or create) a batch store; refuse a path that exists and is not ours, and a store
    of the previous layout unless ``overwrite``."""
    location = batch_location(store, storage_options)
    check_bucket(location)
    fs, root = location.fs, location.root
    attrs = _root_attributes(location)
    if BATCH_ATTR in attrs and not overwrite:
        check_layout(attrs, store)
        return location
    if BATCH_ATTR in attrs:
        fs.rm(root, recursive=True)
    elif fs.exists(root) and (fs.isfile(root) or bool(fs.ls(root))):
        raise FileExistsError(
            f"output {store!r} exists and is not a daskmasker batch store; "
            "choose another path or remove it yourself"
        )
    if not fs.exists(f"{root.rstrip('/')}/zarr.json"):  # created with its attributes: one write
        batch = {
            "layout": LAYOUT,
            "parameters": params,
            "versions": provenance.versions(),
            **({"recleaned_from": recleaned_from} if recleaned_from else {}),
        }
        _create_root(location, {BATCH_ATTR: batch})
    return location


def _create_root(location: Location, attributes: dict) -> None:
    """The root group with its attributes and empty consolidated metadata, in one write: a
    plain ``xr.open_zarr`` of a store whose first batch has not gathered yet opens an empty
    study without warning that consolidated metadata is missing."""
    meta = GroupMetadata(attributes=attributes, consolidated_metadata=ConsolidatedMetadata({}))
    (blob,) = meta.to_buffer_dict(default_buffer_prototype()).values()
    location.fs.makedirs(location.root, exist_ok=True)
    location.fs.pipe_file(f"{location.root.rstrip('/')}/zarr.json", blob.to_bytes())


def _root_attributes(location: Location) -> dict:
    """The attributes of a Zarr v3 group at the location's root (its ``zarr.json``, read as the
    Zarr v3 specification defines it: one read, without building the group and the arrays of
    its consolidated metadata), empty for anything else."""
    try:
        meta = json.loads(location.fs.cat_file(f"{location.root.rstrip('/')}/zarr.json"))
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3:
        return {}
    if meta.get("node_type") != "group" or not isinstance(meta.get("attributes"), dict):
        return {}
    return meta["attributes"]


def open_store(store: str, storage_options: dict | None = None) -> tuple[Location, dict]:
    """A batch store's location and root attributes; errors name what is there instead, and a
    store of the previous layout is refused with the command that converts it."""
    location = batch_location(store, storage_options)
    try:
        group = zarr.open_group(location.store, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise FileNotFoundError(f"no batch store at '{store}'") from exc
    attrs = dict(group.attrs)
    if BATCH_ATTR not in attrs:
        raise ValueError(f"'{store}' is a Zarr group but not a daskmasker batch store")
    check_layout(attrs, str(store))
    return location, attrs


def check_name(name: str) -> str:
    """A run name usable as an object name (no ``/``, not hidden, not the index)."""
    if not name or "/" in name or name.startswith(".") or name == _INDEX_NAME:
        raise ValueError(f"run name {name!r} cannot name an object (no '/', no leading '.')")
    return name


def runs_dir(location: Location) -> str:
    """The folder of a store's packed runs."""
    return f"{location.root.rstrip('/')}/{RUNS}"


def _pending_path(location: Location) -> str:
    return f"{runs_dir(location)}/{PENDING}"


def mark_pending(location: Location) -> None:
    """Say that runs are about to be written that the study's arrays will not hold until the
    next gathering (every writer calls this before its first run, after its checks: a refused
    rerun writes nothing)."""
    put_atomic(location.fs, _pending_path(location), b"runs written, not gathered yet\n")


def is_pending(location: Location) -> bool:
    """Whether a batch opened the store and has not gathered its runs (one read, no listing:
    listing 10,000 runs on S3 is 10 requests in turn).  Stores written before the marker
    existed never say so."""
    try:
        location.fs.cat_file(_pending_path(location))
    except FileNotFoundError:
        return False
    return True


def clear_pending(location: Location) -> None:
    """Remove the pending marker: every complete run listed is in the committed arrays."""
    try:
        location.fs.rm_file(_pending_path(location))
    except FileNotFoundError:
        pass


def pack_path(location: Location, name: str) -> str:
    return f"{runs_dir(location)}/{name}{SUFFIX}"


def put_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` at ``path`` whole or not at all: a local file is written beside (a hidden
    ``.partial`` name no listing takes for a run) and renamed; an object store's PUT is atomic."""
    if _is_local(fs):
        folder, name = path.rsplit("/", 1)
        tmp = f"{folder}/.{name}{PARTIAL}"
        fs.makedirs(folder, exist_ok=True)
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
    else:
        fs.pipe_file(path, data)


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)) or (
        isinstance(fs, fsspec.implementations.local.LocalFileSystem)
    )


def write_run(location: Location, name: str, ds: xr.Dataset) -> None:
    """Write one run's Dataset as one object; its presence marks the run complete."""
    put_atomic(location.fs, pack_path(location, check_name(name)), pack(ds))


def listed_runs(location: Location) -> set[str]:
    """The names of the complete runs: one listing of ``runs/``."""
    try:
        if _is_local(location.fs):  # a plain listing: fsspec's also normalises every path
            names = os.listdir(runs_dir(location))
        else:
            entries = location.fs.ls(runs_dir(location), detail=False, refresh=True)
            names = [str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries]
    except FileNotFoundError:
        return set()
    return {n[: -len(SUFFIX)] for n in names if n.endswith(SUFFIX) and not n.startswith(".")}


def read_packs(location: Location, names: Iterable[str]) -> dict[str, bytes]:
    """The packed bytes of runs, fetched concurrently (one request each); missing ones absent."""
    paths = {pack_path(location, n): n for n in names}
    if not paths:
        return {}
    fetched = location.fs.cat(list(paths), on_error="omit")
    return {paths[p]: data for p, data in fetched.items() if isinstance(data, bytes)}


def open_run(location: Location, name: str) -> xr.Dataset:
    """A complete run's Dataset (in memory); KeyError if the run is not complete."""
    data = read_packs(location, [name]).get(name)
    if data is None:
        raise KeyError(name)
    return unpack(data)


def committed_arrays(
    group: zarr.Group, names: Iterable[str] | None = None
) -> dict[str, zarr.Array]:
    """The study's arrays of the last commit (the root's consolidated metadata), by name: arrays
    written since by a gathering that did not finish are not among them.  ``names``: only
    those (a resume reads ``run``, ``daskmasker info`` the per-run coordinates)."""
    meta = group.metadata.consolidated_metadata
    if meta is None:
        return {}
    wanted = meta.metadata if names is None else [n for n in names if n in meta.metadata]
    arrays = {name: group[name] for name in wanted if "/" not in name}
    return {name: node for name, node in arrays.items() if isinstance(node, zarr.Array)}


def run_attrs(location: Location, names: Iterable[str]) -> dict[str, dict]:
    """The attributes of complete runs (concurrent reads); runs not complete are absent."""
    out = {}
    for name, data in read_packs(location, names).items():
        try:
            out[name] = unpack_attrs(data)
        except ValueError:
            continue
    return out
