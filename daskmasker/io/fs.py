"""File systems: local paths and fsspec URLs opened with retries and errors that name them."""

from __future__ import annotations

import os
from typing import Any

import fsspec
import zarr
from isal import igzip

from daskmasker.io.retry import retry


class Location:
    """A Zarr store location: the zarr store object and the fsspec file system behind it."""

    def __init__(self, url: str, storage_options: dict | None = None):
        self.url = str(url)
        self.fs, _, (self.root,) = fsspec.get_fs_token_paths(
            self.url, storage_options=storage_options or {}
        )
        if "://" in self.url and not self.url.startswith("file://"):
            self.store = zarr.storage.FsspecStore.from_url(
                self.url, storage_options=storage_options or {}
            )
        else:
            self.store = zarr.storage.LocalStore(self.root)


def normalize(path_or_url: Any) -> str:
    """A URL as is; a local path expanded (``~``) and made absolute."""
    path = os.fspath(path_or_url)
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def open_raw(url: str, storage_options: dict | None):
    """An open binary file, with retries; errors name the URL (missing, forbidden, other)."""
    try:
        return retry(lambda: fsspec.open(url, "rb", **(storage_options or {})).open(), url)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"File not found: '{url}'") from exc
    except PermissionError as exc:
        raise PermissionError(f"access denied to '{url}': {exc}") from exc
    except Exception as exc:
        raise OSError(f"could not open '{url}': {exc}") from exc


def open_stream(url: str, storage_options: dict | None):
    """The file's bytes, inflated by ISA-L for ``.gz``."""
    raw = open_raw(url, storage_options)
    return igzip.GzipFile(fileobj=raw, mode="rb") if url.endswith(".gz") else raw
