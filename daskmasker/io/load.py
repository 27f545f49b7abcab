"""Anything the masker accepts → a lazy image (see :mod:`daskmasker.io.image`).

Accepted: daskmasker images; nibabel images (wrapped lazily, never copied or modified); paths (``~``
expanded, glob patterns expanded to a sorted list, as nilearn does) and fsspec URLs of NIfTI files
or
Zarr stores; lists or tuples of 3D images (stacked along time); single-variable xarray Datasets
and DataArrays opened by plain xarray from daskmasker stores or with ``engine="nifti"``.
Errors follow nilearn's types and messages.
"""

from __future__ import annotations

import glob
import os
from typing import Any

import dask.array as da
import nibabel as nib
import numpy as np
import xarray as xr

from daskmasker.io.image import (
    COMPONENT_DIM,
    TIME_DIM,
    DimensionError,
    as_maps,
    from_xarray,
    image_affine,
    is_image,
    make_image,
)
from daskmasker.io.nibabel import from_nibabel
from daskmasker.io.nifti import header_summary, open_nifti
from daskmasker.io.nifti_header import pair_files


def _not_niimg(obj: Any) -> TypeError:
    return TypeError(
        "input should be a NiftiLike object or an iterable of NiftiLike object. "
        f"Got: {obj.__class__.__name__}"
    )


def _is_zarr(path: str) -> bool:
    stripped = path.rstrip("/")
    if stripped.endswith(".zarr"):
        return True
    if "://" in path:
        return False
    return os.path.isdir(path) and os.path.exists(os.path.join(path, "zarr.json"))


def _expand(path: str) -> list[str] | str:
    if "://" in path:
        return path
    expanded = os.path.expanduser(path)
    if glob.has_magic(expanded):
        matches = sorted(glob.glob(expanded))
        if not matches:
            raise ValueError(f"No files matching path: {path}")
        return matches if len(matches) > 1 else matches[0]
    if not os.path.exists(expanded):
        raise ValueError(f"File not found: '{expanded}'")
    return expanded


def _load_one(obj: Any, storage_options: dict | None = None, chunks: Any = None) -> xr.DataArray:
    if isinstance(obj, xr.DataArray) and is_image(image := from_xarray(obj)):
        return image
    if isinstance(obj, xr.Dataset):
        if len(obj.data_vars) != 1:
            raise ValueError(
                f"an xarray Dataset must hold one image variable, got {list(obj.data_vars)}"
            )
        return _load_one(next(iter(obj.data_vars.values())), storage_options, chunks)
    if isinstance(obj, nib.spatialimages.SpatialImage):
        return from_nibabel(obj, chunks)
    if isinstance(obj, str | os.PathLike):
        path = _expand(os.fspath(obj))
        if isinstance(path, list):
            return _stack([_load_one(p, storage_options, chunks) for p in path])
        if _is_zarr(path):
            from daskmasker.io.zarr import open_zarr  # zarr imported for Zarr stores only

            return open_zarr(path, storage_options=storage_options)
        try:
            return open_nifti(path, chunks=chunks, storage_options=storage_options)
        except FileNotFoundError as exc:
            missing = f"File not found: '{path}'"
            if pair_files(path) is not None:  # which of the two files, and whose
                missing = f"File not found: {exc}"
            raise ValueError(missing) from exc
    raise _not_niimg(obj)


def _stack(images: list[xr.DataArray]) -> xr.DataArray:
    if not images:
        raise ValueError("The image is empty.")
    first = images[0]
    for img in images:
        if img.ndim != 3:
            raise DimensionError(img.ndim + 1, 4, what="a list of 4D images")
        if img.shape != first.shape or not np.allclose(image_affine(img), image_affine(first)):
            raise ValueError(
                "Field of view of image #0 is different from reference FOV.\n"
                f"Reference affine:\n{image_affine(first)}\nImage affine:\n{image_affine(img)}\n"
                f"Reference shape:\n{first.shape[::-1]}\nImage shape:\n{img.shape[::-1]}\n"
            )
    data = da.stack(
        [img.data if isinstance(img.data, da.Array) else da.from_array(img.data) for img in images]
    )
    attrs = {k: v for k, v in first.attrs.items() if k != "affine"}
    return make_image(data, image_affine(first), attrs=attrs)


