"""Lazy NIfTI images (.nii, .nii.gz, .hdr/.img pairs; local paths and fsspec URLs).

:func:`open_nifti` reads the header only (:mod:`daskmasker.io.nifti_header`) and returns a
Dask-backed image (see :mod:`daskmasker.io.image`) whose chunks are slabs of whole volumes, each
read by :func:`~daskmasker.io.nifti_chunks.read_volumes`.  The chunks of a ``.nii.gz`` are read in
order, each read after the previous one, so the file's decompressor streams through it once; its
image carries a :class:`~daskmasker.io.nifti_chunks.GzipChunks` reader in its encoding.

NaN and Inf are preserved bit for bit by reading and writing
(:func:`~daskmasker.io.nifti_write.to_nifti`); the masker turns them into 0 with nilearn's
warning.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

import nibabel as nib
import numpy as np
import xarray as xr
from dask.base import tokenize

from daskmasker.compute.graph import ref, task, task_array
from daskmasker.compute.plan import plan_extraction
from daskmasker.io import nifti_chunks
from daskmasker.io.fs import normalize
from daskmasker.io.image import READER_ENCODING, header_attrs, make_image
from daskmasker.io.nifti_header import (
    pair_files,
    pair_header,
    proxy_spec,
    read_header,
    scaled_dtype,
)


def _header(path_or_url: Any, storage_options: dict | None) -> tuple[str, nib.Nifti1Header, bool]:
    """A NIfTI file's header, the URL of its data and whether it is a pair (``.hdr`` and
    ``.img``: the data come from the image file)."""
    url = normalize(path_or_url)
    pair = pair_files(url)
    if pair is None:
        return url, read_header(url, storage_options), False
    return pair[1], pair_header(*pair, storage_options), True


def _shape(spec: tuple, url: str) -> tuple[int, ...]:
    """The image's shape (x, y, z[, t]) from its header's, refused unless 3D or 4D."""
    shape = tuple(int(s) for s in spec[0])
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (3, 4):
        raise ValueError(f"'{url}' holds a {len(shape)}D image of shape {shape}: expected 3D or 4D")
    if 0 in shape:
        raise ValueError(f"The image is empty: '{url}' has shape {shape}.")
    return shape


def header_summary(
    path_or_url: Any, storage_options: dict | None = None
) -> tuple[float | None, int]:
    """A NIfTI file's TR and the length of its first axis as :func:`open_nifti` opens it
    (volumes, or z for a 3D image): ``(image.attrs["t_r"], image.shape[0])``, from the header
    alone, without building the lazy image (a resume's checks ask it of every image).

    Raises
    ------
    ValueError
        As :func:`open_nifti` does for an image that is not 3D or 4D, or empty.
    """
    url, header, _ = _header(path_or_url, storage_options)
    shape = _shape(proxy_spec(header), url)
    return header_attrs(header)["t_r"], shape[3] if len(shape) == 4 else shape[2]


def open_nifti(
    path_or_url: Any,
    chunks: int | dict | None = None,
    storage_options: dict | None = None,
    *,
    maps: bool = False,
) -> xr.DataArray:
    """Open a NIfTI file lazily as an image: only the header is read.

    Parameters
    ----------
    path_or_url : str or path-like
        ``.nii`` or ``.nii.gz``, or a NIfTI-1 or Analyze 7.5 pair named by its ``.hdr`` or
        ``.img``; a local path (``~`` expanded) or an fsspec URL.
    chunks : int, optional
        Volumes per chunk; default about ``daskmasker.chunk-bytes`` per chunk.
    storage_options : dict, optional
        fsspec options (``anon``, ``endpoint_url``, credentials...).
    maps : bool, default=False
        The file holds maps (an atlas): the 4th axis is ``component``, not ``time``.

    Returns
    -------
    xarray.DataArray
        Dims ``(time, z, y, x)`` (``(component, z, y, x)`` for maps) or ``(z, y, x)``; the data
        equals nibabel's ``dataobj``.
    """
    url, header, pair = _header(path_or_url, storage_options)
    spec = proxy_spec(header)
    shape = _shape(spec, url)
    dtype = scaled_dtype(spec[1], spec[3], spec[4])
    blob = base64.b64encode(header.binaryblock).decode("ascii")
    zyx = shape[2::-1]
    name = f"nifti-{tokenize(url, storage_options, blob)}"
    if len(shape) == 3:
        key: tuple = (name, 0, 0, 0)
        read = task(key, nifti_chunks.read_volumes, url, storage_options, blob, 0, 1, 3)
        layer: dict[Any, Any] = {key: read}
        data = task_array(name, layer, tuple((n,) for n in zyx), dtype)
    else:
        volume_nbytes = int(np.prod(zyx)) * np.dtype(dtype).itemsize
        sizes = (
            plan_extraction(shape[3], volume_nbytes).time_chunks
            if chunks is None
            else _as_sizes(chunks, shape[3])
        )
        bounds = np.cumsum((0, *sizes))
        name = f"{name}-{tokenize(sizes)}"
        layer = {}
        where = (url, storage_options, blob)
        for i, (a, b) in enumerate(itertools.pairwise(bounds.tolist())):
            key = (name, i, 0, 0, 0)
            if url.endswith(".gz"):
                # gzip is sequential: each chunk's read waits for the previous one (a tiny
                # token), so the per-process decompressor streams through the file once
                done = (ref((f"{name}-read", i - 1)),) if i else ()
                layer[key] = task(key, nifti_chunks.read_after, *where, a, b, *done)
                token = (f"{name}-read", i)
                layer[token] = task(token, nifti_chunks.read_done, ref(key))
            else:
                layer[key] = task(key, nifti_chunks.read_volumes, *where, a, b, 4)
        data = task_array(name, layer, (tuple(sizes), *((n,) for n in zyx)), dtype)
    if pair:  # the image's header is a single file's, as nibabel writes .nii
        header = nib.Nifti1Header.from_header(header)
    image = make_image(
        data, header.get_best_affine(), header=header, attrs={"source": url}, maps=maps
    )
    if len(shape) == 4 and url.endswith(".gz"):
        chunk_reader = nifti_chunks.GzipChunks(
            url, storage_options, blob, tuple(int(b) for b in bounds), name=data.name
        )
        image.encoding[READER_ENCODING] = chunk_reader
    return image


def _as_sizes(chunks: int | dict, n: int) -> tuple[int, ...]:
    if isinstance(chunks, dict):
        chunks = chunks.get("time", next(iter(chunks.values())))
    step = int(chunks)  # type: ignore[arg-type]  # a dict's value for time
    if step < 1:
        raise ValueError(f"chunks must be a positive number of volumes, got {chunks!r}")
    return tuple(min(step, n - s) for s in range(0, n, step))
