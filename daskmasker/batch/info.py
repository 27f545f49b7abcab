"""``daskmasker info``: a readable summary of a batch store (:func:`store_info`).

Kept apart from :mod:`daskmasker.batch.read` so that the command imports what it reads with,
Zarr and NumPy, and not xarray, pandas, Dask's arrays, distributed or SciPy: at 10,000 runs the
summary itself takes a fraction of a second and the imports were most of the command's time.
"""

from __future__ import annotations

import numpy as np
import zarr

from daskmasker.batch.fingerprint import NOT_NUMBERS, ROLES, VERSIONED
from daskmasker.batch.index import entry_of, read_index
from daskmasker.batch.provenance import versions
from daskmasker.batch.store import BATCH_ATTR, committed_arrays, listed_runs, open_store, run_attrs
from daskmasker.io.checksum import digest
from daskmasker.io.fs import Location


def store_info(store: str, storage_options: dict | None = None) -> str:
    """A readable summary of a batch store: runs, shapes, parameters, fingerprint status.

    The fingerprint status compares each run's recorded inputs with the files as they are now
    (size and modification time first, contents when those changed) and the recorded versions
    with the installed ones: ``current``, or what changed since.  Reads the root, the resume
    index, the study's per-run coordinates and one listing, whatever the number of runs.
    """
    location, attrs = open_store(store, storage_options)
    batch = attrs[BATCH_ATTR]
    listed = listed_runs(location)
    shapes: dict[str, tuple[int, int, int]] = {}
    cover: dict[str, str] = {}
    study = _committed_arrays(location)
    if "run" in study:
        names = [str(n) for n in np.asarray(study["run"][:])]
        frames = np.asarray(study["n_frames"][:]).tolist()
        volumes = np.asarray(study["n_volumes"][:]).tolist()
        n_regions = study["region"].shape[0]
        shapes = {n: (f, n_regions, v) for n, f, v in zip(names, frames, volumes, strict=True)}
        if "coverage" in study:
            lowest = _coverage(np.asarray(study["coverage"][:]), batch)
            cover = dict(zip(names, lowest, strict=True))
    runs = sorted(listed | set(shapes))
    lines = [
        f"{store}: daskmasker batch store, {len(runs)} run{'' if len(runs) == 1 else 's'} "
        f"({len(listed)} complete, "
        f"{len(set(shapes) & listed)} in the study's arrays)"
    ]
    params = batch.get("parameters", {})
    shown = sorted((k, v) for k, v in params.items() if k not in NOT_NUMBERS)
    lines.append("parameters: " + ", ".join(f"{k}={v}" for k, v in shown))
    if batch.get("recleaned_from"):
        lines.append(f"re-cleaned from: {batch['recleaned_from']}")
    head = f"{'run':<32} {'complete':<9} {'time x region':<14} {'volumes':<8}"
    lines.append(f"{head} {'coverage min (below)':<21} fingerprint")
    index = read_index(location)
    unindexed = listed - set(index)
    index.update(
        {n: entry_of(a.get("fingerprint") or {}) for n, a in run_attrs(location, unindexed).items()}
    )
    installed = versions()
    shared: dict = {}
    for name in runs:
        done = "yes" if name in listed else "no"
        n_frames, width, n_volumes = shapes.get(name, ("-", "-", "-"))
        shape = f"{n_frames}x{width}" if name in shapes else "-"
        status = _status(index.get(name), installed, storage_options, shared)
        covered = cover.get(name, "-")
        lines.append(f"{name:<32} {done:<9} {shape:<14} {n_volumes!s:<8} {covered:<21} {status}")
    return "\n".join(lines)


def _coverage(values: np.ndarray, batch: dict) -> list[str]:
    """Each run's lowest map coverage by its brain mask and how many regions are below the
    masker's ``min_coverage`` (``-`` for a run extracted without a brain mask)."""
    threshold = (batch.get("parameters") or {}).get("min_coverage")
    threshold = None if threshold in (None, "None") else float(threshold)
    out = []
    for row in values:
        if np.all(np.isnan(row)):
            out.append("-")
            continue
        low = 0 if threshold is None else int(np.sum(row < threshold))
        out.append(f"{float(np.nanmin(row)):.3f} ({low})")
    return out


def _status(entry: dict | None, installed: dict, storage_options: dict | None, shared: dict) -> str:
    """``current``, or what changed in the run's inputs and packages since it was written."""
    if not entry or not entry.get("fingerprint"):
        return "none recorded"
    changed = []
    for role in ROLES:
        recorded = entry.get(role)
        if recorded is None or not isinstance(recorded.get("source"), str):
            continue
        if recorded["source"].startswith("<"):
            recorded = recorded.get("file")  # a table read from a file: compare the file
            if recorded is None:
                continue  # in memory when extracted: nothing to compare with
        source = recorded["source"]
        key = (source, str(recorded.get("stat")))
        if key not in shared:
            try:
                found = digest(source, storage_options, recorded)  # None only for no input
                shared[key] = None if found is None else found["sha256"]
            except (FileNotFoundError, OSError):
                shared[key] = None
        if shared[key] is None:
            changed.append(f"{role} missing")
        elif shared[key] != recorded["sha256"]:
            changed.append(f"{role} changed")
    recorded_versions = entry.get("versions") or {}
    for name in VERSIONED:
        if recorded_versions.get(name) != installed.get(name):
            changed.append(f"{name} {recorded_versions.get(name)} -> {installed.get(name)}")
    return ", ".join(changed) if changed else "current"


def _committed_arrays(location: Location) -> dict[str, zarr.Array]:
    """The study's per-run arrays as last committed (as ``open_timeseries`` reads them), by
    name; empty before the first gathering."""
    group = zarr.open_group(location.store, mode="r", zarr_format=3, use_consolidated=True)
    return committed_arrays(group, ("run", "n_frames", "n_volumes", "region", "coverage"))
