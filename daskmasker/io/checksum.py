"""sha256 digests of a run's inputs, for every kind of input the masker accepts.

One implementation serves the run fingerprints (:mod:`daskmasker.batch.fingerprint`), the
``checksum`` attributes of a batch store and the BIDS sidecars.  Contents, not paths, are
hashed: a moved input with the same bytes is the same input.  By kind:

* a file (local or fsspec URL, ``s3://`` included): the sha256 of its bytes as stored
  (compressed for ``.gz``), streamed, so ``sha256sum FILE`` gives the same digest;
* a directory (a Zarr store): the sha256 of its manifest, one ``key, size, sha256`` line per
  file in sorted order (two stores agree exactly when they hold the same keys and bytes);
* a nibabel image in memory, a numpy array, a DataFrame, a daskmasker image: the sha256 of the
  array bytes with their dtype and shape (and the affine, a nibabel header's voxel sizes and
  units, whose TR is the run's when ``t_r`` is not given, the column names).

Files also record a cheap ``stat`` (size and modification time, or the object store's ETag):
a recorded digest whose source and stat are unchanged is reused without reading the bytes again
(the quick check of rsync and git's index), so checking a large store for a resume reads no input.
A local file's stat is taken by one ``os.stat`` (the same ``size:mtime`` as fsspec's, which
costs ~50 times more a file in path handling): resuming 10,000 runs stats 10,000 files.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat as stat_
from typing import Any, overload

import fsspec
import numpy as np


def _is_path(obj: Any) -> bool:
    return isinstance(obj, str) or hasattr(obj, "__fspath__")


def _sha(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def array_sha(array: Any, *extra: Any) -> str:
    """sha256 of an array's bytes, dtype and shape (and of ``extra`` values, as JSON)."""
    values = np.ascontiguousarray(np.asarray(array))
    head = json.dumps([str(values.dtype), list(values.shape), *extra], default=str)
    return _sha(head.encode(), values.tobytes())


def _file_stat(fs: fsspec.AbstractFileSystem, path: str, info: dict | None = None) -> str:
    info = info if info is not None else fs.info(path)
    stamp = next(
        (info[k] for k in ("ETag", "etag", "mtime", "LastModified", "last_modified") if k in info),
        None,
    )
    return f"{info.get('size')}:{stamp}"


