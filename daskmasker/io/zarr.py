"""Images in Zarr v3 stores: streaming conversion, lazy opening.

The layout is NIfTI-Zarr 1.0 (rc) on OME-Zarr 0.5, readable by plain xarray (see
:mod:`daskmasker.io.niftizarr`): the image array ``image`` (time, z, y, x) in C order, chunks of
whole volumes, Blosc LZ4 by default; NIfTI-Zarr's ``nifti`` header array; mm and s coordinates.

Chunks of whole volumes match NIfTI's on-disk order and the masker's access pattern (see the
README for the measurements behind the default).  Values are stored as the image presents them
(nibabel's scaled values); the original header keeps the on-disk dtype and scaling, so writing back
to NIfTI reproduces the original bytes.

A store is written under its final name but marked ``complete`` only after the last chunk: an
interrupted conversion is never taken for a finished one (``open_zarr`` refuses it), and existing
paths are replaced only with ``overwrite=True`` and only when they are daskmasker stores.
Stores written by other NIfTI-Zarr writers (``nifti-zarr``'s ``nii2zarr``: raw values with the
header's scaling, chunks of 64³ voxels) open too, scaled as nibabel scales them.
"""

from __future__ import annotations

import base64
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import fsspec
import nibabel as nib
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from numpy.typing import ArrayLike
from zarr.codecs import BloscCodec
from zarr.core.chunk_grids import RegularChunkGrid

from daskmasker.compute.graph import paced_reads, task_array
from daskmasker.compute.plan import plan_extraction
from daskmasker.io import niftizarr
from daskmasker.io.fs import Location, check_bucket
from daskmasker.io.image import (
    COMPONENT_DIM,
    READER_ENCODING,
    STORE_NAMES,
    header_attrs,
    header_from_attrs,
    make_image,
    netcdf_attrs,
)
from daskmasker.io.nifti_chunks import GzipChunks
from daskmasker.io.nifti_header import scaled_dtype
from daskmasker.io.retry import retry

if TYPE_CHECKING:
    from numcodecs.abc import Codec
    from zarr.core.metadata import ArrayV3Metadata

ATTR = "daskmasker"


def _check_target(mapper: Location, store: str, overwrite: bool) -> None:
    fs, root = mapper.fs, mapper.root
    if not fs.exists(root):
        return
    if fs.isfile(root):
        raise FileExistsError(f"'{store}' exists and is a file, not a daskmasker Zarr store")
    try:
        ours = ATTR in zarr.open_group(mapper.store, mode="r").attrs
    except Exception:
        ours = False
    if not ours:
        if fs.ls(root):
            raise FileExistsError(
                f"'{store}' exists and is not a daskmasker image store; it is never overwritten"
            )
        return
    if not overwrite:
        raise FileExistsError(f"'{store}' exists; pass overwrite=True to replace it")
    fs.rm(root, recursive=True)


