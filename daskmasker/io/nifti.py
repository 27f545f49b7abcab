"""Lazy NIfTI images (.nii, .nii.gz; local paths and fsspec URLs) and streaming writes.

``open_nifti`` reads the header only and returns a Dask-backed image (see
:mod:`daskmasker.io.image`) whose chunks are slabs of whole volumes.  Each chunk is read through
nibabel's ``ArrayProxy``, so the values, the dtype and the ``scl_slope``/``scl_inter`` scaling are
exactly nibabel's.

* ``.nii``: a chunk is one ranged read of its bytes (local file or object store).
* ``.nii.gz``: gzip cannot seek, and decompression bounds the reading speed.  Each process keeps
  one sequential decompressor per file (zlib-ng or ISA-L, whichever inflates the file's encoding
  faster: see :func:`daskmasker.io.fs.open_stream`); a chunk that starts at or after its position
  continues from there, so chunks read in order cost one pass in total, while a chunk behind it
  restarts the stream.  Reads of a file are serialized by a lock (gzip is sequential anyway);
  other work overlaps with them.

NaN and Inf are preserved bit for bit by reading and writing; the masker turns them into 0 with
nilearn's warning.
"""

from __future__ import annotations

import functools
import io
import itertools
import re
import threading
import zlib

import dask.array as da
import fsspec
import nibabel as nib
import numpy as np
from dask._task_spec import Task, TaskRef
from dask.base import tokenize
from isal import igzip, isal_zlib
from nibabel.arrayproxy import ArrayProxy
from zlib_ng import zlib_ng

from daskmasker import config
from daskmasker.compute.chunks import time_chunks
from daskmasker.compute.graph import task_array
from daskmasker.compute.maps import ScreenedBlock, screen, screen_width
from daskmasker.io.fs import normalize, open_raw, open_stream
from daskmasker.io.image import READER_ENCODING, header_from_attrs, make_image
from daskmasker.io.retry import retry

_READERS: dict[tuple, list] = {}
_READERS_LOCK = threading.Lock()


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
                    return klass.from_fileobj(_BytesReader(head[:size]), check=True)
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


def _pair_header(hdr_url: str, img_url: str, storage_options: dict | None) -> nib.Nifti1Header:
    """A pair's header as NIfTI-1 pair header (magic ``ni1``, data at its offset in the image
    file): NIfTI-1 as is, Analyze 7.5 (SPM2's scaling) converted as nibabel converts it."""
    from nibabel.nifti1 import Nifti1PairHeader
    from nibabel.spm2analyze import Spm2AnalyzeHeader

    head = _read_head(hdr_url, storage_options, 348)
    if len(head) < 348:
        raise ValueError(f"'{hdr_url}' is not an image header: {len(head)} bytes, expected 348")
    try:
        if head[344:347] == b"ni1":
            header = Nifti1PairHeader.from_fileobj(_BytesReader(head), check=True)
        else:
            analyze = Spm2AnalyzeHeader.from_fileobj(_BytesReader(head), check=True)
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


def _read_head(url: str, storage_options, size: int) -> bytes:
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


class _BytesReader:
    def __init__(self, data: bytes):
        import io

        self._buf = io.BytesIO(data)

    def read(self, n=-1):
        return self._buf.read(n)

    def seek(self, *args):
        return self._buf.seek(*args)

    def tell(self):
        return self._buf.tell()


def _data_offset(header) -> int:
    offset = int(header.get_data_offset())
    if header["magic"] == b"ni1":  # a pair: the data file holds only data
        return offset
    minimum = header.sizeof_hdr + 4
    return max(offset, minimum)


def _proxy_spec(header):
    slope, inter = header.get_slope_inter()
    spec = (
        header.get_data_shape(),
        header.get_data_dtype(),
        _data_offset(header),
        1.0 if slope is None else slope,
        0.0 if inter is None else inter,
    )
    return spec