def image_header(obj: Any, storage_options: dict | None = None) -> tuple[float | None, int]:
    """An image's TR and the length of its first axis, ``(image.attrs.get("t_r"),
    image.shape[0])`` of :func:`load_image`: a NIfTI file's from its header alone
    (:func:`~daskmasker.io.nifti.header_summary`), anything else opened by :func:`load_image`.

    Raises
    ------
    ValueError
        As :func:`load_image` does for a missing, unreadable, empty or 5D file.
    """
    if isinstance(obj, str | os.PathLike):
        path = _expand(os.fspath(obj))
        if isinstance(path, str) and not _is_zarr(path) and pair_files(path) is None:
            try:
                return header_summary(path, storage_options)
            except FileNotFoundError as exc:
                raise ValueError(f"File not found: '{path}'") from exc
    image = load_image(obj, storage_options=storage_options)
    return image.attrs.get("t_r"), int(image.shape[0])


def load_image(
    obj: Any,
    *,
    ensure_ndim: int | None = None,
    atleast_4d: bool = False,
    storage_options: dict | None = None,
    chunks: Any = None,
    maps: bool = False,
) -> xr.DataArray:
    """A lazy daskmasker image from any accepted input (reads headers only).

    Parameters
    ----------
    obj : image, path, URL, Zarr store, nibabel image, or list of 3D images
    ensure_ndim : {3, 4}, optional
        Raise nilearn's ``DimensionError`` otherwise.
    atleast_4d : bool, default=False
        Give 3D images a time axis of length 1.
    storage_options : dict, optional
        fsspec options for URLs.
    chunks : optional
        Volumes per chunk.
    maps : bool, default=False
        The image holds maps: its 4th axis is ``component``, not ``time``.

    Returns
    -------
    xarray.DataArray
    """
    if obj is None or isinstance(obj, np.ndarray | int | float):
        raise _not_niimg(obj)
    if isinstance(obj, list | tuple):
        if len(obj) == 0:
            raise ValueError("The image is empty.")
        img = _stack([_load_one(o, storage_options, chunks) for o in obj])
    else:
        img = _load_one(obj, storage_options, chunks)
    if any(s == 0 for s in img.shape):
        raise ValueError("The image is empty.")
    if maps:
        img = as_maps(img)
    if atleast_4d and img.ndim == 3:
        img = img.expand_dims(COMPONENT_DIM if maps else TIME_DIM)
    if ensure_ndim is not None and img.ndim != ensure_ndim:
        raise DimensionError(img.ndim, ensure_ndim)
    return img


def source_name(obj: Any) -> str:
    """Where an input comes from, for error messages: its path or URL, else what it is."""
    if isinstance(obj, str | os.PathLike):
        return str(obj)
    if isinstance(obj, xr.DataArray) and obj.attrs.get("source"):
        return str(obj.attrs["source"])
    if isinstance(obj, list | tuple):
        return describe(obj)
    return f"a {type(obj).__name__} in memory"


def describe(obj: Any) -> str:
    """A short description of an input for verbose logs."""
    if isinstance(obj, str | os.PathLike):
        return str(obj)
    if isinstance(obj, list | tuple):
        return f"[{', '.join(describe(o) for o in obj[:3])}{', ...' if len(obj) > 3 else ''}]"
    if isinstance(obj, nib.spatialimages.SpatialImage):
        return (
            f"<{type(obj).__name__}> data shape {tuple(obj.shape)} "
            f"affine: {np.round(obj.affine, 3).tolist()}"
        )
    if isinstance(obj, xr.DataArray):
        return f"<DataArray {dict(obj.sizes)} {obj.attrs.get('source', '')}>".replace(" >", ">")
    return repr(obj)
