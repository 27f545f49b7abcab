"""Sequential decompressors of ``.nii.gz`` files, a small pool per file, shared by the chunk reads.

gzip cannot seek, and decompression bounds the reading speed.  Each process keeps a few
sequential decompressors per file (zlib-ng or ISA-L, whichever inflates the file's encoding
faster: see :func:`daskmasker.io.fs.open_stream`); a read that starts at or after a cursor's
position continues from there, so chunks read in order cost one pass in total, while a read
behind every cursor restarts a stream.  Reads through one cursor are serialized by its lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from isal import isal_zlib
from zlib_ng import zlib_ng

from daskmasker import config
from daskmasker.io.fs import open_stream

CURSORS_PER_FILE = 4
"""Decompressors a file may have at once (the extraction and the two passes of high-variance
confounds read one file in three chains)."""

_CURSORS: dict[tuple, list[GzipCursor]] = {}
_CURSORS_LOCK = threading.Lock()

INFLATE_ERRORS = cast(
    tuple[type[BaseException], ...],
    (OSError, EOFError, ValueError, zlib_ng.error, isal_zlib.error),
)
"""What a truncated or corrupt ``.nii.gz`` raises while it is inflated."""

T = TypeVar("T")


class GzipCursor:
    """A sequential decompressor of one ``.nii.gz`` with a small stash for out-of-order reads.

    Chunks usually arrive in order; when a later chunk is asked first (two threads), the bytes
    skipped on the way are kept (up to ``stash_limit`` bytes) for the chunk that will follow.
    A request behind everything decoded restarts the stream.
    """

    def __init__(self, url: str, storage_options: dict | None, stash_limit: int | None = None):
        self.url, self.storage_options = url, storage_options
        if stash_limit is None:
            stash_limit = int(config.get("gzip-stash-bytes"))
        self.stash_limit = stash_limit
        self.lock = threading.Lock()
        self.stream: Any = None
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
        """The decompressed bytes ``start:start + nbytes``."""
        with self.lock:
            stashed = self._stashed(start, nbytes)
            if stashed is not None:
                return stashed
            self._seek(start)
            data = self._read(nbytes)
            if len(data) != nbytes:
                raise self._truncated(start, nbytes, len(data))
            return data

    def read_streamed(
        self, start: int, nbytes: int, step: int, consume: Callable[[int, np.ndarray], None]
    ) -> None:
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
                got = self._read_into(piece.data)
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
        """Close the stream and drop the stash (the cursor stays usable: it restarts)."""
        with self.lock:
            if self.stream is not None:
                self.stream.close()
            self.stream = None
            self.stash.clear()


def cursor_for(url: str, storage_options: dict | None, start: int, nbytes: int) -> GzipCursor:
    """A decompressor of ``url`` for the bytes ``start:start + nbytes``, from a small pool.

    One file may be read by several chains of tasks at once (the extraction, and the two passes
    of high-variance confounds): with one decompressor for all, each chain's read restarted the
    stream the other had moved on.  An idle decompressor holding the bytes in its stash is taken
    first, then the idle one furthest along but not past ``start``, then a new one (up to
    :data:`CURSORS_PER_FILE`), then any.
    """
    key = (url, repr(sorted((storage_options or {}).items())))
    with _CURSORS_LOCK:
        pool = _CURSORS.setdefault(key, [])
        idle = [c for c in pool if not c.lock.locked()]
        stashed = [c for c in idle if c.holds(start, nbytes)]
        behind = [c for c in idle if c.stream is not None and c.position <= start]
        if stashed:
            return stashed[0]
        if behind:
            return max(behind, key=lambda c: c.position)
        if len(pool) < CURSORS_PER_FILE:
            pool.append(GzipCursor(url, storage_options))
            return pool[-1]
        fresh = [c for c in idle if c.stream is None]
        return (fresh or idle or pool)[0]


def read_range(
    url: str,
    storage_options: dict | None,
    start: int,
    nbytes: int,
    how: Callable[[GzipCursor, int, int], T],
    what: str,
    last: bool,
) -> T:
    """``how(cursor, start, nbytes)`` with a cursor of the pool; errors name ``what`` and the file.

    Parameters
    ----------
    how : callable
        :meth:`GzipCursor.read` or a function streaming the bytes through
        :meth:`GzipCursor.read_streamed`.
    what : str
        What the bytes are, for the error ("volumes 10:20").
    last : bool
        The bytes end the file's data: the cursor is closed afterwards (its memory freed).
    """
    cursor = cursor_for(url, storage_options, start, nbytes)
    try:
        out = how(cursor, start, nbytes)
    except INFLATE_ERRORS as exc:
        cursor.close()
        raise OSError(f"could not read {what} of '{url}' (truncated or corrupt?): {exc}") from exc
    if last:
        cursor.close()
    return out
