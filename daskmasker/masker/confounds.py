"""Confounds and sample masks: loading and validation with nilearn 0.14.1's rules and messages.

Both loaders return new arrays: the caller's arrays, DataFrames and lists are never modified.

Confound files are parsed as nilearn's ``csv_to_array`` does: ``np.genfromtxt`` with whitespace
delimiters first, then a delimiter sniffed among space, tab, comma and semicolon.  A header row is
skipped only when the first parsed value is NaN, so, as in nilearn, the index column written by
``DataFrame.to_csv(path)`` becomes a regressor (save with ``index=False``), and a header of
numeric column names is read as data.

Differences from nilearn, all on inputs nilearn rejects with an obscure error or mishandles:

* a single-column confounds file is one regressor (nilearn raises ``IndexError``);
* a sample_mask index equal to the number of volumes is rejected with the same ``IndexError`` as
  larger ones (nilearn lets it through to numpy's "index 12 is out of bounds");
* a boolean sample_mask must have one value per volume (nilearn silently censors the volumes past
  a shorter mask), float indices must be whole numbers (nilearn truncates them), and an empty
  sample_mask is a clear ``ValueError`` (nilearn: "zero-size array to reduction operation").
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daskmasker.compute.clean import ensure_float
from daskmasker.io.fs import open_raw

CONFOUNDS_TYPES_MESSAGE = (
    "'confounds' must be of type(s): '<class 'list'>, <class 'tuple'>, <class 'str'>, "
    "<class 'numpy.ndarray'>, <class 'pandas.DataFrame'>'."
)
SAMPLE_MASK_TYPES_MESSAGE = (
    "'sample_masks' must be of type(s): '<class 'list'>, <class 'tuple'>, <class 'numpy.ndarray'>'."
)


def read_confounds_file(path: str | os.PathLike) -> np.ndarray:
    """Parse a csv, tsv or whitespace-separated confounds file exactly as nilearn does.

    Parameters
    ----------
    path : str or path-like
        A local file or an fsspec URL (``s3://...``; fsspec's default options, as for images
        given as URLs).

    Returns
    -------
    ndarray
        float64, 1D for a single column or a single row (as ``np.genfromtxt`` returns it).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    TypeError
        If no delimiter can be sniffed (nilearn's "Could not read CSV file [...]").
    """
    name = os.fspath(path)
    if "://" in name:  # a URL, read through fsspec (errors name it), as the images are
        with open_raw(name, None) as f:
            text = f.read().decode()
    else:
        local = Path(name).expanduser()
        if not local.is_file():
            raise FileNotFoundError(f"confounds file not found: '{local}'")
        name, text = str(local), local.read_text()
    lines = text.splitlines()

    def parse(**kwargs: Any) -> np.ndarray:
        try:
            return np.genfromtxt(lines, loose=False, encoding=None, **kwargs)
        except ValueError:
            try:
                dialect = csv.Sniffer().sniff(lines[0] if lines else "", " \t,;")
            except csv.Error as exc:
                raise TypeError(f"Could not read CSV file [{name}]: {exc.args[0]}") from exc
            return np.genfromtxt(lines, delimiter=dialect.delimiter, encoding=None, **kwargs)

    array = parse()
    if np.isnan(array.flat[0]):
        array = parse(skip_header=1)
    return array


def _one_confound(confound: Any, n_scans: int) -> np.ndarray:
    """One element of the confounds list as a (n_scans, n) array, nilearn's checks and errors."""
    if isinstance(confound, pd.DataFrame):
        confound = confound.to_numpy()
    if isinstance(confound, str | os.PathLike):
        array = read_confounds_file(confound)
        if array.ndim == 1:
            array = array[:, np.newaxis]
        if array.shape[0] != n_scans:
            raise ValueError(
                "Confound signal has an incorrect length. \n"
                f"Signal length: {n_scans}; confound length: {array.shape[0]} "
                f"(file '{confound}')"
            )
        return array
    if isinstance(confound, np.ndarray):
        if confound.ndim == 1:
            confound = confound[:, np.newaxis]
        elif confound.ndim != 2:
            raise ValueError(
                f"confound array has an incorrect number of dimensions: {confound.ndim}"
            )
        if confound.shape[0] != n_scans:
            raise ValueError(
                "Confound signal has an incorrect length. "
                f"Signal length: {n_scans}; confound length: {confound.shape[0]}."
            )
        return confound
    raise TypeError(f"confound has an unhandled type: {confound.__class__}")


def load_confounds(confounds: Any, n_scans: int) -> np.ndarray | None:
    """Confounds as one float (n_scans × n_confounds) array, as ``nilearn.signal.clean`` reads them.

    Parameters
    ----------
    confounds : ndarray, DataFrame, str, path-like, list or tuple of these, or None
        A 1D array is one regressor; several items are stacked side by side in order.
    n_scans : int
        Number of volumes of the image.

    Returns
    -------
    ndarray or None
        A new array, cast as nilearn's ``_ensure_float`` (int ≤ 4 bytes → float32, else float64).

    Raises
    ------
    TypeError
        For an unsupported type (nilearn's messages).
    ValueError
        For a length that is not ``n_scans``, an array with more than 2 dimensions, or an empty
        list.
    FileNotFoundError
        For a missing confounds file.

    Examples
    --------
    >>> load_confounds([np.arange(4), np.ones((4, 2))], n_scans=4).shape
    (4, 3)
    """
    if confounds is None:
        return None
    if isinstance(confounds, Path):
        confounds = str(confounds)
    if not isinstance(confounds, list | tuple | str | np.ndarray | pd.DataFrame):
        raise TypeError(f"{CONFOUNDS_TYPES_MESSAGE}\nGot: '{confounds.__class__.__name__}'")
    if not isinstance(confounds, list | tuple):
        confounds = [confounds]
    if len(confounds) == 0:
        raise ValueError(
            "confounds is an empty list: need at least one array to concatenate "
            "(pass None for no confounds)"
        )
    return ensure_float(np.hstack([_one_confound(c, n_scans) for c in confounds]))


def _mask_indices(mask: Any, n_scans: int) -> np.ndarray:
    """One sample_mask (indices or booleans) as an int64 index array, checked."""
    if np.ndim(mask) == 0:
        kind = type(mask).__name__
        raise TypeError(
            f"'{kind}' object is not iterable: a sample_mask given as a list must hold one "
            f"array of indices or booleans, not {kind}s (wrap a flat list in np.array or in "
            "another list)"
        )
    array = np.asarray(mask)
    if array.ndim != 1:
        raise ValueError(f"sample_mask must be 1D, got an array of shape {array.shape}")
    if array.dtype == bool:
        if array.size != n_scans:
            raise IndexError(
                f"boolean sample_mask has {array.size} values but the signal contains "
                f"{n_scans} time points"
            )
        return np.flatnonzero(array)
    if array.size and array.dtype.kind == "f":
        fractional = array[~np.isfinite(array) | (array != np.round(array))]
        if fractional.size:
            raise ValueError(f"sample_mask indices must be whole numbers, got {fractional}")
    elif array.size and array.dtype.kind not in "iu":
        raise TypeError(f"sample_mask must hold integer indices or booleans, got {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError("sample_mask should not contain negative values.")
    return array.astype(np.int64)


def load_sample_mask(sample_mask: Any, n_scans: int) -> np.ndarray | None:
    """The volumes to keep as int32 indices (in the order given), or None.

    Parameters
    ----------
    sample_mask : ndarray, list or tuple, or None
        1D indices of the volumes to keep, 1D booleans with one value per volume (True keeps),
        or a list/tuple holding one such mask (nilearn's per-run form, one run).
    n_scans : int
        Number of volumes of the image.

    Returns
    -------
    ndarray of int32 or None
        A new array, never the caller's.

    Raises
    ------
    TypeError
        For an unsupported type, or a flat list of booleans or ints (nilearn's
        "'bool' object is not iterable").
    ValueError
        For a list of several masks, negative or fractional indices, or a mask keeping nothing.
    IndexError
        For indices ≥ ``n_scans``, more indices than volumes, or booleans of the wrong length.

    Examples
    --------
    >>> load_sample_mask(np.array([True, False, True]), n_scans=3)
    array([0, 2], dtype=int32)
    """
    if sample_mask is None:
        return None
    if not isinstance(sample_mask, list | tuple | np.ndarray):
        raise TypeError(f"{SAMPLE_MASK_TYPES_MESSAGE}\nGot: '{sample_mask.__class__.__name__}'")
    masks = (sample_mask,) if isinstance(sample_mask, np.ndarray) else sample_mask
    indices = [_mask_indices(mask, n_scans) for mask in masks]
    if len(indices) != 1:
        raise ValueError(f"Number of sample_mask ({len(indices)}) not matching number of runs (1).")
    mask = indices[0]
    if mask.size > n_scans:
        raise IndexError(
            "sample_mask 1 of 1 is has more timepoints than the current run ;sample_mask "
            f"contains {mask.size} index but the run has {n_scans} timepoints."
        )
    if mask.size == 0:
        raise ValueError(
            f"sample_mask removes every volume (keeps none of {n_scans}): at least one must be kept"
        )
    invalid = mask[mask >= n_scans]
    if invalid.size:
        raise IndexError(
            f"sample_mask 1 of 1 contains invalid index {invalid}. "
            f"The signal contains {n_scans} time points."
        )
    return mask.astype(np.int32)


class HighVariance:
    """Marks where the high-variance confounds of the raw image go in the confounds list."""


def confounds_list(user: Any, high_variance: bool, last: bool = False) -> list | None:
    """The confounds of one image in nilearn's order: the user's and the high-variance ones.

    Parameters
    ----------
    user : array, DataFrame, path, a list of them, or None
        The confounds the user gave for this image.
    high_variance : bool
        The masker's ``high_variance_confounds``.
    last : bool, default=False
        The high-variance confounds after the user's (nilearn's ``MultiNiftiMapsMasker``), not
        before (``NiftiMapsMasker``).

    Returns
    -------
    list or None
        None when there are no confounds at all.

    Examples
    --------
    >>> confounds_list(None, False) is None
    True
    >>> [type(c).__name__ for c in confounds_list(["a.tsv"], True)]
    ['HighVariance', 'str']
    >>> [type(c).__name__ for c in confounds_list("a.tsv", True, last=True)]
    ['str', 'HighVariance']
    """
    if user is None and not high_variance:
        return None
    parts = [] if user is None else list(user) if isinstance(user, list) else [user]
    if high_variance:
        parts.insert(len(parts) if last else 0, HighVariance())
    return parts
