"""Reading the voxels of a NIfTI file: a chunk of whole volumes at a time.

Each chunk is read through nibabel's ``ArrayProxy``, so the values, the dtype and the
``scl_slope``/``scl_inter`` scaling are exactly nibabel's.

* ``.nii``: a chunk is one ranged read of its bytes (local file or object store), retried on
  transient errors.
* ``.nii.gz``: a chunk is inflated by a decompressor of the file's pool
  (:mod:`daskmasker.io.gzip_cursors`); unscaled native data is the inflated bytes, uncopied.

:class:`GzipChunks` is a ``.nii.gz``'s chunk reader for consumers that reduce each chunk as it is
read (the :class:`~daskmasker.compute.source.ChunkSource` protocol); it can also stream a chunk's
stored values, piece by piece as they are inflated, to a consumer the caller gives
(:meth:`GzipChunks.read_pieces`).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from nibabel.arrayproxy import ArrayProxy

from daskmasker.io.fs import open_raw
from daskmasker.io.gzip_cursors import GzipCursor, read_range
from daskmasker.io.nifti_header import ProxySpec, blob_spec
from daskmasker.io.retry import retry

PIECE_BYTES = 2**20
"""Bytes inflated and consumed at once by :meth:`GzipChunks.read_pieces`: within a core's L2."""


def read_volumes(
    url: str, storage_options: dict | None, header_blob: str, t0: int, t1: int, ndim: int
) -> np.ndarray:
    """Volumes ``t0:t1`` of a NIfTI file as a ``(t, z, y, x)`` array (``(z, y, x)`` if ``ndim``
    is 3), from the file's base64 header."""
    spec = blob_spec(header_blob)
    shape = tuple(spec[0])
    if url.endswith(".gz"):
        blob = read_range(
            url,
            storage_options,
            *_byte_range(spec, t0, t1),
            GzipCursor.read,
            f"volumes {t0}:{t1}",
            _is_last(spec, t1),
        )
        dtype = np.dtype(spec[1])
        if (spec[3], spec[4]) == (1.0, 0.0) and dtype.isnative:
            # unscaled native data: the decompressed bytes are the array (no copy)
            arr = np.frombuffer(blob, dtype=dtype).reshape((t1 - t0, *shape[2::-1]))
            return arr[0] if ndim == 3 else arr
        chunk_spec = ((*shape[:3], t1 - t0), spec[1], 0, spec[3], spec[4])
        return _slice(io.BytesIO(blob), chunk_spec, 0, t1 - t0, ndim, url)

    def read() -> np.ndarray:
        with open_raw(url, storage_options) as f:
            return _slice(f, spec, t0, t1, ndim, url)

    return retry(read, url)


def _byte_range(spec: ProxySpec, t0: int, t1: int) -> tuple[int, int]:
    """Start and length of the stored bytes of volumes ``t0:t1``."""
    volume = int(np.prod(spec[0][:3])) * np.dtype(spec[1]).itemsize
    return spec[2] + t0 * volume, (t1 - t0) * volume


def _is_last(spec: ProxySpec, t1: int) -> bool:
    shape = spec[0]
    return t1 >= (shape[3] if len(shape) > 3 else 1)


def _slice(fileobj: Any, spec: ProxySpec, t0: int, t1: int, ndim: int, url: str) -> np.ndarray:
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


def read_after(
    url: str, storage_options: dict | None, header_blob: str, t0: int, t1: int, *done: Any
) -> np.ndarray:
    """Read volumes t0:t1 once the previous chunk's read is ``done`` (only an ordering)."""
    del done
    return read_volumes(url, storage_options, header_blob, t0, t1, 4)


def read_done(chunk: np.ndarray) -> bool:
    """A token that a chunk was read: the next read waits for it, not for the chunk's data."""
    del chunk
    return True