class _GzipCursor:
    """A sequential decompressor of one ``.nii.gz`` with a small stash for out-of-order reads.

    Chunks usually arrive in order; when a later chunk is asked first (two threads), the bytes
    skipped on the way are kept (up to ``stash_limit`` bytes) for the chunk that will follow.
    A request behind everything decoded restarts the stream.
    """

    def __init__(self, url: str, storage_options, stash_limit: int | None = None):
        self.url, self.storage_options = url, storage_options
        if stash_limit is None:
            stash_limit = int(config.get("gzip-stash-bytes"))
        self.stash_limit = stash_limit
        self.lock = threading.Lock()
        self.stream = None
        self.position = 0
        self.stash: list[tuple[int, bytes]] = []

    def _restart(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = open_stream(self.url, self.storage_options)
        self.position = 0

    def _read(self, n: int) -> bytes:
        data = self.stream.read(n)
        self.position += len(data)
        return data

    def holds(self, start: int, nbytes: int) -> bool:
        """Whether the stash holds the bytes ``start:start + nbytes``."""
        return any(o <= start and start + nbytes <= o + len(b) for o, b in self.stash)

    def read(self, start: int, nbytes: int) -> bytes:
        with self.lock:
            stashed = self._stashed(start, nbytes)
            if stashed is not None:
                return stashed
            self._seek(start)
            data = self._read(nbytes)
            if len(data) != nbytes:
                raise self._truncated(start, nbytes, len(data))
            return data

    def read_streamed(self, start: int, nbytes: int, step: int, consume) -> None:
        """``consume(offset, piece)`` for the bytes ``start:start + nbytes`` in pieces of at most
        ``step`` bytes (uint8 arrays), each inflated into one reused buffer and consumed while
        it is in the core's cache: the bytes never reach memory whole (the fit of a 1024-map
        atlas reads 5.4 GB of mostly zeros)."""
        with self.lock:
            stashed = self._stashed(start, nbytes)
            if stashed is not None:
                whole = np.frombuffer(stashed, np.uint8)
                for offset in range(0, nbytes, step):
                    consume(offset, whole[offset : offset + step])
                return
            self._seek(start)
            buffer = np.empty(min(step, nbytes), np.uint8)
            for offset in range(0, nbytes, step):
                piece = buffer[: min(step, nbytes - offset)]
                got = self._read_into(memoryview(piece))
                if got != piece.size:
                    raise self._truncated(start, nbytes, offset + got)
                consume(offset, piece)

    def _stashed(self, start: int, nbytes: int) -> bytes | None:
        for i, (offset, blob) in enumerate(self.stash):
            if offset <= start and start + nbytes <= offset + len(blob):
                piece = blob[start - offset : start - offset + nbytes]
                if start + nbytes == offset + len(blob) and start == offset:
                    self.stash.pop(i)
                return piece
        return None

    def _seek(self, start: int) -> None:
        """Move the stream to ``start``: on from its position (the bytes skipped stashed), or
        from the beginning when ``start`` is behind it."""
        if self.stream is None or self.position > start:
            self._restart()
            self.stash.clear()
        gap = start - self.position
        while gap > 0:
            offset = self.position
            skipped = self._read(min(gap, self.stash_limit))
            if not skipped:
                break
            self.stash.append((offset, skipped))
            while sum(len(b) for _, b in self.stash) > self.stash_limit:
                self.stash.pop(0)
            gap = start - self.position

    def _read_into(self, view: memoryview) -> int:
        filled = 0
        while filled < len(view):
            got = self.stream.readinto(view[filled:])
            if not got:
                break
            filled += got
        self.position += filled
        return filled

    def _truncated(self, start: int, nbytes: int, got: int) -> OSError:
        return OSError(
            f"'{self.url}' is truncated: expected {nbytes} bytes at offset {start}, got {got}"
        )

    def close(self) -> None:
        with self.lock:
            if self.stream is not None:
                self.stream.close()
            self.stream = None
            self.stash.clear()


_CURSORS_PER_FILE = 4
_PIECE_BYTES = 2**20  # inflated and consumed at once: within a core's L2 cache


def _cursor(url: str, storage_options, start: int, nbytes: int) -> _GzipCursor:
    """A decompressor of ``url`` for the bytes ``start:start + nbytes``, from a small pool.

    One file may be read by several chains of tasks at once (the extraction, and the two passes
    of high-variance confounds): with one decompressor for all, each chain's read restarted the
    stream the other had moved on (600 volumes, two threads: 152 s; 14.5 s with the pool).  An idle
    decompressor holding the bytes in its stash is taken first, then the idle one furthest along
    but not past ``start``, then a new one (up to ``_CURSORS_PER_FILE``), then any.
    """
    key = (url, repr(sorted((storage_options or {}).items())))
    with _READERS_LOCK:
        pool = _READERS.setdefault(key, [])
        idle = [c for c in pool if not c.lock.locked()]
        stashed = [c for c in idle if c.holds(start, nbytes)]
        behind = [c for c in idle if c.stream is not None and c.position <= start]
        if stashed:
            return stashed[0]
        if behind:
            return max(behind, key=lambda c: c.position)
        if len(pool) < _CURSORS_PER_FILE:
            pool.append(_GzipCursor(url, storage_options))
            return pool[-1]
        fresh = [c for c in idle if c.stream is None]
        return (fresh or idle or pool)[0]


@functools.lru_cache(maxsize=64)
def _blob_spec(header_blob: str) -> tuple:
    """The proxy spec of a header stored as base64: parsed once per header, not once per chunk
    (nibabel's header checks cost ~1 ms, 0.2 s over the 171 chunks of a 1024-map atlas)."""
    return _proxy_spec(header_from_attrs({"nifti_header": header_blob}))


def _read_volumes(url: str, storage_options, header_blob: str, t0: int, t1: int, ndim: int):
    spec = _blob_spec(header_blob)
    shape = tuple(spec[0])
    if url.endswith(".gz"):
        blob = _inflated(url, storage_options, spec, t0, t1, _GzipCursor.read)
        dtype = np.dtype(spec[1])
        if (spec[3], spec[4]) == (1.0, 0.0) and dtype.isnative:
            # unscaled native data: the decompressed bytes are the array (no copy)
            arr = np.frombuffer(blob, dtype=dtype).reshape((t1 - t0, *shape[2::-1]))
            return arr[0] if ndim == 3 else arr
        chunk_spec = ((*shape[:3], t1 - t0), spec[1], 0, spec[3], spec[4])
        return _slice(io.BytesIO(blob), chunk_spec, 0, t1 - t0, ndim, url)

    def read():
        with open_raw(url, storage_options) as f:
            return _slice(f, spec, t0, t1, ndim, url)

    return retry(read, url)


_INFLATE_ERRORS = (OSError, EOFError, ValueError, zlib_ng.error, isal_zlib.error)


def _inflated(url: str, storage_options, spec: tuple, t0: int, t1: int, how):
    """``how(cursor, start, nbytes)`` for the bytes of volumes ``t0:t1`` of a ``.nii.gz``: the
    errors name the volumes and the file; the last volume's read frees the decompressor."""
    shape = tuple(spec[0])
    volume = int(np.prod(shape[:3])) * np.dtype(spec[1]).itemsize
    start, nbytes = spec[2] + t0 * volume, (t1 - t0) * volume
    cursor = _cursor(url, storage_options, start, nbytes)
    try:
        out = how(cursor, start, nbytes)
    except _INFLATE_ERRORS as exc:
        cursor.close()
        raise OSError(
            f"could not read volumes {t0}:{t1} of '{url}' (truncated or corrupt?): {exc}"
        ) from exc
    if t1 >= (shape[3] if len(shape) > 3 else 1):
        cursor.close()
    return out


def _read_after(url, storage_options, header_blob, t0, t1, *done):
    """Read volumes t0:t1 once the previous chunk's read is ``done`` (only an ordering)."""
    del done
    return _read_volumes(url, storage_options, header_blob, t0, t1, 4)


def _done(chunk: np.ndarray) -> bool:
    """A token that a chunk was read: the next read waits for it, not for the chunk's data."""
    del chunk
    return True


def _slice(fileobj, spec, t0, t1, ndim, url):
    proxy = ArrayProxy(fileobj, spec, mmap=False, keep_file_open=False)
    try:
        if ndim == 3:
            arr = np.asanyarray(proxy[(slice(None),) * 3 + ((0,) if len(spec[0]) > 3 else ())])
            return np.ascontiguousarray(arr.T)
        arr = proxy[..., t0:t1]
    except (OSError, EOFError, ValueError) as exc:
        raise OSError(
            f"could not read volumes {t0}:{t1} of '{url}' (truncated or corrupt?): {exc}"
        ) from exc
    arr = np.asanyarray(arr)
    if arr.ndim > 4:
        arr = arr.reshape(arr.shape[:4])
    return np.ascontiguousarray(arr.T)


def scaled_dtype(dtype, slope: float, inter: float) -> np.dtype:
    """The dtype of values stored as ``dtype`` once nibabel scales them by ``slope``, ``inter``."""
    from nibabel.volumeutils import apply_read_scaling

    if slope == 1.0 and inter == 0.0:
        return np.dtype(dtype)
    return apply_read_scaling(np.zeros(1, dtype=dtype), slope, inter).dtype


def open_nifti(
    path_or_url, chunks=None, storage_options: dict | None = None, *, maps: bool = False
):
    """Open a NIfTI file lazily as an image: only the header is read.

    Parameters
    ----------
    path_or_url : str or path-like
        ``.nii`` or ``.nii.gz``, or a NIfTI-1 or Analyze 7.5 pair named by its ``.hdr`` or
        ``.img``; a local path (``~`` expanded) or an fsspec URL.
    chunks : int, optional
        Volumes per chunk; default about 64 MiB per chunk.
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
    url = normalize(path_or_url)
    pair = pair_files(url)
    if pair is None:
        header = read_header(url, storage_options)
    else:  # read the header file; the data come from the image file
        header = _pair_header(*pair, storage_options)
        url = pair[1]
    spec = _proxy_spec(header)
    shape = tuple(int(s) for s in spec[0])
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (3, 4):
        raise ValueError(f"'{url}' holds a {len(shape)}D image of shape {shape}: expected 3D or 4D")
    if 0 in shape:
        raise ValueError(f"The image is empty: '{url}' has shape {shape}.")
    dtype = scaled_dtype(spec[1], spec[3], spec[4])
    blob = __import__("base64").b64encode(header.binaryblock).decode("ascii")
    zyx = shape[2::-1]
    name = f"nifti-{tokenize(url, storage_options, blob)}"
    if len(shape) == 3:
        key = (name, 0, 0, 0)
        layer = {key: Task(key, _read_volumes, url, storage_options, blob, 0, 1, 3)}
        data = task_array(name, layer, tuple((n,) for n in zyx), dtype)
    else:
        volume_nbytes = int(np.prod(zyx)) * np.dtype(dtype).itemsize
        sizes = (
            time_chunks(shape[3], volume_nbytes) if chunks is None else _as_sizes(chunks, shape[3])
        )
        bounds = np.cumsum((0, *sizes))
        name = f"{name}-{tokenize(sizes)}"
        layer = {}
        for i, (a, b) in enumerate(itertools.pairwise(bounds.tolist())):
            key = (name, i, 0, 0, 0)
            if url.endswith(".gz"):
                # gzip is sequential: each chunk's read waits for the previous one (a tiny
                # token), so the per-process decompressor streams through the file once
                done = (TaskRef((f"{name}-read", i - 1)),) if i else ()
                layer[key] = Task(key, _read_after, url, storage_options, blob, a, b, *done)
                layer[(f"{name}-read", i)] = Task((f"{name}-read", i), _done, TaskRef(key))
            else:
                layer[key] = Task(key, _read_volumes, url, storage_options, blob, a, b, 4)
        data = task_array(name, layer, (tuple(sizes), *((n,) for n in zyx)), dtype)
    if pair is not None:  # the image's header is a single file's, as nibabel writes .nii
        header = nib.Nifti1Header.from_header(header)
    image = make_image(
        data, header.get_best_affine(), header=header, attrs={"source": url}, maps=maps
    )
    if len(shape) == 4 and url.endswith(".gz"):
        chunk_reader = GzipChunks(
            url, storage_options, blob, tuple(int(b) for b in bounds), name=data.name
        )
        image.encoding[READER_ENCODING] = chunk_reader
    return image


class GzipChunks:
    """The time chunks of a 4D ``.nii.gz`` for a consumer that reduces each one as it is read
    (see :func:`daskmasker.compute.projection.project`): ``sequential``, so they are read in order,
    each task after the previous one, as the chunks of :func:`open_nifti` are.
    """

    sequential = True

    def __init__(
        self,
        url: str,
        storage_options,
        header_blob: str,
        bounds: tuple[int, ...],
        name: str | None = None,
    ):
        self.url, self.storage_options, self.header_blob = url, storage_options, header_blob
        self.bounds = bounds
        self.name = name  # the Dask array open_nifti made of these chunks

    def is_array(self, data) -> bool:
        """Whether ``data`` is the Dask array these chunks make, unchanged (same graph)."""
        return self.name is not None and getattr(data, "name", None) == self.name

    def __dask_tokenize__(self):
        return ("GzipChunks", self.url, self.header_blob, self.bounds)

    def chunks_of(self, data) -> bool:
        """Whether the Dask array ``data`` is this file chunk for chunk."""
        sizes = tuple(int(b - a) for a, b in itertools.pairwise(self.bounds))
        return (
            data.ndim == 4 and data.chunks[0] == sizes and all(len(c) == 1 for c in data.chunks[1:])
        )

    def read_chunk(self, where: tuple[int, ...]) -> np.ndarray:
        """Volumes ``bounds[i]:bounds[i + 1]`` (``where = (i, 0, 0, 0)``)."""
        i = where[0]
        return _read_volumes(
            self.url, self.storage_options, self.header_blob, self.bounds[i], self.bounds[i + 1], 4
        )

    def read_screened(self, where: tuple[int, ...]) -> ScreenedBlock | None:
        """:meth:`read_chunk`'s volumes as a :class:`~daskmasker.compute.maps.ScreenedBlock`,
        screened as they are inflated (the dense block is never made), or None when the values
        are not stored as they are (scaled, swapped, or of 1 or 2 bytes)."""
        spec = _blob_spec(self.header_blob)
        shape, dtype = tuple(spec[0]), np.dtype(spec[1])
        t0, t1 = self.bounds[where[0]], self.bounds[where[0] + 1]
        block_shape = (t1 - t0, *shape[2::-1])
        width = screen_width(int(np.prod(block_shape)), shape[0], dtype.itemsize)
        if width is None or (spec[3], spec[4]) != (1.0, 0.0) or not dtype.isnative:
            return None
        segment_bytes = width * dtype.itemsize
        step = segment_bytes * max(1, _PIECE_BYTES // segment_bytes)
        hits, segments = [], []

        def consume(offset: int, piece: np.ndarray) -> None:
            hit, values = screen(piece.view(dtype), width)
            hits.append(hit + offset // segment_bytes)
            segments.append(values)

        def how(cursor: _GzipCursor, start: int, nbytes: int) -> None:
            cursor.read_streamed(start, nbytes, step, consume)

        _inflated(self.url, self.storage_options, spec, t0, t1, how)
        return ScreenedBlock(
            block_shape, dtype, width, np.concatenate(hits), np.concatenate(segments)
        )


class _OrderedWriter:
    """A ``dask.array.store`` target writing slabs of volumes to a stream in volume order.

    Slabs that arrive early wait in memory until the ones before them are written (with a
    sequential source such as a ``.nii.gz`` they arrive in order).
    """

    def __init__(self, stream, n_volumes: int, scaling: tuple[float, float], out_dtype):
        self.stream, self.n_volumes, self.scaling, self.out_dtype = (
            stream,
            n_volumes,
            scaling,
            np.dtype(out_dtype),
        )
        self.next = 0
        self.pending: dict[int, tuple[int, np.ndarray]] = {}

    def __setitem__(self, key, value) -> None:
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


def _as_sizes(chunks, n: int) -> tuple[int, ...]:
    if isinstance(chunks, dict):
        chunks = chunks.get("time", next(iter(chunks.values())))
    step = int(chunks)
    if step < 1:
        raise ValueError(f"chunks must be a positive number of volumes, got {chunks!r}")
    return tuple(min(step, n - s) for s in range(0, n, step))


def to_nifti(image, path, *, overwrite: bool = False, storage_options: dict | None = None) -> str:
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
    offset = _data_offset(header)
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


def _write_nifti(fs, tmp, url, header, offset, data, slope, inter, out_dtype) -> None:
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
                da.store(volumes, writer, lock=True, scheduler="threads")
            else:
                writer[0 : volumes.shape[0]] = np.asarray(volumes)
            writer.check_complete()
        finally:
            if stream is not raw:
                stream.close()