def _local_file_stat(path: str) -> str | None:
    """:func:`_file_stat` of a local regular file (``size:mtime`` of what a link points to, as
    fsspec's ``LocalFileSystem.info`` gives them), by one ``os.stat``; None for anything else
    (a directory, a broken link, no file), which the fsspec path then handles."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return f"{st.st_size}:{st.st_mtime}" if stat_.S_ISREG(st.st_mode) else None


def _file_sha(fs: fsspec.AbstractFileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unchanged(
    obj: Any,
    source: str | None,
    stat: str | None,
    size: int | None = None,
    mtime: float | None = None,
) -> bool:
    """Whether ``obj`` is a local file path naming ``source`` whose stat is still ``stat`` (the
    quick check of :func:`digest`, without building a digest: a resume asks it of every input).

    ``size`` and ``mtime``, when given, are ``stat`` parsed (:func:`stat_numbers`): compared
    as numbers, which spares formatting the float for each of a resume's files.

    Examples
    --------
    >>> unchanged(np.zeros(3), "/a.nii.gz", "1:2"), unchanged(None, "/a.nii.gz", "1:2")
    (False, False)
    """
    if not isinstance(obj, str):
        if not hasattr(obj, "__fspath__"):
            return False
        obj = os.fspath(obj)
    if obj != source:  # a recorded source is absolute and normalised
        if "://" in obj:
            return False
        obj = os.path.abspath(os.path.expanduser(obj))
        if obj != source:
            return False
    if size is None or mtime is None:
        return stat is not None and _local_file_stat(obj) == stat
    try:
        st = os.stat(obj)
    except (OSError, ValueError):
        return False
    return st.st_size == size and st.st_mtime == mtime and stat_.S_ISREG(st.st_mode)


def stat_numbers(stat: str | None) -> tuple[int, float] | None:
    """A local file's recorded stat (``size:mtime``, :func:`_local_file_stat`) as numbers, or
    None for another kind (an object store's ETag, a directory's manifest sha256).

    Examples
    --------
    >>> stat_numbers("7:1796621337.6676037"), stat_numbers('12:"0a1b"')
    ((7, 1796621337.6676037), None)
    """
    if not isinstance(stat, str):
        return None
    size, _, mtime = stat.partition(":")
    try:
        numbers = (int(size), float(mtime))
    except ValueError:
        return None
    return numbers if f"{numbers[0]}:{numbers[1]}" == stat else None


def _path_digest(source: str, storage_options: dict | None, known: dict | None) -> dict:
    """A file's or a directory's (Zarr store's) digest, reusing ``known`` when unchanged."""
    if known and "://" not in source and unchanged(source, known.get("source"), known.get("stat")):
        return known  # a local file: its stat without fsspec's path handling
    fs, _, (path,) = fsspec.get_fs_token_paths(source, storage_options=storage_options or {})
    if fs.isdir(path):
        files = fs.find(path, detail=True)
        keys = sorted(files)
        stat = _sha(
            "\n".join(f"{k[len(path) :]}\t{_file_stat(fs, k, files[k])}" for k in keys).encode()
        )
        if known and known.get("source") == source and known.get("stat") == stat:
            return known
        manifest = "\n".join(
            f"{k[len(path) :]}\t{files[k].get('size')}\t{_file_sha(fs, k)}" for k in keys
        )
        return {"source": source, "stat": stat, "sha256": _sha(manifest.encode())}
    stat = _file_stat(fs, path)
    if known and known.get("source") == source and known.get("stat") == stat:
        return known
    return {"source": source, "stat": stat, "sha256": _file_sha(fs, path)}


@overload
def digest(obj: None, storage_options: dict | None = None, known: dict | None = None) -> None: ...
@overload
def digest(obj: object, storage_options: dict | None = None, known: dict | None = None) -> dict: ...
def digest(obj: Any, storage_options: dict | None = None, known: dict | None = None) -> dict | None:
    """The digest of one input: ``{"source", "stat", "sha256"}`` (None for no input).

    Parameters
    ----------
    obj : path, URL, Zarr store, nibabel image, daskmasker image, ndarray, DataFrame, or a list
        The input as given to the masker.
    storage_options : dict, optional
        fsspec options for URLs.
    known : dict, optional
        A digest recorded earlier: reused when the source and stat are unchanged.

    Returns
    -------
    dict or None

    Examples
    --------
    >>> digest(np.zeros(3))["sha256"][:12]
    '343a819c689d'
    """
    if obj is None:
        return None
    if _is_path(obj):
        source = os.fspath(obj)
        if "://" not in source:
            source = os.path.abspath(os.path.expanduser(source))
        return _path_digest(source, storage_options, known)
    if isinstance(obj, list | tuple):
        parts = [
            digest(o, storage_options, k)
            for o, k in zip(obj, _known_parts(known, len(obj)), strict=True)
        ]
        sha = _sha("\n".join(p["sha256"] for p in parts).encode())
        return {"source": [p["source"] for p in parts], "stat": None, "sha256": sha, "parts": parts}
    found: dict[str, Any] = {"source": _describe(obj), "stat": None, "sha256": _memory_sha(obj)}
    file = _table_file(obj)
    if file is not None:  # a table read from a file (columns chosen, n/a filled): both count
        found["file"] = digest(file, storage_options, (known or {}).get("file"))
    return found


def _table_file(obj: Any) -> str | None:
    """The file a DataFrame was read from (``attrs["source"]``, set by ``confounds_table``)."""
    attrs = getattr(obj, "attrs", None)
    if hasattr(obj, "columns") and isinstance(attrs, dict) and _is_path(attrs.get("source")):
        return attrs["source"]
    return None


def _known_parts(known: dict | None, n: int) -> list:
    parts = (known or {}).get("parts") or []
    return parts if len(parts) == n else [None] * n


def _describe(obj: Any) -> str:
    filename = getattr(obj, "get_filename", lambda: None)()
    if filename:
        return f"<in-memory image from {filename}>"
    attrs = getattr(obj, "attrs", None)
    if isinstance(attrs, dict) and attrs.get("source"):
        kind = "table" if hasattr(obj, "columns") else "image"
        return f"<{kind} from {attrs['source']}>"
    return f"<in-memory {type(obj).__name__}>"


def _memory_sha(obj: Any) -> str:
    """sha256 of an in-memory input's values (a nibabel or daskmasker image, array, table)."""
    if hasattr(obj, "affine") and hasattr(obj, "dataobj"):  # nibabel
        # the header's voxel sizes and units too: its TR is the image's when t_r is not given
        header = getattr(obj, "header", None)
        zooms = [float(z) for z in header.get_zooms()] if header is not None else None
        units = getattr(header, "get_xyzt_units", lambda: None)()
        return array_sha(np.asanyarray(obj.dataobj), np.asarray(obj.affine).tolist(), zooms, units)
    if hasattr(obj, "columns") and hasattr(obj, "to_numpy"):  # pandas (or polars) DataFrame
        return array_sha(obj.to_numpy(), [str(c) for c in obj.columns])
    data: Any = getattr(obj, "data", None)
    if hasattr(data, "blocks"):  # a lazy daskmasker image: its chunks, one at a time
        digest_ = hashlib.sha256(json.dumps([str(data.dtype), list(data.shape)]).encode())
        for block in np.ndindex(*data.numblocks):
            digest_.update(np.ascontiguousarray(data.blocks[block].compute()).tobytes())
        digest_.update(json.dumps(obj.attrs.get("affine"), default=str).encode())
        return digest_.hexdigest()
    if data is not None and hasattr(obj, "attrs"):  # an xarray image holding numpy data
        return array_sha(data, obj.attrs.get("affine"))
    return array_sha(obj)


def checksum(obj: Any, storage_options: dict | None = None) -> str | None:
    """``"sha256:<hex>"`` of an input (:func:`digest`), or None for no input.

    Examples
    --------
    >>> checksum(np.zeros(3))[:19]
    'sha256:343a819c689d'
    """
    found = digest(obj, storage_options)
    return None if found is None else f"sha256:{found['sha256']}"
