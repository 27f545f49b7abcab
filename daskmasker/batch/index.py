"""The resume index of a batch store: what a resume checks of each complete run without
opening it (``runs/index.json``, see :mod:`daskmasker.batch.store`).

Each complete run has an entry (:func:`entry_of`): its fingerprint's sha256
(:func:`~daskmasker.batch.fingerprint.fingerprint_sha`), the sha256 of the fields all the runs
of a batch share (``shared``: parameters, maps and mask digests, region names, versions) and of
its own fields (``own``: sample mask, denoising record), and its inputs' digests (image,
confounds, brain mask; the maps, mask and versions too, for ``daskmasker info``).  Two runs
with equal ``shared``, ``own`` and input digests have the same fingerprint, so a resume
compares one ``shared`` value per batch and, per run, two strings and its inputs' stats
(:meth:`Recorder.split <daskmasker.batch.record.Recorder.split>`), never encoding a
fingerprint.

The file is stored by column (format 2), the way a resume reads it: one list per field; the
digests of files as lists of source, stat and sha256, a local file's stat also parsed (``size``
and ``mtime``, compared as numbers); a sha256 column as one string of 64-character cells; and
``shared``, ``own``, the maps, mask and versions once per distinct value (``kinds``, a row's
``kind`` its position there): smaller and faster to parse than the entries as JSON objects
(format 1, read as well).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from daskmasker.batch.fingerprint import fingerprint_sha, own_sha, shared_sha
from daskmasker.batch.pack import unpack_attrs
from daskmasker.batch.store import INDEX, RUNS, listed_runs, put_atomic, read_packs, runs_dir
from daskmasker.io.checksum import stat_numbers
from daskmasker.io.fs import Location

FORMAT = 2
INPUTS = ("image", "confounds", "brain_mask")
"""A run's inputs, digested each (``brain_mask`` recorded only when given)."""
BATCH_WIDE = ("maps", "mask", "versions")
"""Fields of an entry stored once per distinct value."""
_FILE_KEYS = {"source", "stat", "sha256"}


def entry_of(fp: dict) -> dict:
    """A complete run's entry in the resume index, from its fingerprint.

    Examples
    --------
    >>> from daskmasker.batch.fingerprint import fingerprint
    >>> fp = fingerprint({}, {"image": {"source": "a", "stat": "1:2", "sha256": "f0"}}, None, [])
    >>> sorted(entry_of(fp))
    ['confounds', 'fingerprint', 'image', 'maps', 'mask', 'own', 'shared', 'versions']
    """
    entry = {
        "fingerprint": fingerprint_sha(fp),
        "shared": shared_sha(fp),
        "own": own_sha(fp),
        **{role: fp.get(role) for role in ("image", "maps", "mask", "confounds")},
        "versions": fp.get("versions"),
    }
    if fp.get("brain_mask") is not None:  # its stat too, so a resume need not hash it again
        entry["brain_mask"] = fp["brain_mask"]
    return entry


def _is_file_digest(value: Any) -> bool:
    return (
        isinstance(value, dict) and value.keys() == _FILE_KEYS and isinstance(value["source"], str)
    )


