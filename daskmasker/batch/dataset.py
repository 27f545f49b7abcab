"""One run's Dataset: the arrays a batch keeps of a run, with their labels.

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
                                                sample mask)
``volume``            (volume,)                 index of each volume of the image
``region``            (region,)                 index of each extracted map
``region_name``       (region,)                 its name (as pandas columns and TSV headers)
``confound``          (confound,)               confound column names
====================  ========================  ==============================================

Attributes: ``source`` and ``checksum`` (``sha256:...``) of the image, ``confounds_source`` and
``confounds_checksum``, ``parameters``, ``versions``, ``t_r`` (and ``t_r_source``,
``header_t_r``), ``dtypes``, ``n_high_variance_confounds`` and ``fingerprint`` (see
:mod:`daskmasker.batch.fingerprint`).  A run is stored packed (:mod:`daskmasker.batch.pack`)
and gathered with the others into the study's arrays (:mod:`daskmasker.batch.study`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

FRAME_DOC = "index of the volume (of raw_signals, confounds) each time point was cleaned from"

LABELS = {
    "signals": (
        "cleaned region signals",
        "arbitrary",
        "the least-squares fit of the maps to "
        "each kept volume, cleaned with the masker's parameters",
    ),
    "raw_signals": (
        "raw region signals",
        "arbitrary",
        "float64 least-squares region signals "
        "of every volume, before cleaning (what a re-clean starts from)",
    ),
    "confounds": (
        "confounds",
        "arbitrary",
        "the confounds the signals were cleaned with, as loaded (high-variance confounds first)",
    ),
    "coverage": (
        "coverage",
        "1",
        "fraction of the map's weight inside the run's brain mask (and the masker's mask)",
    ),
    "frame": ("kept volume", "1", FRAME_DOC),
    "volume": ("volume", "1", "index of the volume in the image"),
    "region": ("map index", "1", "index of the map in the maps image"),
    "region_name": ("region name", "1", "name of the map's region (TSV header, pandas column)"),
    "confound": ("confound", "1", "name of the confound column"),
    "time": ("onset", "s", "onset of the kept volume: frame times the repetition time"),
}
"""``long_name``, ``units`` and ``description`` (CF-style) of each variable."""


def label(ds: xr.Dataset, labels: dict[str, tuple[str, str, str]] = LABELS) -> xr.Dataset:
    """Give every variable of ``ds`` that ``labels`` knows its CF-style attributes."""
    for name in ds.variables:
        if name in labels:
            long_name, units, description = labels[name]
            ds[name].attrs.update(long_name=long_name, units=units, description=description)
    return ds


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
        Confounds of every volume (their names in ``confound_names``).
    frames : ndarray of int
        The volumes kept, in output order.
    region : ndarray of int
        The extracted maps' indices.
    region_names : sequence of str
    confound_names : sequence of str, optional
        Required when ``confounds`` are given.
    t_r : float, optional
        Repetition time (s): gives the ``time`` coordinate (else the frame index).
    attrs : dict
        JSON-friendly attributes.
    coverage : ndarray of shape (K,), optional
        The fraction of each extracted map's weight inside the run's brain mask.

    Returns
    -------
    xarray.Dataset
    """
    raw = np.asarray(raw, dtype=np.float64)
    frames = np.asarray(frames, dtype=np.int64)
    data: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
        "signals": (("time", "region"), signals),
        "raw_signals": (("volume", "region"), raw),
    }
    coords = {
        "frame": ("time", frames),
        "volume": ("volume", np.arange(raw.shape[0], dtype=np.int64)),
        "region": ("region", np.asarray(region, dtype=np.int64)),
        "region_name": ("region", np.asarray(list(region_names), dtype=object)),
    }
    if confounds is not None:
        if confound_names is None:
            raise ValueError(f"confounds of shape {np.shape(confounds)} given without their names")
        data["confounds"] = (("volume", "confound"), np.asarray(confounds))
        coords["confound"] = ("confound", np.asarray(list(confound_names), dtype=object))
    if coverage is not None:
        data["coverage"] = (("region",), np.asarray(coverage, dtype=np.float64))
    coords["time"] = ("time", frames * float(t_r) if t_r else frames)
    ds = label(xr.Dataset(data, coords=coords))
    if not t_r:  # no repetition time: the time points are the kept volumes' indices
        ds["time"].attrs.update(long_name="kept volume", units="1", description=FRAME_DOC)
    ds.attrs.update(attrs)
    return ds