def write_image(
    img: xr.DataArray,
    store: str,
    chunks: int | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    storage_options: dict | None = None,
    compressor: Any = "default",
) -> str:
    """Write a lazy image into a new Zarr v3 store, streaming (see ``daskmasker.to_zarr``).

    Peak memory is a few chunks: volumes are read, compressed and written one chunk at a time.

    Parameters
    ----------
    img : xarray.DataArray
        A daskmasker image.
    store : str
        Local path or fsspec URL of the new store.
    chunks : int, optional
        Volumes per chunk (default: ``daskmasker.chunk-bytes`` of voxels, ~32 MiB).
    overwrite : bool, default=False
        Replace an existing daskmasker store.
    progress : bool, default=False
        Show a progress bar.
    storage_options : dict, optional
        fsspec options for the store.
    compressor : codec, None or "default"
        Default: Blosc LZ4 with byte shuffle (fast to write and read; see
        ``benchmarks/results/2026-12-01-extraction-batch-convert.md``).

    Returns
    -------
    str
        The store's path or URL.
    """
    data = img.data if isinstance(img.data, da.Array) else da.from_array(np.asarray(img.data))
    if data.ndim == 4:
        step = volumes_per_chunk(data.shape, data.dtype, chunks)
        # a regular grid: every Dask chunk writes whole Zarr chunks (no two tasks share one)
        target = da.core.normalize_chunks((step, -1, -1, -1), data.shape)
        if data.chunks != target:  # (rechunking to the same chunks still renames the array)
            data = data.rechunk(target)
    else:
        data = data.rechunk(-1)
    header = niftizarr.store_header(img)  # fails on dtypes NIfTI lacks, before any write
    mapper = Location(store, storage_options)
    check_bucket(mapper)
    _check_target(mapper, str(store), overwrite)
    codec = (
        BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
        if compressor == "default"
        else (compressor)
    )
    group = zarr.open_group(mapper.store, mode="w", zarr_format=3)
    group.attrs.update({"ome": niftizarr.ome_attrs(img), ATTR: {"complete": False}})
    array = group.create_array(
        niftizarr.IMAGE,
        shape=data.shape,
        chunks=tuple(c[0] for c in data.chunks),
        dtype=data.dtype,
        compressors=None if codec is None else [codec],
        fill_value=0,
        dimension_names=niftizarr.store_dims(img),
        attributes=niftizarr.image_attrs(img),
        # every chunk written: zarr's test for an all-zero chunk (np.array_equal with
        # equal_nan, several passes and a masked copy) cost more than compressing it, and the
        # chunks of whole volumes of an image are never all zero
        config={"write_empty_chunks": True},
    )
    _write_small(
        group,
        niftizarr.HEADER,
        header,
        [niftizarr.HEADER_DIM],
        niftizarr.cf_attrs(niftizarr.HEADER),
    )
    # every stored dimension has a coordinate, the header's bytes too
    byte = niftizarr.HEADER_DIM
    _write_small(group, byte, np.arange(len(header)), [byte], niftizarr.cf_attrs(byte))
    for dim in img.dims:
        name = STORE_NAMES.get(str(dim), str(dim))
        if dim in img.coords:  # its own labels (an index where there is no TR) over the defaults
            coord = img.coords[dim]
            attrs = {**niftizarr.cf_attrs(name), **netcdf_attrs(coord.attrs)}
            _write_small(group, name, coord.values, [name], attrs)
        elif dim == COMPONENT_DIM:  # an image made by hand, without the map index
            values = np.arange(img.sizes[dim])
            _write_small(group, name, values, [name], niftizarr.cf_attrs(name))
    reader = img.encoding.get(READER_ENCODING)
    if data.ndim == 4 and isinstance(reader, GzipChunks) and reader.is_array(data):
        stored = _paced_store(reader, data, array)
    else:
        # dask's annotation asks an ndarray-like target; it only writes by __setitem__
        stored = da.store(data, array, lock=False, compute=False)  # type: ignore[arg-type]
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            dask.compute(stored)
    else:
        dask.compute(stored)
    group.attrs[ATTR] = {"complete": True}
    with warnings.catch_warnings():  # consolidated metadata: xarray opens the store in one read
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        zarr.consolidate_metadata(mapper.store, zarr_format=3)
    return str(store)


def volumes_per_chunk(shape: tuple[int, ...], dtype: Any, chunks: int | None = None) -> int:
    """The volumes of a store's chunks: ``chunks``, or ``daskmasker.chunk-bytes`` of volumes."""
    if chunks is not None:
        return int(chunks)
    return plan_extraction(
        shape[0], int(np.prod(shape[1:])) * np.dtype(dtype).itemsize
    ).time_chunks[0]


def _paced_store(reader: GzipChunks, data: da.Array, array: zarr.Array) -> da.Array:
    """The store of a ``.nii.gz``'s chunks, read in order and each written by a task of its own,
    the reads paced by the writes (:func:`~daskmasker.compute.graph.paced_reads`): with a plain
    chain of reads one thread converting a run held all of it."""
    starts = np.cumsum((0, *data.chunks[0][:-1])).tolist()
    name = f"paced-store-{tokenize(data.name, str(array.store_path))}"
    layer = paced_reads(
        name, reader, len(starts), _write_chunk, array, per_chunk=[(s,) for s in starts]
    )
    return task_array(name, layer, ((1,) * len(starts),), bool)


