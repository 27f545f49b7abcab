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

import time

import numpy as np
import xarray as xr
import zarr

from daskmasker.batch import provenance
from daskmasker.io.fs import Location

BATCH_ATTR = "daskmasker_batch"


COMPLETE_ATTR = "complete"
# the root's index of complete items: a resume reads it and one listing, not every group
INDEX_ATTR = "daskmasker_complete"


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


def completed(group: zarr.Group, location: Location) -> set[str]:
    """The names of the store's complete items, in a bounded number of reads.

    The root's index (:class:`Index`) and one listing of the store give the items both indexed
    and present; only groups present but not indexed (at most those finished in the last
    second of a killed run, or being written then) are opened one by one.  A group removed by
    hand is not taken for complete, whatever the index says.
    """
    indexed = set(group.attrs.get(INDEX_ATTR, ()))
    listed = {
        entry["name"].rstrip("/").rsplit("/", 1)[-1]
        for entry in location.fs.ls(location.root, detail=True, refresh=True)
        if entry["type"] == "directory"
    }
    return (indexed & listed) | {name for name in listed - indexed if is_complete(group, name)}


class Index:
    """Records complete items in the root's index, at most once per ``interval`` seconds.

    Items are recorded after their group is marked complete, so the index never names an
    item that is not; an item complete but not yet recorded (a run killed meanwhile) is found
    by :func:`completed` from its own mark, and recorded when ``complete`` (the items found
    complete) is given.  Call :meth:`flush` at the end.
    """

    def __init__(self, group: zarr.Group, complete: set[str] = frozenset(), interval: float = 1.0):
        self.group, self.interval = group, interval
        self.names = set(group.attrs.get(INDEX_ATTR, ()))
        self.pending = len(complete - self.names)  # found complete but not indexed: record them
        self.names |= complete
        self.flushed = time.monotonic()

    def add(self, name: str) -> None:
        self.names.add(name)
        self.pending += 1
        if time.monotonic() - self.flushed >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.group.attrs[INDEX_ATTR] = sorted(self.names)
            self.pending = 0
        self.flushed = time.monotonic()


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
