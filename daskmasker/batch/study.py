"""The study's arrays: every complete run of a batch store along one ``run`` axis.

:func:`gather` adds the packed runs (:mod:`daskmasker.batch.pack`) that the arrays do not hold
yet, and commits them by rewriting the root's consolidated metadata, which is what readers
(``xr.open_zarr``, :func:`~daskmasker.batch.read.open_timeseries`) open:

=====================  ==========================  ===========================================
array                  dims                        content
=====================  ==========================  ===========================================
``signals``            (run, time, region)         cleaned signals, run ``r``'s kept frames in
                                                   ``time < n_frames[r]``, NaN past them
``raw_signals``        (run, volume, region)       float64 raw region signals, NaN past
                                                   ``n_volumes``
``confounds``          (run, volume, confound)     confounds, NaN past ``n_volumes`` and for
                                                   columns a run has not (if any run has some)
``frame``, ``onset``   (run, time)                 the kept volume of each time point (-1 past
                                                   ``n_frames``) and its onset in s (NaN)
``run``                (run,)                      run name (the packed object's name)
``subject``, ``task``  (run,)                      BIDS entities of the source file name (the
...                                                schema's long names; ``run`` and ``volume``
                                                   become ``bids_run``, ``bids_volume``), ""
                                                   when absent
``t_r``, ``n_volumes``,(run,)                      repetition time (s, NaN unknown), volumes of
``n_frames``, ...                                  the image, kept frames; ``source``,
                                                   ``checksum``, ``confounds_source``
``time``, ``volume``   (time,), (volume,)          positions (0, 1, ...)
``region``,            (region,)                   map index and region name
``region_name``
``confound``           (confound,)                 confound column names (union over runs)
=====================  ==========================  ===========================================

Arrays are chunked by blocks of runs (about 8 MiB of ``raw_signals`` per chunk, one object per
chunk and array): a study of 10,000 small runs is a few dozen objects besides the packed runs.
Runs are only ever appended (in name order within one gathering) or rewritten in place with
the values they had, and the consolidated metadata is written last: a gathering killed midway
leaves the committed arrays as they were (their chunks rewritten with the same values for the
runs already committed) and the next one finishes it.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import zarr
from zarr.core.metadata import ArrayV3Metadata

from daskmasker.batch.bids import bids_schema, parse_name
from daskmasker.batch.dataset import LABELS
from daskmasker.batch.pack import ATTRS, unpack_arrays
from daskmasker.batch.store import clear_pending, committed_arrays, listed_runs, read_packs
from daskmasker.io.fs import Location

CHUNK_BYTES = 8 * 2**20
"""Target size of a chunk of ``raw_signals`` (runs per chunk = this / one run's bytes)."""
MAX_RUNS_PER_CHUNK = 4096
RUN_COORD_CHUNK = 65536
DIMS = ("run", "time", "volume", "region", "confound")
ALWAYS = ("subject", "session", "task", "acquisition", "run", "space", "description")
"""BIDS entities always on the ``run`` axis (empty strings when absent)."""

RUN_LABELS = {
    "run": ("run", "1", "name of the run in the store (its source's BIDS prefix)"),
    "source": ("source image", "1", "path or URL of the image the run was extracted from"),
    "checksum": ("image checksum", "1", "sha256 of the image's contents"),
    "confounds_source": ("confounds source", "1", "file the confounds were read from, if any"),
    "t_r": ("repetition time", "s", "repetition time of the run (NaN when unknown)"),
    "n_volumes": ("volumes", "1", "number of volumes of the image (valid raw_signals rows)"),
    "n_frames": ("kept frames", "1", "number of kept time points (valid signals rows)"),
    "onset": (
        "onset",
        "s",
        "onset of the time point's volume: frame times t_r (NaN past "
        "n_frames or when the repetition time is unknown)",
    ),
    "time": ("time point", "1", "position among the run's kept frames (valid below n_frames)"),
    "volume": ("volume", "1", "index of the volume in the image (valid below n_volumes)"),
    "frame": (
        "kept volume",
        "1",
        "index of the volume each time point was cleaned from (-1 past n_frames)",
    ),
}
PER_RUN = ("source", "checksum", "confounds_source", "t_r", "n_volumes", "n_frames")
_FILL: dict[str, float | str] = {"f": np.nan, "i": -1, "U": "", "O": "", "T": ""}


def entity_coords(source: str) -> dict[str, str]:
    """The BIDS entities of a source file name, by coordinate name.

    Examples
    --------
    >>> entity_coords("/d/sub-01/func/sub-01_task-rest_run-2_desc-preproc_bold.nii.gz")
    {'subject': '01', 'task': 'rest', 'bids_run': '2', 'description': 'preproc'}
    """
    entities, _ = parse_name(source)
    names = _long_names()
    return {coord_name(names[k]): v for k, v in entities.items() if k in names}


@functools.cache
def _long_names() -> dict[str, str]:
    """Short entity names (``sub``) to the schema's long ones (``subject``)."""
    schema = bids_schema()
    return {schema.objects.entities[k]["name"]: k for k in schema.rules.entities}


def coord_name(entity: str) -> str:
    """The coordinate of a BIDS entity (long name): prefixed with ``bids_`` where it is also a
    dimension's name (``run``, ``volume``)."""
    return f"bids_{entity}" if entity in DIMS else entity


def entity_label(name: str) -> tuple[str, str, str]:
    entity = name.removeprefix("bids_")
    return (entity, "1", f"BIDS entity '{entity}' of the source file name ('' when absent)")


def runs_per_chunk(n_volumes: int, n_regions: int) -> int:
    """Runs per chunk of the study's arrays: about :data:`CHUNK_BYTES` of raw signals.

    Examples
    --------
    >>> runs_per_chunk(60, 16)
    1092
    >>> runs_per_chunk(1200, 1024)
    1
    """
    per_run = max(1, n_volumes) * max(1, n_regions) * 8
    return int(min(MAX_RUNS_PER_CHUNK, max(1, CHUNK_BYTES // per_run)))


def committed_runs(group: zarr.Group) -> list[str]:
    """The runs the committed study arrays hold, in their order."""
    runs = committed_arrays(group, ["run"]).get("run")  # only "run" opened: a resume reads this
    return [] if runs is None else [str(n) for n in np.asarray(runs[:])]


def gather(location: Location, redone: Iterable[str] = ()) -> list[str]:
    """Add the complete runs that the study's arrays do not hold (and rewrite ``redone`` ones),
    then commit; returns the names added or rewritten.

    New runs are read and written by blocks of a chunk's worth of runs, so memory holds a few
    chunks whatever the study's size.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Object at .* is not recognized")
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not")
        group = zarr.open_group(location.store, mode="r+", zarr_format=3)
        names = committed_runs(group)
        position = {name: i for i, name in enumerate(names)}
        listed = listed_runs(location)
        redone = [n for n in sorted(set(redone)) if n in position and n in listed]
        new = sorted(listed - set(position))
        if not new and not redone:
            clear_pending(location)
            return []
        writer = _Writer(group, len(names))
        todo = redone + new
        if writer.chunk is None:  # a new study: chunks sized on its first run
            first = unpack_arrays(read_packs(location, todo[:1])[todo[0]])
            writer.chunk = runs_per_chunk(*first["raw_signals"].shape)
        for names in _blocks(todo, writer.chunk, len(position)):
            packs = read_packs(location, names)
            runs = [unpack_arrays(packs[n]) for n in names if n in packs]
            writer.write([n for n in names if n in packs], runs, position)
        writer.finish()
        zarr.consolidate_metadata(location.store)
    clear_pending(location)  # after the commit: every complete run listed is gathered
    return redone + new


def _blocks(names: list[str], chunk: int, n_committed: int) -> Iterator[list[str]]:
    """Blocks of runs that fill the chunks along ``run`` (the first completes the last
    chunk), so each chunk is written about once."""
    start = 0
    size = chunk - n_committed % chunk
    while start < len(names):
        yield names[start : start + size]
        start, size = start + size, chunk


class _Writer:
    """Writes blocks of runs into the study's arrays, creating and growing them as needed."""

    def __init__(self, group: zarr.Group, n_committed: int) -> None:
        self.group, self.n = group, n_committed
        self.arrays = committed_arrays(group)
        raw = self.arrays.get("raw_signals")
        self.chunk: int | None = None if raw is None else raw.chunks[0]
        confound = self.arrays.get("confound")
        self.confounds = [] if confound is None else [str(c) for c in np.asarray(confound[:])]

    def write(self, names: Sequence[str], runs: list[dict], position: dict) -> None:
        """Write runs (:func:`~daskmasker.batch.pack.unpack_arrays`) at their rows."""
        if not runs:
            return
        first = runs[0]
        n_volumes = max(r["raw_signals"].shape[0] for r in runs)
        n_frames = max(r["signals"].shape[0] for r in runs)
        if "region" not in self.arrays:
            self._create_fixed(first)
        self._check_regions(runs, names)
        for run in runs:
            for c in run.get("confound", ()):
                if str(c) not in self.confounds:
                    self.confounds.append(str(c))
        rows = [position.get(n, -1) for n in names]
        appended = [i for i, r in enumerate(rows) if r < 0]
        for k, i in enumerate(appended):
            rows[i] = self.n + k
        self.n += len(appended)
        block = _block(runs, n_frames, n_volumes, self.confounds)
        for name, (dims, values) in block.items():
            self._put(name, dims, values, rows)
        self._put("run", ("run",), np.asarray(list(names), dtype=object), rows)

    def finish(self) -> None:
        if self.confounds:
            self._resize_1d("confound", self.confounds)
        self._data_coordinates()

    # arrays -------------------------------------------------------------------------------
    def _create_fixed(self, first: dict) -> None:
        self._array("region", ("region",), first["region"].astype(np.int64))
        names = np.asarray([str(n) for n in first["region_name"]], dtype=object)
        self._array("region_name", ("region",), names)

    def _check_regions(self, runs: list[dict], names: Sequence[str]) -> None:
        regions = np.asarray(self.arrays["region"][:])
        for name, run in zip(names, runs, strict=True):
            if not np.array_equal(run["region"], regions):
                raise ValueError(
                    f"run {name!r} has regions {run['region'].tolist()}, the study "
                    f"{regions.tolist()}: a store holds runs of one extraction"
                )

    def _array(self, name: str, dims: tuple, values: np.ndarray) -> None:
        """A whole array (the fixed coordinates), written at once."""
        old = self.arrays.get(name)
        if old is not None and old.shape == values.shape and np.array_equal(old[...], values):
            return  # unchanged: not rewritten
        arr = self.group.create_array(
            name,
            shape=values.shape,
            chunks=values.shape or (1,),
            dtype=str if values.dtype == object else values.dtype,
            fill_value=_fill(values.dtype),
            dimension_names=dims,
            attributes=_labels(name),
            overwrite=True,
        )
        arr[...] = values
        self.arrays[name] = arr

    def _put(self, name: str, dims: tuple, values: np.ndarray, rows: list[int]) -> None:
        """Write a block's rows of a run-first array, creating or growing it first."""
        shape = (self.n, *values.shape[1:])
        if name not in self.arrays:
            inner = tuple(max(1, s) for s in values.shape[1:])
            chunks = (RUN_COORD_CHUNK,) if len(dims) == 1 else (self.chunk, *inner)
            arr = self.group.create_array(
                name,
                shape=shape,
                chunks=chunks,
                dtype=str if values.dtype == object else values.dtype,
                fill_value=_fill(values.dtype),
                dimension_names=dims,
                attributes=_labels(name),
                overwrite=True,
            )
            self.arrays[name] = arr
        else:
            arr = self.arrays[name]
            if arr.dtype != values.dtype and values.dtype != object:
                raise ValueError(
                    f"{name} of the new runs is {values.dtype}, the study's {arr.dtype}: a store "
                    "holds runs of one extraction"
                )
            grown = tuple(max(a, b) for a, b in zip(arr.shape, shape, strict=True))
            if grown != arr.shape:
                arr.resize(grown)
        for lo, hi, rows_ in _runs_of(rows):
            index = (slice(lo, hi), *(slice(0, s) for s in values.shape[1:]))
            arr[index] = values[rows_]

    def _resize_1d(self, name: str, values: list[str]) -> None:
        self._array(name, (name,), np.asarray(values, dtype=object))

    def _data_coordinates(self) -> None:
        """The dimension coordinates ``time``, ``volume`` at their full length, the fill of
        per-run coordinates created after some runs, and each variable's ``coordinates``
        attribute (CF: how xarray tells coordinates from data)."""
        for dim, ref in (("time", "signals"), ("volume", "raw_signals")):
            length = self.arrays[ref].shape[1]
            self._array(dim, (dim,), np.arange(length, dtype=np.int64))
        for arr in self.arrays.values():
            dims = _dims(arr)
            if dims and dims[0] == "run" and arr.shape[0] < self.n:
                arr.resize((self.n, *arr.shape[1:]))
        data = ("signals", "raw_signals", "confounds", "coverage")
        coords = sorted(n for n in self.arrays if n not in data)
        for name in data:
            if name in self.arrays:
                axes = set(_dims(self.arrays[name]))
                own = [c for c in coords if set(_dims(self.arrays[c])) <= axes and c not in axes]
                if self.arrays[name].attrs.get("coordinates") != " ".join(own):
                    self.arrays[name].attrs["coordinates"] = " ".join(own)


def _dims(array: zarr.Array) -> tuple[str | None, ...]:
    """An array's dimension names (the study's arrays are Zarr v3's, which has them)."""
    meta = array.metadata
    if not isinstance(meta, ArrayV3Metadata):
        raise ValueError(f"{array.path} is a Zarr v{meta.zarr_format} array: a study is Zarr v3")
    return meta.dimension_names or ()


def _runs_of(rows: list[int]) -> Iterator[tuple[int, int, np.ndarray]]:
    """Contiguous stretches of destination rows: (start, stop, source indices)."""
    order = np.argsort(rows, kind="stable")
    start = 0
    for k in range(1, len(order) + 1):
        if k == len(order) or rows[order[k]] != rows[order[k - 1]] + 1:
            lo = rows[order[start]]
            yield lo, lo + (k - start), order[start:k]
            start = k


def _block(
    runs: list[dict], n_frames: int, n_volumes: int, confounds: list[str]
) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The runs' rows of every run-first array, padded (NaN, -1, "")."""
    n, k = len(runs), runs[0]["region"].shape[0]
    dtype = runs[0]["signals"].dtype
    signals = np.full((n, n_frames, k), np.nan, dtype=dtype)
    raw = np.full((n, n_volumes, k), np.nan)
    frame = np.full((n, n_frames), -1, dtype=np.int64)
    onset = np.full((n, n_frames), np.nan)
    conf = np.full((n, n_volumes, len(confounds)), np.nan) if confounds else None
    # NaN for runs extracted without a brain mask
    coverage = np.full((n, k), np.nan) if any("coverage" in r for r in runs) else None
    per_run: dict[str, list] = {name: [] for name in PER_RUN}
    entities: dict[str, list] = {}
    for i, run in enumerate(runs):
        attrs = run[ATTRS]
        t, v = run["signals"].shape[0], run["raw_signals"].shape[0]
        signals[i, :t] = run["signals"]
        raw[i, :v] = run["raw_signals"]
        frame[i, :t] = run["frame"]
        t_r = attrs.get("t_r") or math.nan
        onset[i, :t] = run["frame"] * t_r
        if conf is not None and "confounds" in run:
            columns = [confounds.index(str(c)) for c in run["confound"]]
            conf[i][:v, columns] = run["confounds"]
        if coverage is not None and "coverage" in run:
            coverage[i] = run["coverage"]
        source = str(attrs.get("source", ""))
        values = {
            "source": source,
            "checksum": str(attrs.get("checksum", "")),
            "confounds_source": str(attrs.get("confounds_source", "")),
            "t_r": float(t_r),
            "n_volumes": v,
            "n_frames": t,
        }
        for name in PER_RUN:
            per_run[name].append(values[name])
        found = entity_coords(source)
        for name in set(found) | set(entities) | {coord_name(e) for e in ALWAYS}:
            entities.setdefault(name, [""] * i).append(found.get(name, ""))
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
        "signals": (("run", "time", "region"), signals),
        "raw_signals": (("run", "volume", "region"), raw),
        "frame": (("run", "time"), frame),
        "onset": (("run", "time"), onset),
    }
    if conf is not None:
        out["confounds"] = (("run", "volume", "confound"), conf)
    if coverage is not None:
        out["coverage"] = (("run", "region"), coverage)
    for name, column in {**per_run, **entities}.items():
        array = np.asarray(column, dtype=object if isinstance(column[0], str) else None)
        if array.dtype.kind in "iu":
            array = array.astype(np.int64)
        out[name] = (("run",), array)
    return out


def _fill(dtype: np.dtype) -> float | str:
    return _FILL.get(np.dtype(dtype).kind, 0)


def _labels(name: str) -> dict:
    known = {**LABELS, **RUN_LABELS}
    long_name, units, description = known.get(name) or entity_label(name)
    if name == "signals":
        description += " (NaN past the run's n_frames)"
    elif name in ("raw_signals", "confounds"):
        description += " (NaN past the run's n_volumes)"
    return {"long_name": long_name, "units": units, "description": description}
