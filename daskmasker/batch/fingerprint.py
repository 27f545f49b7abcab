"""What a run's numbers depend on, recorded so a rerun never keeps stale results.

A run group's fingerprint holds the masker parameters that shape the numbers, the sha256 of the
contents of every input (image, maps, mask, confounds; the sample mask's volumes), the region
names and the versions of the packages that compute them.  :func:`differences` compares two of
them and says what changed, in words a user can act on.

Contents, not paths, are compared: a moved input with the same bytes is the same input.  Hashing
is by kind:

* a file (local or fsspec URL): the sha256 of its bytes;
* a directory (a Zarr store): the sha256 of its manifest, one ``key, size, sha256`` line per file;
* a nibabel image in memory, a numpy array, a DataFrame, a daskmasker image: the sha256 of the
  array bytes with their dtype and shape (and the affine, the column names).

Files also record a cheap ``stat`` (size and modification time, or the object store's ETag):
a recorded digest whose source and stat are unchanged is reused without reading the bytes again
(the quick check of rsync and git's index), so checking a large store for a resume reads no input.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from typing import Any

import fsspec
import numpy as np

from daskmasker.batch import provenance

NOT_NUMBERS = ("verbose", "memory", "memory_level", "reports", "cmap")
"""Masker parameters that change no number, left out of the fingerprint."""
INPUT_PARAMS = ("maps_img", "mask_img", "region_names")
"""Masker parameters fingerprinted by content (maps, mask) or resolved value (names)."""
VERSIONED = ("daskmasker", "numpy", "scipy", "dask", "nibabel")
"""Packages whose versions shape the numbers: a change is a difference."""
ROLES = ("image", "maps", "mask", "confounds")


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


def _file_stat(fs, path: str, info: dict | None = None) -> str:
    info = info if info is not None else fs.info(path)
    stamp = next(
        (info[k] for k in ("ETag", "etag", "mtime", "LastModified", "last_modified") if k in info),
        None,
    )
    return f"{info.get('size')}:{stamp}"


def _file_sha(fs, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _path_digest(source: str, storage_options: dict | None, known: dict | None) -> dict:
    """A file's or a directory's (Zarr store's) digest, reusing ``known`` when unchanged."""
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
    found = {"source": _describe(obj), "stat": None, "sha256": _memory_sha(obj)}
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
        return array_sha(np.asanyarray(obj.dataobj), np.asarray(obj.affine).tolist())
    if hasattr(obj, "columns") and hasattr(obj, "to_numpy"):  # pandas (or polars) DataFrame
        return array_sha(obj.to_numpy(), [str(c) for c in obj.columns])
    data = getattr(obj, "data", None)
    if hasattr(data, "blocks"):  # a lazy daskmasker image: its chunks, one at a time
        digest_ = hashlib.sha256(json.dumps([str(data.dtype), list(data.shape)]).encode())
        for block in np.ndindex(*data.numblocks):
            digest_.update(np.ascontiguousarray(data.blocks[block].compute()).tobytes())
        digest_.update(json.dumps(obj.attrs.get("affine"), default=str).encode())
        return digest_.hexdigest()
    if data is not None and hasattr(obj, "attrs"):  # an xarray image holding numpy data
        return array_sha(data, obj.attrs.get("affine"))
    return array_sha(obj)


def canonical(value: Any) -> Any:
    """A parameter as compared: dicts (``clean_args``, stored as their repr) with sorted keys,
    so ``{'a': 1, 'b': 2}`` and ``{'b': 2, 'a': 1}`` are the same parameter.

    Examples
    --------
    >>> canonical("{'filter': 'cosine', 'extrapolate': False}")
    "{'extrapolate': False, 'filter': 'cosine'}"
    """
    if isinstance(value, str) and value.startswith("{"):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
        if isinstance(parsed, dict):
            return repr(dict(sorted(parsed.items())))
    return value


def fingerprint(
    params: dict,
    inputs: dict[str, dict | None],
    sample_mask: np.ndarray | None,
    region_names: list[str],
) -> dict:
    """A run's fingerprint (JSON-friendly).

    Parameters
    ----------
    params : dict
        The masker's parameters as output attrs (:func:`~daskmasker.masker.transform.json_params`).
    inputs : dict
        Digests (:func:`digest`) of ``image``, ``maps``, ``mask`` and ``confounds``.
    sample_mask : ndarray of int, optional
        The volumes kept, in order.
    region_names : list of str
        The names of the extracted regions.

    Returns
    -------
    dict
    """
    versions = provenance.versions()
    return {
        "parameters": {
            k: canonical(v) for k, v in params.items() if k not in NOT_NUMBERS + INPUT_PARAMS
        },
        **{role: inputs.get(role) for role in ROLES},
        "sample_mask": None if sample_mask is None else array_sha(np.asarray(sample_mask)),
        "region_names": list(region_names),
        "versions": {name: versions[name] for name in VERSIONED},
    }


def _short(digest_: dict | None) -> str:
    if digest_ is None:
        return "none"
    return f"{digest_['source']} (sha256 {digest_['sha256'][:12]})"


def differences(old: dict | None, new: dict) -> list[str]:
    """What differs between a recorded fingerprint and a new one, one phrase per difference.

    Examples
    --------
    >>> old = {"parameters": {"detrend": False}}
    >>> differences(old, {"parameters": {"detrend": True}})
    ["parameter 'detrend' was False, now True"]
    """
    if not old:
        return ["it was written without a fingerprint (by an older daskmasker)"]
    out = []
    old_params, new_params = old.get("parameters", {}), new.get("parameters", {})
    for key in sorted(set(old_params) | set(new_params)):
        if old_params.get(key, "<absent>") != new_params.get(key, "<absent>"):
            was, now = old_params.get(key, "<absent>"), new_params.get(key, "<absent>")
            out.append(f"parameter '{key}' was {was}, now {now}")
    for role in ROLES:
        was, now = old.get(role), new.get(role)
        if (was is None) != (now is None):
            out.append(f"{role} was {_short(was)}, now {_short(now)}")
        elif was is not None and was["sha256"] != now["sha256"]:
            out.append(f"{role} content changed: was {_short(was)}, now {_short(now)}")
    if old.get("sample_mask") != new.get("sample_mask"):
        out.append("sample_mask changed (other volumes kept)")
    if old.get("region_names") != new.get("region_names"):
        out.append(f"region names were {old.get('region_names')}, now {new.get('region_names')}")
    old_versions, new_versions = old.get("versions", {}), new.get("versions", {})
    for name in VERSIONED:
        if old_versions.get(name) != new_versions.get(name):
            was, now = old_versions.get(name), new_versions.get(name)
            out.append(f"package '{name}' was {was}, now {now}")
    return out
