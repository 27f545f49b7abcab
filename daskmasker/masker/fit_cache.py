"""The fit cache: fitted maps kept per process, keyed by the inputs' identity and the grid."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Hashable, Iterator
from typing import Any

from daskmasker import config


class FitCache:
    """A small process-wide cache of fitted maps, keyed by the inputs' identity and the grid.

    A second masker fitting the same maps and mask for the same grid (the many-subjects case)
    reuses the loaded, resampled maps and their prepared Gram solvers instead of reading them
    again.  Files are identified by path, size and modification time; in-memory objects by their
    id (the cache keeps a reference, so the id cannot be reused while cached).
    """

    def __init__(self, size: int | None = None):
        self._size = size
        self._floor = 0
        self._entries: dict = {}
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Entries kept: ``size``, or the ``daskmasker.fit-cache-size`` setting (at least the
        count a :meth:`holding` block asks for)."""
        size = int(config.get("fit-cache-size")) if self._size is None else self._size
        return max(size, self._floor)

    @contextlib.contextmanager
    def holding(self, count: int) -> Iterator[FitCache]:
        """Keep at least ``count`` entries inside the block (the atlases of one ``fit_many``)."""
        previous, self._floor = self._floor, max(self._floor, count)
        try:
            yield self
        finally:
            self._floor = previous
            with self._lock:
                self._trim()

    @staticmethod
    def identity(obj: Any) -> tuple:
        """What identifies an input: a file's path, size and mtime; a URL; an object's id."""
        if obj is None:
            return (None,)
        if isinstance(obj, str | os.PathLike) and "://" not in str(obj):
            path = os.path.abspath(os.path.expanduser(str(obj)))
            try:
                st = os.stat(path)
            except OSError:
                return ("path", path)
            return ("file", path, st.st_size, st.st_mtime_ns)
        if isinstance(obj, str):
            return ("url", obj)
        return ("object", id(obj))

    def get(self, key: Hashable) -> Any:
        """The cached value for ``key`` (now the most recent), or None."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._entries[key] = entry
                return entry[1]
        return None

    def put(self, key: Hashable, objects: Any, value: Any) -> None:
        """Cache ``value``, keeping ``objects`` alive with it; the oldest entries go."""
        with self._lock:
            self._entries[key] = (objects, value)
            self._trim()

    def discard(self, key: Hashable) -> None:
        """Forget ``key`` if cached."""
        with self._lock:
            self._entries.pop(key, None)

    def _trim(self) -> None:
        while len(self._entries) > self.size:
            self._entries.pop(next(iter(self._entries)))


FIT_CACHE = FitCache()
