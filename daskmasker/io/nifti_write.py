"""Writing (lazy) images to ``.nii`` or ``.nii.gz``, one chunk of volumes at a time.

NaN and Inf are written bit for bit; a stored header is reused, so a round trip is exact.
"""

from __future__ import annotations

from typing import Any, cast

import dask.array as da
import dask.threaded
import fsspec
import nibabel as nib
import numpy as np
import xarray as xr
from isal import igzip

from daskmasker.io.fs import normalize
from daskmasker.io.image import header_from_attrs
from daskmasker.io.nifti_header import data_offset


class _OrderedWriter:
    """A ``dask.array.store`` target writing slabs of volumes to a stream in volume order.

    Slabs that arrive early wait in memory until the ones before them are written (with a
    sequential source such as a ``.nii.gz`` they arrive in order).
    """

    def __init__(self, stream: Any, n_volumes: int, scaling: tuple[float, float], out_dtype: Any):
        self.stream, self.n_volumes, self.scaling, self.out_dtype = (
            stream,
            n_volumes,
            scaling,
            np.dtype(out_dtype),
        )
        self.next = 0
        self.pending: dict[int, tuple[int, np.ndarray]] = {}

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        first = key[0] if isinstance(key, tuple) else key
        start, stop = first.start or 0, first.stop
        self.pending[start] = (stop, np.asarray(value))
        while self.next in self.pending:
            stop, chunk = self.pending.pop(self.next)
            self.stream.write(self._encode(chunk).tobytes())
            self.next = stop

    def _encode(self, chunk: np.ndarray) -> np.ndarray:
        s, i = self.scaling
        if self.out_dtype.kind in "iu" and (s, i) != (1.0, 0.0):
            chunk = np.round((chunk.astype(np.float64) - i) / s)
        elif (s, i) != (1.0, 0.0):
            chunk = (chunk.astype(np.float64) - i) / s
        return np.ascontiguousarray(chunk.astype(self.out_dtype, copy=False))

    def check_complete(self) -> None:
        if self.next != self.n_volumes or self.pending:
            raise OSError(f"wrote {self.next} of {self.n_volumes} volumes")


def to_nifti(
    image: xr.DataArray,
    path: Any,
    *,
    overwrite: bool = False,
    storage_options: dict | None = None,
) -> str:
    """Write a (lazy) image to ``.nii`` or ``.nii.gz``, one chunk of volumes at a time.

    The header stored in ``attrs`` is reused when present (exact round trips); otherwise one is
    built from the affine and dtype.  Written to a temporary name and renamed at the end.
    """
    url = normalize(path)
    fs, _, (target,) = fsspec.get_fs_token_paths(url, storage_options=storage_options or {})
    if fs.exists(target) and not overwrite:
        raise FileExistsError(f"'{url}' exists; pass overwrite=True to replace it")
    header = header_from_attrs(image.attrs)
    data = image.data
    raw_dtype = np.dtype(data.dtype)
    if header is None:
        header = nib.Nifti1Header()
        header.set_data_dtype(raw_dtype)
        header.set_qform(np.asarray(image.attrs["affine"]), code=1)
        header.set_sform(np.asarray(image.attrs["affine"]), code=1)
    header = header.copy()
    shape_xyz = tuple(int(s) for s in data.shape[::-1])
    header.set_data_shape(shape_xyz)
    slope, inter = header.get_slope_inter()
    out_dtype = header.get_data_dtype()
    offset = data_offset(header)
    header.set_data_offset(offset)
    tmp = f"{target}.partial"
    try:
        _write_nifti(fs, tmp, url, header, offset, data, slope, inter, out_dtype)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise
    fs.mv(tmp, target)
    return url


def _write_nifti(
    fs: Any,
    tmp: str,
    url: str,
    header: nib.Nifti1Header,
    offset: int,
    data: Any,
    slope: float | None,
    inter: float | None,
    out_dtype: np.dtype,
) -> None:
    with fs.open(tmp, "wb") as raw:
        stream = (
            igzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) if url.endswith(".gz") else raw
        )
        try:
            block = header.binaryblock
            stream.write(block + b"\x00" * (offset - len(block)))
            volumes = data if data.ndim == 4 else data[None]
            s = 1.0 if slope is None else slope
            i = 0.0 if inter is None else inter
            writer = _OrderedWriter(stream, volumes.shape[0], (s, i), out_dtype)
            if isinstance(volumes, da.Array):
                # one pass over the graph (a gzip source is read once); chunks arrive roughly
                # in order and are written in order
                da.store(volumes, cast(Any, writer), lock=True, scheduler=dask.threaded.get)
            else:
                writer[0 : volumes.shape[0]] = np.asarray(volumes)
            writer.check_complete()
        finally:
            if stream is not raw:
                stream.close()
