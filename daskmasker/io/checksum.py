"""sha256 checksums of a run's source, for every kind of input the masker accepts.

What is hashed, by kind of input:

* a file (``.nii``, ``.nii.gz``, local or any fsspec URL, ``s3://`` included): its bytes as
  stored (compressed for ``.gz``), streamed, so ``sha256sum FILE`` gives the same digest;
* a Zarr store (a directory or a URL prefix): every key under it in sorted order, each as its
  path relative to the store, a NUL byte and the sha256 of its bytes (a Merkle list: two stores
  agree exactly when they hold the same keys with the same bytes);
* an in-memory image (a nibabel image not backed by a file, or a NumPy-backed daskmasker
  image): the voxel values as the masker reads them, in C order with their dtype and shape,
  and the float64 affine; a nibabel image loaded from a file is hashed as that file.

Digests are prefixed with the method (``sha256:`` for files, ``sha256-zarr:`` for stores,
``sha256-array:`` for arrays), so digests of different kinds never compare equal by accident.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import fsspec
import nibabel as nib
import numpy as np
import xarray as xr

_BLOCK = 8 << 20


def checksum(source: Any, storage_options: dict | None = None) -> str | None:
    """The checksum of a run's source, or None for a lazy image with no file behind it.

    Parameters
    ----------
    source : path, URL, Zarr store, nibabel image or daskmasker image
    storage_options : dict, optional
        fsspec options for URLs.

    Returns
    -------
    str or None
        ``"<method>:<hex digest>"`` (see the module docstring for what each method hashes).

    Examples
    --------
    >>> import numpy as np, nibabel as nib
    >>> checksum(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)))[:13]
    'sha256-array:'
    """
    if isinstance(source, str | os.PathLike):
        return _path_checksum(os.fspath(source), storage_options)
    if isinstance(source, nib.spatialimages.SpatialImage):
        filename = source.get_filename()
        if filename:
            return _path_checksum(filename, None)
        return _array_checksum(np.asanyarray(source.dataobj), source.affine, order="F")
    if isinstance(source, xr.DataArray):
        if source.attrs.get("source"):
            return _path_checksum(str(source.attrs["source"]), storage_options)
        if isinstance(source.data, np.ndarray) and "affine" in source.attrs:
            return _array_checksum(source.data, np.asarray(source.attrs["affine"]), order="C")
    return None


def _path_checksum(path: str, storage_options: dict | None) -> str:
    fs, _, (root,) = fsspec.get_fs_token_paths(path, storage_options=storage_options or {})
    if fs.isdir(root):
        digest = hashlib.sha256()
        prefix = root.rstrip("/") + "/"
        for key in sorted(fs.find(root)):
            digest.update(key[len(prefix) :].encode() + b"\0")
            digest.update(_file_digest(fs, key).digest())
        return f"sha256-zarr:{digest.hexdigest()}"
    return f"sha256:{_file_digest(fs, root).hexdigest()}"


def _file_digest(fs, path: str):
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest


def _array_checksum(data: np.ndarray, affine: np.ndarray, order: str) -> str:
    """Voxels in NIfTI order ``(x, y, z[, t])``, whichever layout holds them: a nibabel array
    (``order="F"``, x first) and a daskmasker image of the same voxels (``"C"``, reversed axes)
    hash alike."""
    data = np.asarray(data)
    if order == "C":
        data = data.transpose()
    digest = hashlib.sha256()
    digest.update(f"{data.dtype.str}{tuple(data.shape)}".encode())
    digest.update(np.ascontiguousarray(affine, dtype=np.float64).tobytes())
    volumes = data.reshape(*data.shape[:3], -1)
    for t in range(volumes.shape[3]):
        digest.update(np.ascontiguousarray(volumes[..., t].transpose()).tobytes())
    return f"sha256-array:{digest.hexdigest()}"
