"""fMRIPrep-style confounds tables: columns chosen by name or pattern, leading ``n/a`` filled.

fMRIPrep's ``*_desc-confounds_timeseries.tsv`` has hundreds of columns and writes ``n/a`` in the
first row of derivative and power columns.  Given such a file, ``NiftiMapsMasker`` (as nilearn's)
uses every column and fails on the ``n/a`` ("array must not contain infs or NaNs");
:func:`confounds_table` returns the chosen columns with each column's leading ``n/a`` replaced by
its first value, which is what ``nilearn.interfaces.fmriprep.load_confounds`` does for the
one-row case (the first row takes the second row's value).  An ``n/a`` after a column's first
value is an error, never filled silently.  The ``daskmasker extract`` command reads its
``--confounds`` files with it.
"""

from __future__ import annotations

import fnmatch
import io
import os
from collections.abc import Sequence

import pandas as pd


class ColumnNotFoundError(LookupError):
    """No column of the table matches a requested name or pattern."""


def _read(path: str | os.PathLike) -> pd.DataFrame:
    name = os.fspath(path)
    sep = "\t" if name.endswith(".tsv") else "," if name.endswith(".csv") else None
    if "://" in name:  # a URL, read through fsspec (errors name it), as the images are
        from daskmasker.io.fs import open_raw  # (here: reading a local table needs no fsspec)

        with open_raw(name, None) as f:
            source: str | io.BytesIO = io.BytesIO(f.read())
    else:
        source = name
    return pd.read_csv(source, sep=sep, engine="python", na_values=["n/a"])


def _named(table: pd.DataFrame) -> bool:
    try:
        [float(column) for column in table.columns]
    except ValueError:
        return True
    return False


def has_header(path: str | os.PathLike) -> bool:
    """Whether the file's first row names its columns (a table of plain numbers has none)."""
    return _named(_read(path))


def confounds_table(
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    n_scans: int | None = None,
) -> pd.DataFrame:
    """The chosen columns of a confounds file, float64, leading ``n/a`` filled.

    Parameters
    ----------
    path : str or path-like
        A ``.tsv`` (or ``.csv``, or whitespace-separated) file whose first row names the columns.
    columns : sequence of str, optional
        Names or glob patterns (``trans_*``), in the order wanted; a column matched twice is
        kept once.  Default: every column.
    n_scans : int, optional
        The image's number of volumes, checked against the rows.

    Returns
    -------
    pandas.DataFrame
        One column per confound, one row per volume; ``attrs["source"]`` is ``path``.

    Raises
    ------
    ColumnNotFoundError
        A name or pattern matches no column (the message lists the columns).
    ValueError
        The file has no header row, has another number of rows than ``n_scans``, or a column is
        all ``n/a`` or has an ``n/a`` after its first value (the message gives the line).

    Examples
    --------
    >>> import io, pathlib, tempfile
    >>> tsv = pathlib.Path(tempfile.mkdtemp()) / "confounds.tsv"
    >>> _ = tsv.write_text("trans_x\\ttrans_x_derivative1\\tcsf\\n1\\tn/a\\t5\\n2\\t1\\t6\\n")
    >>> confounds_table(tsv, ["trans_*"]).to_numpy().tolist()
    [[1.0, 1.0], [2.0, 1.0]]
    """
    table = _read(path)
    if not _named(table):
        raise ValueError(f"'{path}' has no header row of column names")
    if columns is not None:
        chosen: list[str] = []
        for pattern in columns:
            matched = [c for c in table.columns if fnmatch.fnmatchcase(c, pattern)]
            if not matched:
                listed = ", ".join(table.columns[:12]) + (", ..." if table.shape[1] > 12 else "")
                raise ColumnNotFoundError(
                    f"no column of '{path}' matches {pattern!r} (columns: {listed})"
                )
            chosen += [c for c in matched if c not in chosen]
        table = table[chosen]
    if n_scans is not None and len(table) != n_scans:
        raise ValueError(f"'{path}' has {len(table)} rows but its image has {n_scans} volumes")
    filled = {}
    for column in table.columns:
        known = table[column].notna().to_numpy()
        if not known.any():
            raise ValueError(f"column {column!r} of '{path}' is all n/a")
        first = int(known.argmax())
        later = (~known).nonzero()[0]
        later = later[later > first]
        if later.size:
            raise ValueError(
                f"column {column!r} of '{path}' has n/a at line {int(later[0]) + 2}, after its "
                "first value; only leading n/a are filled (leave the column out)"
            )
        filled[column] = table[column].fillna(table[column].iloc[first])
    result = pd.DataFrame(filled, columns=table.columns).astype("float64")
    result.attrs["source"] = os.fspath(path)  # provenance: batch stores record the file
    return result
