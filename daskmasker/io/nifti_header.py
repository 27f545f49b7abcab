"""NIfTI headers: read from the first bytes of a file, and what they say about its voxel bytes.

A single file (``.nii``, ``.nii.gz``) holds its header; a two-file image (``x.hdr`` + ``x.img``,
NIfTI-1 or Analyze 7.5, optionally gzipped: :func:`pair_files`) keeps it in the ``.hdr``
(:func:`pair_header`) and only voxels in the ``.img``.  A header is read alone (a few KB of a
``.nii.gz`` inflated at most) and travels in the graph as base64; :func:`proxy_spec` turns it
into nibabel's ``ArrayProxy`` spec (shape, on-disk dtype, offset, scaling), parsed once per
header (:func:`blob_spec`).
"""

from __future__ import annotations

import functools
import io
import re
import zlib

import nibabel as nib
import numpy as np

from daskmasker.io.fs import open_raw
from daskmasker.io.image import header_from_attrs

ProxySpec = tuple[tuple[int, ...], np.dtype, int, float, float]
"""nibabel's ``ArrayProxy`` spec: shape (x, y, z[, t]), on-disk dtype, data offset, slope, inter."""


def read_header(url: str, storage_options: dict | None = None) -> nib.Nifti1Header:
    """The NIfTI-1 or NIfTI-2 header of a file (reads only the first bytes)."""
    head = _read_head(url, storage_options, 540)
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        size = klass.sizeof_hdr
        if len(head) < size:
            continue
        for endian in ("<", ">"):
            if int(np.frombuffer(head[:4], dtype=f"{endian}i4")[0]) == size:
                try:
                    return klass.from_fileobj(io.BytesIO(head[:size]), check=True)
                except Exception as exc:
                    raise ValueError(f"'{url}' has an invalid NIfTI header: {exc}") from exc
    raise ValueError(f"'{url}' is not a NIfTI-1 or NIfTI-2 file")


_PAIR = re.compile(r"\.(hdr|img)(\.gz)?$")


def pair_files(url: str) -> tuple[str, str] | None:
    """The ``(header, image)`` files of a two-file NIfTI-1 or Analyze 7.5 image named by either
    (``x.hdr``/``x.img``, optionally gzipped), or None for a single file.

    >>> pair_files("sub-01.img")
    ('sub-01.hdr', 'sub-01.img')
    >>> pair_files("sub-01.nii.gz") is None
    True
    """
    found = _PAIR.search(url)
    if found is None:
        return None
    stem, gz = url[: found.start()], found.group(2) or ""
    return f"{stem}.hdr{gz}", f"{stem}.img{gz}"


def pair_header(hdr_url: str, img_url: str, storage_options: dict | None) -> nib.Nifti1Header:
    """A pair's header as NIfTI-1 pair header (magic ``ni1``, data at its offset in the image
    file): NIfTI-1 as is, Analyze 7.5 (SPM2's scaling) converted as nibabel converts it."""
    from nibabel.nifti1 import Nifti1PairHeader
    from nibabel.spm2analyze import Spm2AnalyzeHeader

    head = _read_head(hdr_url, storage_options, 348)
    if len(head) < 348:
        raise ValueError(f"'{hdr_url}' is not an image header: {len(head)} bytes, expected 348")
    try:
        if head[344:347] == b"ni1":
            header = Nifti1PairHeader.from_fileobj(io.BytesIO(head), check=True)
        else:
            analyze = Spm2AnalyzeHeader.from_fileobj(io.BytesIO(head), check=True)
            header = Nifti1PairHeader.from_header(analyze)
            header.set_data_offset(analyze.get_data_offset())
    except Exception as exc:
        raise ValueError(
            f"'{hdr_url}' is not a valid NIfTI-1 pair or Analyze 7.5 header: {exc}"
        ) from exc
    try:  # the data file must be there too: say so now, not when a chunk is read
        open_raw(img_url, storage_options).close()
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"'{img_url}', the image file of the header '{hdr_url}', is missing"
        ) from exc
    return header


def _read_head(url: str, storage_options: dict | None, size: int) -> bytes:
    """The first ``size`` bytes of the (decompressed) file, reading a few KB at most."""
    with open_raw(url, storage_options) as raw:
        if not url.endswith(".gz"):
            return raw.read(size)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        head = b""
        try:
            while len(head) < size:
                block = raw.read(4096)
                if not block:
                    break
                head += inflater.decompress(block, size - len(head))
        except zlib.error as exc:
            raise ValueError(f"'{url}' is not a readable gzip file: {exc}") from exc
        return head


def data_offset(header: nib.Nifti1Header) -> int:
    """Where the voxel bytes start: the header's offset, never inside the header itself (a
    pair's image file, magic ``ni1``, holds only voxels: its offset as is)."""
    offset = int(header.get_data_offset())
    if header["magic"] == b"ni1":
        return offset
    minimum = header.sizeof_hdr + 4
    return max(offset, minimum)


def proxy_spec(header: nib.Nifti1Header) -> ProxySpec:
    """nibabel's ``ArrayProxy`` spec of a header (unset scaling read as 1 and 0)."""
    slope, inter = header.get_slope_inter()
    return (
        header.get_data_shape(),
        header.get_data_dtype(),
        data_offset(header),
        1.0 if slope is None else slope,
        0.0 if inter is None else inter,
    )


@functools.lru_cache(maxsize=64)
def blob_spec(header_blob: str) -> ProxySpec:
    """The proxy spec of a header stored as base64: parsed once per header, not once per chunk
    (nibabel's header checks cost a millisecond, which the many chunks of an atlas add up)."""
    header = header_from_attrs({"nifti_header": header_blob})
    if header is None:
        raise ValueError("a NIfTI chunk reader was given an empty header")
    return proxy_spec(header)


def scaled_dtype(dtype: np.dtype, slope: float, inter: float) -> np.dtype:
    """The dtype of values stored as ``dtype`` once nibabel scales them by ``slope``, ``inter``."""
    from nibabel.volumeutils import apply_read_scaling

    if slope == 1.0 and inter == 0.0:
        return np.dtype(dtype)
    return apply_read_scaling(np.zeros(1, dtype=dtype), slope, inter).dtype
