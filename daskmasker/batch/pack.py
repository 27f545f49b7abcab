"""One run packed into one object: its arrays and attributes in a NumPy ``.npz`` archive.

A run of a batch store is written as a single object (``runs/<name>.npz``), so a study adds one
object per run, and the object's presence under its final name is what marks the run complete
(see :mod:`daskmasker.batch.store`).  The archive is NumPy's own format (a zip of ``.npy``
files, read by any NumPy without daskmasker): ``signals``, ``raw_signals``, ``confounds`` (if
any), ``frame``, ``region``, ``region_name``, ``confound`` and ``attrs`` (the run's attributes
as UTF-8 JSON).  Values round-trip bit for bit; no pickle is written or read.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # xarray is imported by unpack alone: `daskmasker info` reads attributes
    import xarray as xr
    from numpy.lib.npyio import NpzFile

ATTRS = "attrs"
_ARRAYS = ("signals", "raw_signals", "confounds", "coverage", "frame", "region")


def pack(ds: xr.Dataset) -> bytes:
    """A run's Dataset (:func:`~daskmasker.batch.dataset.run_dataset`) as ``.npz`` bytes."""
    arrays = {name: ds[name].values for name in _ARRAYS if name in ds.variables}
    arrays["region_name"] = ds["region_name"].values
    if "confound" in ds.variables:
        arrays["confound"] = ds["confound"].values
    return pack_arrays(arrays, dict(ds.attrs))


def pack_arrays(arrays: dict[str, np.ndarray], attrs: dict) -> bytes:
    """A run's arrays (``signals``, ``raw_signals``, ``frame``, ``region``, ``region_name``,
    and ``confounds`` with ``confound`` if any) and attributes as ``.npz`` bytes."""
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    for name in ("region_name", "confound"):
        if name in arrays:
            arrays[name] = np.asarray([str(n) for n in arrays[name]], dtype=str)
    text = json.dumps(attrs, sort_keys=True, allow_nan=True)
    arrays[ATTRS] = np.frombuffer(text.encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)  # unpack reads without pickles
    return buffer.getvalue()


def unpack(data: bytes) -> xr.Dataset:
    """The run's Dataset from :func:`pack`'s bytes (in memory: a run is small).

    Raises
    ------
    ValueError
        If the bytes are not a packed run (a truncated or foreign object).
    """
    from daskmasker.batch.dataset import run_dataset

    with _open(data) as npz:
        attrs = _attrs(npz)
        confounds = npz["confounds"] if "confounds" in npz.files else None
        return run_dataset(
            npz["signals"],
            npz["raw_signals"],
            confounds,
            frames=npz["frame"],
            region=npz["region"],
            region_names=[str(n) for n in npz["region_name"]],
            confound_names=None if confounds is None else [str(n) for n in npz["confound"]],
            t_r=attrs.get("t_r"),
            attrs=attrs,
            coverage=npz["coverage"] if "coverage" in npz.files else None,
        )


def unpack_arrays(data: bytes) -> dict[str, Any]:
    """A packed run as plain arrays (``attrs`` a dict): what gathering a study needs, without
    building a Dataset per run."""
    with _open(data) as npz:
        out: dict[str, Any] = {name: npz[name] for name in npz.files if name != ATTRS}
        out[ATTRS] = _attrs(npz)
        return out


def unpack_attrs(data: bytes) -> dict:
    """A packed run's attributes alone (its fingerprint, sources, timing)."""
    with _open(data) as npz:
        return _attrs(npz)


def _open(data: bytes) -> NpzFile:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"not a packed daskmasker run ({len(data)} bytes): {exc}") from exc


def _attrs(npz: NpzFile) -> dict:
    try:
        return json.loads(npz[ATTRS].tobytes().decode())
    except (KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"a packed run without readable attributes: {exc}") from exc
