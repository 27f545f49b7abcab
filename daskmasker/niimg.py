"""Anything the masker accepts → a lazy image (see :mod:`daskmasker.image`).

Accepted: daskmasker images; nibabel images (wrapped lazily, never copied or modified); paths (``~``
expanded, glob patterns expanded to a sorted list, as nilearn does) and fsspec URLs of NIfTI files
or
Zarr stores; lists or tuples of 3D images (stacked along time); single-variable xarray Datasets.
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

from daskmasker.chunks import time_chunks
from daskmasker.image import TIME_DIM, image_affine, is_image, make_image

_DOC_URL = "https://nilearn.github.io/stable/manipulating_images/input_output.html"


class DimensionError(TypeError):
    """nilearn's error for images of the wrong dimensionality (a TypeError, as there)."""

    def __init__(self, file_dimension: int, required_dimension: int, what: str = "image"):
        self.file_dimension = file_dimension
        self.required_dimension = required_dimension
        super().__init__(
            "Input data has incompatible dimensionality: Expected dimension is "
            f"{required_dimension}D and you provided a {what if what != 'image' else ''}"
            f"{file_dimension}D image. See {_DOC_URL}"
            if what == "image"
            else "Input data has incompatible dimensionality: Expected dimension is "
            f"{required_dimension}D and you provided {what} ({file_dimension}D). See {_DOC_URL}"
        )


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


def _from_nibabel(img: nib.spatialimages.SpatialImage, chunks=None) -> xr.DataArray:
    proxy = img.dataobj
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (3, 4):
        raise DimensionError(len(shape), 4)
    if 0 in shape:
        raise ValueError("The image is empty.")
    dtype = _nibabel_dtype(img)
    if len(shape) == 3:
        data = da.from_array(_Reversed(proxy, shape, dtype), chunks=-1, asarray=False)
    else:
        volume = int(np.prod(shape[:3])) * dtype.itemsize
        sizes = time_chunks(shape[3], volume) if chunks is None else chunks
        data = da.from_array(
            _Reversed(proxy, shape, dtype), chunks=(sizes, -1, -1, -1), asarray=False
        )
    header = img.header if isinstance(img.header, nib.Nifti1Header) else None
    attrs = {} if header is not None else {"t_r": None}
    return make_image(data, img.affine, header=header, attrs=attrs)


def _nibabel_dtype(img) -> np.dtype:
    proxy = img.dataobj
    if isinstance(proxy, np.ndarray):
        return proxy.dtype
    from nibabel.volumeutils import apply_read_scaling

    slope = getattr(proxy, "slope", 1.0)
    inter = getattr(proxy, "inter", 0.0)
    raw = np.dtype(proxy.dtype)
    if slope == 1.0 and inter == 0.0:
        return raw
    return apply_read_scaling(np.zeros(1, dtype=raw), slope, inter).dtype


class _Reversed:
    """A nibabel array proxy seen in daskmasker order (reversed axes), read lazily by slices."""

    def __init__(self, proxy, shape, dtype):
        self.proxy = proxy
        self.shape = tuple(reversed(shape))
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        nib_key = tuple(reversed(key))
        if len(self.proxy.shape) > self.ndim:
            nib_key = nib_key + (0,) * (len(self.proxy.shape) - self.ndim)
        arr = np.asanyarray(self.proxy[nib_key])
        return np.array(arr.T, dtype=self.dtype, copy=True)


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


def _load_one(obj: Any, storage_options=None, chunks=None) -> xr.DataArray:
    if is_image(obj):
        return obj
    if isinstance(obj, xr.Dataset):
        if len(obj.data_vars) != 1:
            raise ValueError(
                f"an xarray Dataset must hold one image variable, got {list(obj.data_vars)}"
            )
        return _load_one(next(iter(obj.data_vars.values())), storage_options, chunks)
    if isinstance(obj, nib.spatialimages.SpatialImage):
        return _from_nibabel(obj, chunks)
    if isinstance(obj, str | os.PathLike):
        path = _expand(os.fspath(obj))
        if isinstance(path, list):
            return _stack([_load_one(p, storage_options, chunks) for p in path])
        if _is_zarr(path):
            from daskmasker.store import open_zarr

            return open_zarr(path, storage_options=storage_options)
        from daskmasker.nifti import open_nifti

        try:
            return open_nifti(path, chunks=chunks, storage_options=storage_options)
        except FileNotFoundError as exc:
            raise ValueError(f"File not found: '{path}'") from exc
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


def load_image(
    obj: Any,
    *,
    ensure_ndim: int | None = None,
    atleast_4d: bool = False,
    storage_options: dict | None = None,
    chunks=None,
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
    if atleast_4d and img.ndim == 3:
        img = img.expand_dims(TIME_DIM)
    if ensure_ndim is not None and img.ndim != ensure_ndim:
        raise DimensionError(img.ndim, ensure_ndim)
    return img


def source_dtype(img: xr.DataArray) -> np.dtype:
    """nilearn's ``img_data_dtype``: the data's dtype (float64 when the header scales it)."""
    return np.dtype(img.dtype)


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
