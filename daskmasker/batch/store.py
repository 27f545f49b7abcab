"""The batch store: a Zarr v3 group per run, written whole and then marked complete.

Layout (a local path or fsspec URL)::

    out.zarr/                      attrs: daskmasker_batch (masker parameters, versions),
                                   daskmasker_complete (index of complete runs, see Index)
      sub-01_task-rest/            one run: an xarray Dataset (see :func:`run_dataset`)
      sub-02_task-rest/
      ...

A run's Dataset holds what is needed to audit and to re-clean it without the images:

====================  ========================  ==============================================
variable              dims                      content
====================  ========================  ==============================================
``signals``           (time, region)            the cleaned region signals (the output)
``raw_signals``       (volume, region)          float64 least-squares region signals of every
                                                volume, before cleaning
``confounds``         (volume, confound)        confounds the signals were cleaned with (as
                                                loaded: high-variance ones first), if any
``time``              (time,)                   onset of each kept volume (s), when TR is known
``frame``             (time,)                   index of each kept volume, in output order (the
                                                sample mask; ``volume`` has no coordinate)
``region``            (region,)                 index of each extracted map
``region_name``       (region,)                 its name (as pandas columns and TSV headers)
``confound``          (confound,)               confound column names
``coverage``          (region,)                 fraction of each map's weight inside the run's
                                                brain mask, when one was given
====================  ========================  ==============================================

Attributes: ``source`` and ``checksum`` (``sha256:...``) of the image, ``confounds_source`` and
``confounds_checksum``, ``parameters``, ``versions``, ``t_r`` (and ``t_r_source``, ``header_t_r``),
``dtypes``, ``n_high_variance_confounds``, ``fingerprint`` (see
:mod:`daskmasker.batch.fingerprint`) and ``complete``.

A run's group is written whole and only then marked ``complete`` (one small attribute write,
atomic on file systems and object stores alike), so a half-written group is never taken for a
finished one.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr
import zarr

from daskmasker.batch import provenance
from daskmasker.io.fs import Location

BATCH_ATTR = "daskmasker_batch"


COMPLETE_ATTR = "complete"
FRAME_DOC = "index of the volume (of raw_signals, confounds) each time point was cleaned from"
# the root's index of complete runs, name -> {fingerprint sha, image and confounds digests}: a
# resume reads it and one listing, not every group
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


def run_names(group: zarr.Group, complete_only: bool = False) -> list[str]:
    """The run groups of a batch store, sorted (files beside them, as ``report.html``, are not
    runs: zarr's warning about them is silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Object at .* is not recognized")
        names = sorted(group.group_keys())
    if complete_only:
        names = [n for n in names if group[n].attrs.get(COMPLETE_ATTR)]
    return names


def completed(group: zarr.Group, location: Location) -> dict[str, dict | None]:
    """The store's complete runs, name -> index entry, in a bounded number of reads.

    The root's index (:class:`Index`) and one listing of the store give the runs both indexed
    and present, with their entries (the fingerprint's sha256 and the inputs' digests); only
    groups present but not indexed (at most those finished in the last second of a killed run,
    or written by an older daskmasker) are opened one by one, and given ``None``.  A group
    removed by hand is not taken for complete, whatever the index says.
    """
    indexed = _index(group)
    listed = {
        entry["name"].rstrip("/").rsplit("/", 1)[-1]
        for entry in location.fs.ls(location.root, detail=True, refresh=True)
        if entry["type"] == "directory"
    }
    found = {name: indexed[name] for name in listed if name in indexed}
    found.update({name: None for name in listed - set(indexed) if is_complete(group, name)})
    return found


def _index(group: zarr.Group) -> dict:
    index = group.attrs.get(INDEX_ATTR, {})
    return dict(index) if isinstance(index, dict) else {}  # a list: names alone, no fingerprints


class Index:
    """Records complete runs in the root's index, at most once per ``interval`` seconds.

    Runs are recorded after their group is marked complete, with their entry (see
    :func:`completed`), so the index never names a run that is not; a run complete but not
    yet recorded (a run killed meanwhile) is found by :func:`completed` from its own mark and
    recorded when its entry is given to :meth:`add`.  Call :meth:`flush` at the end.
    """

    def __init__(self, group: zarr.Group, interval: float = 1.0):
        self.group, self.interval = group, interval
        self.entries = _index(group)
        self.pending = 0
        self.flushed = time.monotonic()

    def add(self, name: str, entry: dict) -> None:
        self.entries[name] = entry
        self.pending += 1
        if time.monotonic() - self.flushed >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.group.attrs[INDEX_ATTR] = dict(sorted(self.entries.items()))
            self.pending = 0
        self.flushed = time.monotonic()


def is_complete(group: zarr.Group, name: str) -> bool:
    """Whether a run's group exists and was marked complete."""
    try:
        return bool(group[name].attrs.get(COMPLETE_ATTR, False))
    except KeyError:
        return False


def run_attrs(group: zarr.Group, name: str) -> dict | None:
    """A run group's attributes, or None when it does not exist."""
    try:
        return dict(group[name].attrs)
    except KeyError:
        return None


def run_dataset(
    signals: np.ndarray,
    raw: np.ndarray,
    confounds: np.ndarray | None,
    *,
    frames: np.ndarray,
    region: np.ndarray,
    region_names: Sequence[str],
    confound_names: Sequence[str] | None,
    t_r: float | None,
    attrs: dict,
    coverage: np.ndarray | None = None,
) -> xr.Dataset:
    """One run's Dataset (see the module docstring for its variables).

    Parameters
    ----------
    signals : ndarray, shape (len(frames), K)
        Cleaned signals.
    raw : ndarray, shape (T, K)
        Uncleaned region signals of every volume.
    confounds : ndarray of shape (T, C), or None
    frames : ndarray of int
        The volumes kept, in output order.
    region : ndarray of int
        The extracted maps' indices.
    region_names : sequence of str
    confound_names : sequence of str, optional
    t_r : float, optional
        Repetition time (s): gives the ``time`` coordinate.
    attrs : dict
        JSON-friendly attributes.
    coverage : ndarray of shape (K,), optional
        The fraction of each extracted map's weight inside the run's brain mask.

    Returns
    -------
    xarray.Dataset
    """
    # each array costs a metadata and a chunk write per run: the sample mask is ``frame``
    # alone and volumes are numbered by position, not by a coordinate
    data = {
        "signals": (("time", "region"), signals),
        "raw_signals": (("volume", "region"), np.asarray(raw, dtype=np.float64)),
    }
    coords = {
        "frame": ("time", np.asarray(frames, dtype=np.int64), {"description": FRAME_DOC}),
        "region": ("region", np.asarray(region, dtype=np.int64)),
        "region_name": ("region", np.asarray(list(region_names), dtype=object)),
    }
    if t_r:
        coords["time"] = ("time", np.asarray(frames) * float(t_r), {"units": "s"})
    if confounds is not None:
        data["confounds"] = (("volume", "confound"), np.asarray(confounds))
        coords["confound"] = ("confound", np.asarray(list(confound_names), dtype=object))
    if coverage is not None:
        data["coverage"] = (("region",), np.asarray(coverage, dtype=np.float64))
    ds = xr.Dataset(data, coords=coords)
    if coverage is not None:
        ds["coverage"].attrs["description"] = (
            "fraction of the map's weight inside the run's brain mask (and the masker's mask)"
        )
    ds["raw_signals"].attrs["description"] = "least-squares region signals before cleaning"
    ds.attrs.update(attrs)
    return ds


def write_item(mapper, name: str, ds: xr.Dataset) -> None:
    """Write one run's Dataset, then mark it complete (the last write)."""
    ds.to_zarr(mapper, group=name, mode="w", zarr_format=3, consolidated=False)
    zarr.open_group(mapper, path=name, mode="a").attrs[COMPLETE_ATTR] = True
