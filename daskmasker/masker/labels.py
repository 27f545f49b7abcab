"""Region names: the masker's output columns, from a list or a labels file.

The same names label the pandas/polars columns of ``transform``, the ``region_name`` coordinate
of batch stores and the header of their TSV files.  Without names they are nilearn's
``niftimapsmasker0``, ``niftimapsmasker1``... (``get_feature_names_out``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

NAME_COLUMNS = ("name", "label", "labels", "region", "region_name")


def read_labels(path: str | os.PathLike) -> list[str]:
    """Region names from a file: one per line (``.txt``), or a table's ``name`` column.

    A ``.tsv`` or ``.csv`` table (a BIDS ``dseg.tsv`` or an atlas' labels file) has a header; the
    names are its ``name`` column (or ``label``, ``labels``, ``region``, ``region_name``; or its
    only column), one row per map in map order.

    Parameters
    ----------
    path : str or path-like
        A local file or an fsspec URL (fsspec's default options, as for images given as URLs).

    Returns
    -------
    list of str

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If a table has no names column.
    """
    name = os.fspath(path)
    if "://" in name:  # a URL, read through fsspec (errors name it), as the images are
        from daskmasker.io.fs import open_raw  # (here: a masker is made without fsspec)

        with open_raw(name, None) as f:
            text = f.read().decode()
        path = Path(name.split("?")[0])  # its suffix
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"labels file not found: '{path}'")
        text = path.read_text()
    if path.suffix.lower() not in (".tsv", ".csv"):
        return [line.strip() for line in text.splitlines() if line.strip()]
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    header = list(rows[0]) if rows else []
    column = next((c for c in header if c.strip().lower() in NAME_COLUMNS), None)
    if column is None and len(header) == 1:
        column = header[0]
    if column is None:
        raise ValueError(
            f"labels file '{name}' has no names column: expected one of {NAME_COLUMNS} in its "
            f"header, got {header}"
        )
    return [str(row[column]).strip() for row in rows]


def region_names(names: Any, n_maps: int) -> np.ndarray | None:
    """The names of all ``n_maps`` maps, checked, or None for nilearn's default names.

    Parameters
    ----------
    names : sequence of str, path of a labels file (see :func:`read_labels`), or None
    n_maps : int

    Returns
    -------
    ndarray of str (object) or None

    Raises
    ------
    ValueError
        If the number of names is not the number of maps, or names repeat.

    Examples
    --------
    >>> region_names(["DMN", "visual"], 2).tolist()
    ['DMN', 'visual']
    """
    if names is None:
        return None
    if isinstance(names, str | os.PathLike):
        values = read_labels(names)
        where = f" (from '{os.fspath(names)}')"
    elif isinstance(names, Sequence | np.ndarray):
        values = [str(n) for n in names]
        where = ""
    else:
        raise TypeError(
            "region_names must be a list of names or the path of a labels file, "
            f"got {type(names).__name__}"
        )
    if len(values) != n_maps:
        raise ValueError(
            f"region_names has {len(values)} names{where} but maps_img has {n_maps} maps"
        )
    repeated = sorted({n for n in values if values.count(n) > 1})
    if repeated:
        raise ValueError(f"region_names repeats names{where}: {repeated}")
    return np.asarray(values, dtype=object)
