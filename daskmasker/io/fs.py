"""File systems: local paths and fsspec URLs opened with retries and errors that name them."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, TypeVar

import fsspec
from isal import igzip
from zlib_ng import gzip_ng

from daskmasker.io.retry import http_status, retry

if TYPE_CHECKING:
    from zarr.abc.store import Store

T = TypeVar("T")


class Location:
    """A Zarr store location: the zarr store object and the fsspec file system behind it."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        import zarr  # here, not at the top: reading a NIfTI (this module's other use) needs none

        self.url = str(url)
        try:
            self.fs, _, (self.root,) = fsspec.get_fs_token_paths(
                self.url, storage_options=storage_options or {}
            )
        except ValueError as exc:  # fsspec's "Protocol not known: s4" names no URL
            raise ValueError(f"cannot open '{self.url}': {exc}") from exc
        self.store: Store
        if "://" in self.url and not self.url.startswith("file://"):
            self.store = zarr.storage.FsspecStore.from_url(
                self.url, storage_options=storage_options or {}
            )
        else:
            self.store = zarr.storage.LocalStore(self.root)


def check_bucket(location: Location) -> None:
    """Refuse, naming the URL, a store to be written into an object-store bucket that does not
    exist (S3 says only "The specified bucket does not exist", at the first write)."""
    _check_writable(location.url, location.fs, location.root)


def check_folder(url: str, storage_options: dict | None = None) -> None:
    """Refuse, naming the URL, an output folder (BIDS derivatives) that cannot be written: an
    unknown scheme, an HTTP(S) URL, a bucket that does not exist (s3fs would create it)."""
    if "://" not in str(url) or str(url).startswith("file://"):
        return
    try:
        fs, _, (root,) = fsspec.get_fs_token_paths(url, storage_options=storage_options or {})
    except ValueError as exc:  # fsspec's "Protocol not known: s4" names no URL
        raise ValueError(f"cannot open '{url}': {exc}") from exc
    _check_writable(str(url), fs, root)


def _check_writable(url: str, fs: fsspec.AbstractFileSystem, root: str) -> None:
    if "://" not in url or url.startswith("file://"):
        return
    if url.split("://")[0] in ("http", "https"):
        raise ValueError(f"cannot write '{url}': an HTTP(S) URL is read-only")
    bucket = root.split("/")[0]
    try:
        exists = fs.exists(bucket)
    except Exception:  # cannot tell (no right to look): the write will say
        return
    if not exists:
        raise FileNotFoundError(
            f"cannot write '{url}': the bucket '{bucket}' does not exist "
            "(create it, or check the endpoint and credentials)"
        )


def normalize(path_or_url: Any) -> str:
    """A URL as is; a local path expanded (``~``) and made absolute."""
    path = os.fspath(path_or_url)
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


class RetryingFile(io.RawIOBase):
    """A read-only file that, after a transient error, reopens and goes on from where it was.

    Every read is retried (``daskmasker.retry.*``); a reader on top (a gzip decompressor, a
    nibabel ``ArrayProxy``) never sees the dropped connection, the 503 or the response cut
    short, and a ``.nii.gz`` stream goes on without restarting.  Permanent errors (missing,
    forbidden, corrupt) are raised at once.

    ``readahead=False`` opens with fsspec's ``cache_type="none"``: a read fetches the bytes
    asked for and no more (a header costs its few hundred bytes, not a 5 to 50 MB block);
    ``readahead=True`` keeps the file system's read-ahead cache, for streaming a whole file.
    """

    def __init__(self, url: str, storage_options: dict | None, readahead: bool = False) -> None:
        super().__init__()
        self.url = url
        self._fs, self._path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self._options = {} if readahead else {"cache_type": "none"}
        self._position = 0
        self._file: IO[bytes] | None = retry(self._open, url)

    def _open(self) -> IO[bytes]:
        return self._fs.open(self._path, "rb", **self._options)

    def _attempt(self, call: Callable[[IO[bytes]], T]) -> T:
        def attempt() -> T:
            if self._file is None:
                self._file = self._open()
                self._file.seek(self._position)
            try:
                return call(self._file)
            except Exception:
                self._drop()
                raise

        return retry(attempt, self.url)

    def _drop(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except Exception:
                pass  # the connection is gone already

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._position = offset
        elif whence == io.SEEK_CUR:
            self._position += offset
        else:
            self._position = self._attempt(lambda f: f.seek(offset, io.SEEK_END))
            return self._position
        if self._file is not None:
            self._file.seek(self._position)
        return self._position

    def read(self, size: int = -1) -> bytes:
        data = self._attempt(lambda f: f.read(size))
        self._position += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer).cast("B")))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._drop()
        super().close()


def open_raw(url: str, storage_options: dict | None, readahead: bool = False) -> RetryingFile:
    """An open binary file (a :class:`RetryingFile`); errors name the URL (missing, forbidden,
    failing)."""
    try:
        return RetryingFile(url, storage_options, readahead)
    except Exception as exc:
        status = http_status(exc)
        if isinstance(exc, PermissionError) or status in (401, 403):
            raise PermissionError(f"access denied to '{url}': {exc}") from exc
        if isinstance(exc, FileNotFoundError) or status in (404, 410):
            raise FileNotFoundError(f"File not found: '{url}'") from exc
        raise OSError(f"could not open '{url}': {exc}") from exc


def open_stream(url: str, storage_options: dict | None) -> Any:
    """The file's bytes, inflated for ``.gz`` (read ahead: the stream is sequential).

    Two inflaters, chosen by the gzip header's XFL byte: ISA-L (``isal.igzip``) for a file
    written at zlib's fastest level (XFL 4: nibabel's default, so most ``.nii.gz`` of the
    ecosystem), zlib-ng (``zlib_ng.gzip_ng``) for the others.  Their speeds depend on how runs
    of zeros are encoded: at zlib's other levels and ISA-L's levels 1-2, as many copies at
    distance 1, which zlib-ng expands 8 bytes at a time and ISA-L much more slowly; ISA-L is
    the faster on zlib-1 files.  The choice costs little on the files it misjudges (ISA-L's
    level 3, low ratios at zlib's higher levels); the measured speeds are in
    ``benchmarks/results/2026-12-07-docstrings-figures.md``.
    """
    raw = open_raw(url, storage_options, readahead=True)
    if not url.endswith(".gz"):
        return raw
    buffered = io.BufferedReader(raw)  # the header peeked at, not read (no seek back)
    head = buffered.peek(10)[:10]
    fastest = len(head) == 10 and head[:2] == b"\x1f\x8b" and head[8] == 4
    return (igzip if fastest else gzip_ng).GzipFile(fileobj=buffered, mode="rb")