def _write_chunk(chunk: np.ndarray, array: zarr.Array, start: int) -> np.ndarray:
    array[start : start + chunk.shape[0]] = chunk
    return np.ones(1, dtype=bool)


def _write_small(
    group: zarr.Group,
    name: str,
    values: bytes | ArrayLike,
    dims: list[str],
    attrs: dict | None = None,
) -> None:
    """A small one-chunk, uncompressed array (header bytes, coordinates)."""
    values = np.frombuffer(values, np.uint8) if isinstance(values, bytes) else np.asarray(values)
    array = group.create_array(
        name,
        shape=values.shape,
        chunks=values.shape,
        dtype=values.dtype,
        compressors=None,
        fill_value=0,
        dimension_names=dims,
        attributes=attrs or {},
    )
    array[...] = values


class ChunkReader:
    """Whole chunks of a Zarr v3 array read and decoded in one step each.

    zarr-python's general read path (async pipeline, selection machinery, a copy into the
    output) costs more than fetching and decoding a chunk take; for the plain layouts
    :func:`to_zarr` writes (``bytes`` then optionally ``blosc`` or ``zstd``, regular chunks, no
    sharding), this reader fetches the chunk's object with fsspec
    and decodes it with numcodecs straight into the chunk buffer.  :meth:`of` returns None for
    any other layout, which is then read by ``dask.array.from_zarr``.  Dask slices this object
    along chunk boundaries only (``dask.array.from_array`` with the array's chunks).
    """

    sequential = False  # chunks are independent (see daskmasker.compute.projection.project)

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        root: str,
        metadata: ArrayV3Metadata,
        codec: Codec | None,
        url: str,
    ) -> None:
        self.fs, self.root, self.codec = fs, root, codec
        self.metadata = metadata
        self.shape = tuple(metadata.shape)
        if not isinstance(metadata.chunk_grid, RegularChunkGrid):
            raise ValueError(f"{url}: a regular chunk grid is needed, got {metadata.chunk_grid}")
        self.chunk_shape = tuple(metadata.chunk_grid.chunk_shape)
        self.dtype = np.dtype(metadata.data_type.to_native_dtype())
        self.ndim = len(self.shape)
        fill = metadata.fill_value
        self.fill = 0 if fill is None else np.asarray(fill, dtype=self.dtype)
        self._token = f"{url}:{metadata.to_dict()}"

    @classmethod
    def of(cls, array: Any, location: Location) -> ChunkReader | None:
        """A reader for ``array`` if its layout is one this class decodes, else None."""
        import numcodecs
        from zarr.codecs import BytesCodec, ZstdCodec

        meta = array.metadata
        if getattr(meta, "zarr_format", None) != 3 or not isinstance(
            meta.chunk_grid, RegularChunkGrid
        ):
            return None
        codecs = list(meta.codecs)
        if not codecs or not isinstance(codecs[0], BytesCodec):
            return None
        dtype = np.dtype(meta.data_type.to_native_dtype())
        if dtype.itemsize > 1 and (codecs[0].endian is None or codecs[0].endian.value != "little"):
            return None
        if len(codecs) == 1:
            codec = None
        elif len(codecs) == 2 and isinstance(codecs[1], BloscCodec):
            codec = numcodecs.Blosc(
                cname=codecs[1].cname.value,
                clevel=codecs[1].clevel,
                shuffle={"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[codecs[1].shuffle.value],
            )
        elif len(codecs) == 2 and isinstance(codecs[1], ZstdCodec):
            codec = numcodecs.Zstd(level=codecs[1].level)
        else:
            return None
        if sys.byteorder != "little":  # let zarr byteswap
            return None
        root = location.root.rstrip("/") + "/" + array.path.split("/")[-1]
        return cls(location.fs, root, meta, codec, f"{location.url}/{array.path}")

    def __dask_tokenize__(self) -> str:
        return self._token

    def __getitem__(self, index: tuple[slice, ...]) -> np.ndarray:
        starts = [s.start or 0 for s in index]
        where = tuple(a // c for a, c in zip(starts, self.chunk_shape, strict=True))
        full = self._decode(where, np.empty(self.chunk_shape, dtype=self.dtype))
        inner = tuple(
            slice(s.start - w * c, s.stop - w * c)
            for s, w, c in zip(index, where, self.chunk_shape, strict=True)
        )
        return full[inner]

    def chunks_of(self, data: Any) -> bool:
        """Whether the Dask array ``data`` is this array chunk for chunk (same shape and grid)."""
        from dask.array.core import normalize_chunks

        return tuple(data.shape) == self.shape and tuple(data.chunks) == normalize_chunks(
            self.chunk_shape, self.shape
        )

    def read_chunk(self, where: tuple[int, ...]) -> np.ndarray:
        """The chunk at grid position ``where`` (trimmed at the array's edges), decoded into this
        thread's scratch buffer: valid until the thread's next ``read_chunk``.

        A consumer that reduces the chunk at once (the maps regression gathers its support
        voxels) spares a fresh chunk-sized allocation per read; on this kind of machine the
        first touch of fresh memory costs as much as decoding into it.
        """
        full = self._decode(where, _scratch(self.chunk_shape, self.dtype))
        inner = tuple(
            slice(0, min(c, n - w * c))
            for w, c, n in zip(where, self.chunk_shape, self.shape, strict=True)
        )
        return full[inner]

    def _decode(self, where: tuple[int, ...], full: np.ndarray) -> np.ndarray:
        key = f"{self.root}/{self.metadata.encode_chunk_key(where)}"
        try:
            blob = retry(lambda: self.fs.cat_file(key), key)
        except FileNotFoundError:
            full[...] = self.fill
        else:
            if self.codec is None:
                full.reshape(-1).view(np.uint8)[:] = np.frombuffer(blob, dtype=np.uint8)
            else:
                self.codec.decode(blob, out=full)
        return full


_SCRATCH = threading.local()


def _scratch(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """This thread's reusable buffer of ``shape`` and ``dtype`` (the last one asked for)."""
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
        buffer = _SCRATCH.buffer = np.empty(shape, dtype=dtype)
    return buffer


def open_zarr(
    store: str, storage_options: dict | None = None, chunks: int | None = None
) -> xr.DataArray:
    """Open an image store written by :func:`to_zarr`, or any NIfTI-Zarr store, lazily.

    Only metadata is read.  A store written by another NIfTI-Zarr writer is read at level 0,
    scaled by its header's ``scl_slope``/``scl_inter`` as nibabel scales NIfTI files; its 4th
    axis is ``component`` when stored as channels (``c``), ``time`` otherwise.

    Parameters
    ----------
    store : str
        Local path or fsspec URL.
    storage_options : dict, optional
        fsspec options.
    chunks : int, optional
        Volumes per chunk; default: the store's chunks when they hold whole volumes, else about
        32 MiB of volumes.

    Returns
    -------
    xarray.DataArray

    Raises
    ------
    ValueError
        If the store is not an image store, or its conversion never completed.
    """
    mapper = Location(store, storage_options)
    try:
        group = zarr.open_group(mapper.store, mode="r")
    except Exception as exc:
        if not mapper.fs.exists(mapper.root):
            raise FileNotFoundError(f"File not found: '{store}'") from exc
        raise ValueError(f"'{store}' is not a Zarr store: {exc}") from exc
    layout = niftizarr.read_layout(group, str(store))
    if layout.meta is not None and not layout.meta.get("complete", False):
        raise ValueError(f"'{store}' is incomplete: its conversion was interrupted; convert again")
    array = group[layout.path]
    if not isinstance(array, zarr.Array):
        raise ValueError(f"'{store}': its image '{layout.path}' is a group, not an array")
    data, reader = _lazy(array, mapper, chunks)
    data, dims = _squeeze(data, layout.dims, str(store))
    stored: dict[str, Any] = dict(array.attrs)
    if "affine" in stored:  # written by daskmasker
        affine = np.reshape(stored["affine"], (4, 4))
        extra = {k: stored[k] for k in (*niftizarr.HEADER_KEYS, "nifti_header") if k in stored}
    elif layout.meta is not None and "affine" in layout.meta:  # daskmasker, NIfTI-Zarr 0.1
        affine = np.asarray(layout.meta["affine"])
        extra = {k: layout.meta[k] for k in niftizarr.HEADER_KEYS if k in layout.meta}
        if layout.header is not None:
            extra["nifti_header"] = _base64(layout.header)
    elif layout.header is None:  # a daskmasker attribute, but no affine anywhere
        raise ValueError(
            f"'{store}' has no affine: no 'affine' attribute on its image array or group, and no "
            "NIfTI header"
        )
    else:  # another writer: the header describes the stored (unscaled) values
        affine = layout.header.get_best_affine()
        extra = {"nifti_header": _base64(layout.header)}
        slope, inter = layout.header.get_slope_inter()
        if slope is not None and (slope, inter or 0.0) != (1.0, 0.0):
            data = _scale(data, slope, inter or 0.0)
            reader = None
    stored_header = header_from_attrs(extra)
    if stored_header is not None:
        extra = {**header_attrs(stored_header), **extra}
    extra["source"] = str(store)
    image = make_image(data, affine, attrs=extra, maps=dims[0] == COMPONENT_DIM)
    if reader is not None:
        image.encoding[READER_ENCODING] = reader  # lets the regression read and gather at once
    return image


def _lazy(
    array: zarr.Array, mapper: Location, chunks: int | None
) -> tuple[da.Array, ChunkReader | None]:
    """The array as Dask chunks of whole volumes; with its reader when it decodes them."""
    shape, stored = tuple(array.shape), tuple(array.chunks)
    if chunks is None and stored[-3:] == shape[-3:]:
        reader = ChunkReader.of(array, mapper)
        if reader is not None:
            # meta given: dask would otherwise read a chunk to learn the array's type
            empty = np.empty((0,) * reader.ndim, dtype=reader.dtype)
            data = da.from_array(reader, chunks=stored, asarray=False, fancy=False, meta=empty)
            return data, reader
        return da.from_zarr(array, chunks=stored), None
    if len(shape) == 3:
        return da.from_zarr(array, chunks=-1), None
    volume = int(np.prod(shape[1:])) * array.dtype.itemsize
    sizes = plan_extraction(shape[0], volume).time_chunks if chunks is None else int(chunks)
    return da.from_zarr(array, chunks=(sizes, *shape[1:])), None


def _squeeze(data: da.Array, dims: tuple[str, ...], store: str) -> tuple[da.Array, tuple[str, ...]]:
    """A 5D (t, c, z, y, x) array with a single channel or time point made 4D."""
    for name in (COMPONENT_DIM, "time"):
        if len(dims) > 4 and name in dims and data.shape[dims.index(name)] == 1:
            data = data[tuple(0 if d == name else slice(None) for d in dims)]
            dims = tuple(d for d in dims if d != name)
    if len(dims) not in (3, 4):
        raise ValueError(
            f"'{store}' holds a {len(dims)}D image of shape {data.shape} (dims {dims}): "
            "expected 3D or 4D"
        )
    return data, dims


def _scale(data: da.Array, slope: float, inter: float) -> da.Array:
    """Stored values scaled as nibabel scales them (dtype and rounding alike)."""
    from nibabel.volumeutils import apply_read_scaling

    dtype = scaled_dtype(data.dtype, slope, inter)
    return da.map_blocks(apply_read_scaling, data, slope, inter, dtype=dtype)


def _base64(header: nib.Nifti1Header) -> str:
    return base64.b64encode(header.binaryblock).decode("ascii")
