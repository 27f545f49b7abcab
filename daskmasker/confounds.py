"""Confounds and sample masks: loading and validation with nilearn's rules and messages.

Confound files are parsed as nilearn's ``csv_to_array`` does: whitespace first, then a sniffed
delimiter among space, tab, comma and semicolon; a header row is skipped only when the first parsed
value is NaN.  So, as in nilearn, a pandas index column saved with ``DataFrame.to_csv(path)``
becomes
a regressor; save with ``index=False`` (and non-numeric column names).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def ensure_float(data: np.ndarray) -> np.ndarray:
    """nilearn's ``_ensure_float``: ints of ≤4 bytes become float32, 8-byte ints float64."""
    if data.dtype.kind != "f":
        return data.astype(np.float64 if data.dtype.itemsize == 8 else np.float32)
    return data


def read_confounds_file(path: str | os.PathLike) -> np.ndarray:
    """Parse a confounds file (csv, tsv or whitespace-separated) like nilearn."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"confounds file not found: '{path}'")

    def parse(**kwargs):
        try:
            return np.genfromtxt(path, loose=False, encoding=None, **kwargs)
        except ValueError:
            with path.open() as f:
                try:
                    dialect = csv.Sniffer().sniff(f.readline(), " \t,;")
                except csv.Error as exc:
                    raise TypeError(f"Could not read CSV file [{path}]: {exc.args[0]}") from exc
            return np.genfromtxt(path, delimiter=dialect.delimiter, encoding=None, **kwargs)

    array = parse()
    if np.isnan(array.flat[0]):
        array = parse(skip_header=1)
    return array


def _one_confound(confound: Any, n_scans: int) -> np.ndarray:
    if isinstance(confound, pd.DataFrame):
        confound = confound.to_numpy()
    if isinstance(confound, str | os.PathLike):
        array = read_confounds_file(confound)
        if array.ndim == 1:
            array = array[:, None]
        if array.shape[0] != n_scans:
            raise ValueError(
                f"Confound signal has an incorrect length. \nSignal length: {n_scans}; "
                f"confound length: {array.shape[0]} (file '{confound}')"
            )
        return array
    if isinstance(confound, np.ndarray):
        if confound.ndim == 1:
            confound = confound[:, None]
        elif confound.ndim != 2:
            raise ValueError(
                f"confound array has an incorrect number of dimensions: {confound.ndim}"
            )
        if confound.shape[0] != n_scans:
            raise ValueError(
                f"Confound signal has an incorrect length. Signal length: {n_scans}; "
                f"confound length: {confound.shape[0]}."
            )
        return confound
    raise TypeError(f"confound has an unhandled type: {confound.__class__}")


def load_confounds(confounds: Any, n_scans: int) -> np.ndarray | None:
    """Confounds as one float (n_scans × n_confounds) array, or None.

    Parameters
    ----------
    confounds : ndarray, DataFrame, str, Path, or a list/tuple of these
    n_scans : int
        Number of volumes of the image.

    Returns
    -------
    ndarray or None
        A new array: the caller's objects are never modified.
    """
    if confounds is None:
        return None
    if not isinstance(confounds, list | tuple):
        confounds = [confounds]
    if len(confounds) == 0:
        return None
    parts = [np.array(_one_confound(c, n_scans), copy=True) for c in confounds]
    return ensure_float(np.hstack(parts))


def load_sample_mask(sample_mask: Any, n_scans: int) -> np.ndarray | None:
    """Volumes to keep as sorted-as-given int32 indices, or None.

    Accepts indices, booleans of length ``n_scans``, or a list/tuple holding one of them (nilearn's
    forms).  Unlike nilearn, an index equal to ``n_scans`` is rejected with the same clear error as
    larger ones (nilearn lets it through to a numpy IndexError).
    """
    if sample_mask is None:
        return None
    if not isinstance(sample_mask, list | tuple | np.ndarray):
        raise TypeError(
            "'sample_masks' must be of type(s): 'list, tuple, ndarray'.\n"
            f"Got: '{sample_mask.__class__.__name__}'"
        )
    masks = (sample_mask,) if isinstance(sample_mask, np.ndarray) else sample_mask
    if any(isinstance(m, bool | np.bool_) for m in masks):
        raise TypeError(
            "'bool' object is not iterable: sample_mask as a flat list of booleans is not "
            "accepted; pass a numpy boolean array or a list holding one"
        )
    if len(masks) != 1:
        raise ValueError(f"Number of sample_mask ({len(masks)}) not matching number of runs (1).")
    mask = np.asarray(masks[0])
    if mask.ndim != 1:
        raise ValueError(f"sample_mask must be 1D, got shape {mask.shape}")
    if mask.dtype == bool:
        if mask.size != n_scans:
            raise IndexError(
                f"sample_mask 1 of 1 is has more timepoints than the current run ;sample_mask "
                f"contains {mask.size} index but the run has {n_scans} timepoints."
                if mask.size > n_scans
                else f"boolean sample_mask has {mask.size} values but the image has "
                f"{n_scans} volumes"
            )
        mask = np.flatnonzero(mask)
    elif mask.size and mask.dtype.kind not in "iu":
        raise TypeError(f"sample_mask must hold integers or booleans, got dtype {mask.dtype}")
    if mask.size == 0:
        raise ValueError("sample_mask removes every volume: at least one volume must be kept.")
    if mask.min() < 0:
        raise ValueError("sample_mask should not contain negative values.")
    if mask.size > n_scans:
        raise IndexError(
            f"sample_mask 1 of 1 is has more timepoints than the current run ;sample_mask "
            f"contains {mask.size} index but the run has {n_scans} timepoints."
        )
    invalid = mask[mask >= n_scans]
    if invalid.size:
        raise IndexError(
            f"sample_mask 1 of 1 contains invalid index {invalid}. "
            f"The signal contains {n_scans} time points."
        )
    return mask.astype(np.int32)