class PieceConsumer(Protocol):
    """What :meth:`GzipChunks.read_pieces` streams a chunk's stored values to."""

    granule: int
    """Bytes every piece but the last is a multiple of."""

    def consume(self, offset: int, piece: np.ndarray) -> None:
        """Take ``piece`` (uint8) of the chunk's stored bytes, at byte ``offset`` of the chunk."""

    def result(self) -> Any:
        """What the consumer made of the chunk."""


class GzipChunks:
    """The time chunks of a 4D ``.nii.gz`` for a consumer that reduces each one as it is read
    (see :func:`daskmasker.compute.projection.project`): ``sequential``, so they are read in order,
    each task after the previous one, as the chunks of :func:`~daskmasker.io.nifti.open_nifti`
    are.
    """

    sequential = True

    def __init__(
        self,
        url: str,
        storage_options: dict | None,
        header_blob: str,
        bounds: tuple[int, ...],
        name: str | None = None,
    ):
        self.url, self.storage_options, self.header_blob = url, storage_options, header_blob
        self.bounds = bounds
        self.name = name  # the Dask array open_nifti made of these chunks

    def is_array(self, data: Any) -> bool:
        """Whether ``data`` is the Dask array these chunks make, unchanged (same graph)."""
        return self.name is not None and getattr(data, "name", None) == self.name

    def __dask_tokenize__(self) -> tuple:
        return ("GzipChunks", self.url, self.header_blob, self.bounds)

    def chunks_of(self, data: Any) -> bool:
        """Whether the Dask array ``data`` is this file chunk for chunk."""
        sizes = tuple(int(b - a) for a, b in itertools.pairwise(self.bounds))
        return (
            data.ndim == 4 and data.chunks[0] == sizes and all(len(c) == 1 for c in data.chunks[1:])
        )

    def read_chunk(self, where: tuple[int, ...]) -> np.ndarray:
        """Volumes ``bounds[i]:bounds[i + 1]`` (``where = (i, 0, 0, 0)``)."""
        i = where[0]
        return read_volumes(
            self.url, self.storage_options, self.header_blob, self.bounds[i], self.bounds[i + 1], 4
        )

    def read_pieces(
        self,
        where: tuple[int, ...],
        consumer_for: Callable[[tuple[int, ...], np.dtype], PieceConsumer | None],
    ) -> Any | None:
        """:meth:`read_chunk`'s stored values streamed to a consumer as they are inflated.

        The chunk's bytes are inflated :data:`PIECE_BYTES` at a time into one reused buffer and
        each piece is consumed while it is in the core's cache, so the chunk is never made whole
        (the fit screens a 1024-map atlas's 5.4 GB of mostly zeros this way).

        Parameters
        ----------
        where : tuple of int
            ``(i, 0, 0, 0)``: chunk ``i``.
        consumer_for : callable
            ``consumer_for(block_shape, dtype)`` with the chunk's ``(t, z, y, x)`` shape and
            stored dtype: a :class:`PieceConsumer`, or None when it cannot take these values.

        Returns
        -------
        The consumer's ``result()``, or None when the values are not stored as they are read
        (scaled or byte-swapped) or ``consumer_for`` declined them.
        """
        spec = blob_spec(self.header_blob)
        shape, dtype = tuple(spec[0]), np.dtype(spec[1])
        t0, t1 = self.bounds[where[0]], self.bounds[where[0] + 1]
        if (spec[3], spec[4]) != (1.0, 0.0) or not dtype.isnative:
            return None
        consumer = consumer_for((t1 - t0, *shape[2::-1]), dtype)
        if consumer is None:
            return None
        step = consumer.granule * max(1, PIECE_BYTES // consumer.granule)

        def how(cursor: GzipCursor, start: int, nbytes: int) -> None:
            cursor.read_streamed(start, nbytes, step, consumer.consume)

        start, nbytes = _byte_range(spec, t0, t1)
        read_range(
            self.url,
            self.storage_options,
            start,
            nbytes,
            how,
            f"volumes {t0}:{t1}",
            _is_last(spec, t1),
        )
        return consumer.result()