class ResumeIndex(Mapping[str, dict]):
    """Complete runs' index entries (name -> :func:`entry_of` dict), held by column.

    Parameters
    ----------
    columns : dict
        The stored columns (:meth:`from_entries`, or the file's).
    names : iterable of str, optional
        The runs it holds of the columns' (default: all of them).
    extra : dict, optional
        Entries of other runs (complete, not in the stored index), name -> entry.
    """

    def __init__(
        self, columns: dict, names: Any = None, extra: dict[str, dict] | None = None
    ) -> None:
        self.columns = columns
        rows = {name: i for i, name in enumerate(columns["names"])}
        self.rows = rows if names is None else {n: rows[n] for n in names if n in rows}
        self.extra = dict(extra or {})

    @classmethod
    def from_entries(cls, entries: Mapping[str, dict]) -> ResumeIndex:
        """The index of these entries (those of a format-1 file lack ``shared`` and ``own``:
        their runs are checked the slow way, then their entries renewed)."""
        names = sorted(entries)
        rows = [entries[name] for name in names]
        kinds: dict[str, int] = {}
        table: list[dict] = []
        kind = []
        for row in rows:
            value = {key: row.get(key) for key in ("shared", "own", *BATCH_WIDE)}
            if value["shared"] is None or value["own"] is None:  # a format-1 entry
                key = json.dumps(value, sort_keys=True, default=str)
            else:  # the shared sha256 covers the maps, mask and versions
                key = f"{value['shared']} {value['own']}"
            if key not in kinds:
                kinds[key] = len(table)
                table.append(value)
            kind.append(kinds[key])
        columns: dict[str, Any] = {
            "format": FORMAT,
            "names": names,
            "fingerprint": _hex_column([row.get("fingerprint") for row in rows]),
            "kinds": table,
            "kind": kind,
        }
        for role in INPUTS:
            values = [row.get(role) for row in rows]
            files = [v if _is_file_digest(v) else None for v in values]
            others = {str(i): v for i, v in enumerate(values) if v is not None and files[i] is None}
            columns[role] = {"other": others}
            if any(files):
                columns[role]["source"] = [f and f["source"] for f in files]
                columns[role]["stat"] = [f and f["stat"] for f in files]
                columns[role]["sha256"] = _hex_column([f and f["sha256"] for f in files])
                numbers = [stat_numbers(f and f["stat"]) for f in files]
                columns[role]["size"] = [n and n[0] for n in numbers]
                columns[role]["mtime"] = [n and n[1] for n in numbers]
        return cls(columns)

    @classmethod
    def from_json(cls, data: bytes) -> ResumeIndex:
        """The index a ``runs/index.json`` holds (format 2, or 1: name -> entry).

        Raises
        ------
        ValueError
            For an index of a later format (written by a newer daskmasker).
        """
        parsed = json.loads(data)
        found = parsed.get("format")
        if found == FORMAT:
            return cls(parsed)
        if isinstance(found, int):  # (in format 1, a run named "format" has a dict)
            raise ValueError(
                f"a resume index of format {found}, newer than this daskmasker reads "
                f"({FORMAT}): upgrade daskmasker"
            )
        return cls.from_entries(parsed)

    def to_json(self) -> bytes:
        """The stored form (its rows only)."""
        if self.extra or len(self.rows) != len(self.columns["names"]):
            return ResumeIndex.from_entries(dict(self.items())).to_json()
        return json.dumps(self.columns, separators=(",", ":")).encode()

    def input_digest(self, role: str, row: int) -> dict | None:
        """The digest of a run's input ``role`` (by row)."""
        column = self.columns[role]
        if "source" in column and column["source"][row] is not None:
            sha = _cell(column["sha256"], row)
            return {"source": column["source"][row], "stat": column["stat"][row], "sha256": sha}
        return column["other"].get(str(row))

    def __getitem__(self, name: str) -> dict:
        if name in self.extra:
            return self.extra[name]
        row = self.rows[name]
        entry = {
            "fingerprint": _cell(self.columns["fingerprint"], row),
            **self.columns["kinds"][self.columns["kind"][row]],
        }
        for role in INPUTS:
            digest = self.input_digest(role, row)
            if digest is not None or role != "brain_mask":
                entry[role] = digest
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self.rows or name in self.extra

    def __iter__(self) -> Iterator[str]:
        yield from self.rows
        yield from (name for name in self.extra if name not in self.rows)

    def __len__(self) -> int:
        return len(self.rows) + sum(name not in self.rows for name in self.extra)


_HEX = 64
_BLANK = " " * _HEX


def _hex_column(values: list[str | None]) -> str | list[str | None]:
    """sha256 values (64 hexadecimal digits, or None) as one string of 64-character cells, None
    a blank cell (as Arrow's fixed-size binary: one string parses faster than a list of
    strings); a list if any value is something else."""
    if all(v is None or (isinstance(v, str) and len(v) == _HEX and v != _BLANK) for v in values):
        return "".join(_BLANK if v is None else v for v in values)
    return values


def _cell(column: str | list, row: int) -> str | None:
    """A row of a :func:`_hex_column`."""
    if isinstance(column, list):
        return column[row]
    value = column[_HEX * row : _HEX * (row + 1)]
    return None if value == _BLANK else value


def _index_path(location: Location) -> str:
    return f"{runs_dir(location)}/{INDEX}"


def read_index(location: Location) -> dict[str, dict]:
    """The resume index (run name -> entry), empty when there is none."""
    return dict(_read(location).items())


def _read(location: Location) -> ResumeIndex:
    try:
        data = location.fs.cat_file(_index_path(location))
    except FileNotFoundError:
        return ResumeIndex.from_entries({})
    try:
        return ResumeIndex.from_json(data)
    except ValueError as exc:
        raise ValueError(f"{location.url.rstrip('/')}/{RUNS}/{INDEX}: {exc}") from None


def write_index(location: Location, entries: Mapping[str, dict]) -> None:
    """Replace the resume index, atomically."""
    index = entries if isinstance(entries, ResumeIndex) else ResumeIndex.from_entries(entries)
    put_atomic(location.fs, _index_path(location), index.to_json())


def completed(location: Location) -> ResumeIndex:
    """The store's complete runs, name -> index entry, in a bounded number of requests.

    One listing of ``runs/`` gives the complete runs, the index their entries; runs complete but
    not indexed (finished by a batch killed before its end) are read, concurrently, and held as
    the result's ``extra`` entries; unreadable objects (put there by hand) are not complete.
    """
    listed = listed_runs(location)
    index = _read(location)
    if index.rows.keys() == listed:
        return index
    found = ResumeIndex(index.columns, (name for name in index.rows if name in listed))
    for name, data in read_packs(location, listed - found.rows.keys()).items():
        try:
            found.extra[name] = entry_of(unpack_attrs(data).get("fingerprint") or {})
        except ValueError:
            continue
    return found
