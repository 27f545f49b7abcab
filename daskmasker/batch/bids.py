"""BIDS-derivatives outputs of a batch: one ``*_timeseries.tsv`` per run, with a JSON sidecar.

Layout (BIDS 1.11 derivatives; the entity order, the known entities and the BIDS version come
from the BIDS schema, through ``bidsschematools``)::

    <out>/dataset_description.json          DatasetType "derivative", GeneratedBy, SourceDatasets
    <out>/sub-01/[ses-1/]func/sub-01_[ses-1_]task-rest_[run-1_][space-X_]atlas-<label>_timeseries.tsv
                                            a header row of region names; n/a for missing values
    <out>/sub-01/[ses-1/]func/..._timeseries.json
                                            SamplingFrequency (1/TR, null when unknown), StartTime,
                                            Columns, one {"Description", "Units"} per column,
                                            Sources, the run's provenance under "daskmasker"
                                            (with the maps' coverage by the run's brain mask),
                                            and "Denoising" (strategy, parameters, volumes
                                            removed) for runs denoised from fMRIPrep confounds

The source's entities are kept (``sub``, ``ses``, ``task``, ``acq``, ``ce``, ``rec``, ``dir``,
``run``, ``echo``, ``space``, ``res``, ``den``, ... any entity the schema knows), its ``desc``
(which describes the source's processing, not ours) and suffix are dropped, and
``atlas-<label>`` is added.  A source name that is not BIDS (``run1.nii.gz``) becomes
``sub-run1`` with a warning.
"""

from __future__ import annotations

import functools
import json
import math
import re
import warnings
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np

if TYPE_CHECKING:
    import xarray as xr
    from bidsschematools.types import Namespace

_EXTENSION = re.compile(r"(\.[A-Za-z0-9]+)+$")
_LABEL = re.compile(r"^[A-Za-z0-9]+$")
DROPPED = ("desc", "atlas")  # the source's processing description; ours replaces its atlas
DEFAULT_DATATYPE = "func"


@functools.cache
def bids_schema() -> Namespace:
    """The BIDS schema (bidsschematools), loaded once per process."""
    from bidsschematools import schema

    return schema.load_schema()


def entity_order() -> list[str]:
    """The entities' short names (``sub``, ``ses``, ...) in the order BIDS file names use."""
    return list(_entity_order())


@functools.cache
def _entity_order() -> tuple[str, ...]:
    # computed once: each lookup in the schema's namespace costs ~5 ms (1,000 runs: 4 s)
    schema = bids_schema()
    return tuple(schema.objects.entities[key]["name"] for key in schema.rules.entities)


def bids_version() -> str:
    """The BIDS version of the schema the names follow."""
    return str(bids_schema().bids_version)


def parse_name(name: str) -> tuple[dict[str, str], str | None]:
    """The entities and suffix of a BIDS file name, or ``({}, None)`` if it is not one.

    Examples
    --------
    >>> parse_name("sub-01_ses-1_task-rest_desc-preproc_bold.nii.gz")
    ({'sub': '01', 'ses': '1', 'task': 'rest', 'desc': 'preproc'}, 'bold')
    >>> parse_name("run1.nii.gz")
    ({}, None)
    """
    entities, suffix = split_name(name)
    return (entities, suffix) if "sub" in entities else ({}, None)


def split_name(name: str) -> tuple[dict[str, str], str | None]:
    """``key-value`` pairs and suffix of any BIDS-style name (``tpl-MNI_atlas-X_dseg`` too)."""
    stem = _EXTENSION.sub("", PurePosixPath(name).name)
    *pairs, suffix = stem.split("_")
    entities = {}
    for pair in pairs:
        key, _, value = pair.partition("-")
        if not _LABEL.match(key) or not _LABEL.match(value) or key in entities:
            return {}, None
        entities[key] = value
    return (entities, suffix) if entities and _LABEL.match(suffix) else ({}, None)


def label(text: str) -> str:
    """``text`` as a BIDS label: its letters and digits only (``"DiFuMo_64"`` -> ``"DiFuMo64"``)."""
    return re.sub(r"[^A-Za-z0-9]", "", text)


def atlas_label(maps: Any, given: str | None = None) -> str:
    """The ``atlas-<label>`` of the outputs: ``given``, else from the maps' file name.

    A BIDS maps name gives its ``atlas`` (or ``seg``) entity, any other name its letters and
    digits (``DiFuMo_64dim.nii.gz`` -> ``DiFuMo64dim``); in-memory maps give ``maps`` (with a
    warning to pass a label).
    """
    if given is not None:
        if not _LABEL.match(given):
            raise ValueError(
                f"atlas label {given!r} is not a BIDS label (letters and digits only), "
                f"e.g. {label(given) or 'DiFuMo64'!r}"
            )
        return given
    if isinstance(maps, str) or hasattr(maps, "__fspath__"):
        entities, _ = split_name(str(maps))
        found = entities.get("atlas") or entities.get("seg")
        found = found or label(_EXTENSION.sub("", PurePosixPath(str(maps)).name))
        if found:
            return found
    warnings.warn(
        "the maps have no file name to label the BIDS outputs with: atlas-maps is used; "
        "pass atlas_label (--atlas-label) to name the atlas",
        stacklevel=3,
    )
    return "maps"


def derivative_path(source: str, atlas: str) -> str:
    """The path of a run's TSV (without extension), relative to the derivatives' root.

    Examples
    --------
    >>> derivative_path(
    ...     "/data/sub-01/ses-1/func/sub-01_ses-1_task-rest_run-1_"
    ...     "space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz", "DiFuMo64")
    'sub-01/ses-1/func/sub-01_ses-1_task-rest_run-1_space-MNI152NLin2009cAsym_atlas-DiFuMo64_timeseries'
    """
    entities, suffix = parse_name(source)
    name = PurePosixPath(source).name
    if suffix is None:
        fallback = label(_EXTENSION.sub("", name)) or "unknown"
        warnings.warn(
            f"{source!r} is not a BIDS file name (sub-<label>[_<entity>-<label>...]_<suffix>): "
            f"its time series are written as subject {fallback!r}",
            stacklevel=3,
        )
        entities = {"sub": fallback}
    order = entity_order()
    unknown = sorted(set(entities) - set(order))
    if unknown:
        warnings.warn(
            f"{source!r}: entities {unknown} are not BIDS entities and are left out of the "
            "output name",
            stacklevel=3,
        )
    kept = {k: v for k, v in entities.items() if k in order and k not in DROPPED}
    kept["atlas"] = atlas
    parent = PurePosixPath(source).parent.name
    datatype = parent if parent in bids_schema().objects.datatypes else DEFAULT_DATATYPE
    folder = f"sub-{kept['sub']}/" + (f"ses-{kept['ses']}/" if "ses" in kept else "")
    stem = "_".join(f"{k}-{kept[k]}" for k in order if k in kept)
    return f"{folder}{datatype}/{stem}_timeseries"


def source_dataset(source: str) -> tuple[str, str] | None:
    """``(dataset root, path in it)`` of a source in a BIDS tree, or None.

    Examples
    --------
    >>> source_dataset("s3://bucket/ds001/sub-01/func/sub-01_task-rest_bold.nii.gz")
    ('s3://bucket/ds001', 'sub-01/func/sub-01_task-rest_bold.nii.gz')
    """
    entities, _ = parse_name(source)
    if "sub" not in entities:
        return None
    parts = source.split("/")
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == f"sub-{entities['sub']}":
            return "/".join(parts[:i]) or "/", "/".join(parts[i:])
    return None


def sidecar(
    columns: Sequence[str],
    regions: Sequence[int],
    maps: str,
    t_r: float | None,
    start_time: float | None,
    provenance: dict,
    parameters: dict,
    sources: Sequence[str] = (),
    volumes: Sequence[int] | None = None,
) -> dict:
    """The JSON sidecar of a ``*_timeseries.tsv``: sampling, columns, sources, provenance.

    ``columns`` are the TSV's column names, ``regions`` the indices of their maps in ``maps``
    (a description of the maps image); ``provenance``, the masker's ``parameters`` and the
    ``volumes`` kept by a sample mask go under the key ``"daskmasker"``.
    """
    out: dict[str, Any] = {
        "SamplingFrequency": None if not t_r else 1.0 / t_r,
        "StartTime": start_time,
        "Columns": list(columns),
    }
    if sources:
        out["Sources"] = list(sources)
    for column, region in zip(columns, regions, strict=True):
        out[column] = {
            "Description": f"time series of map {int(region)} of {maps}: the least-squares "
            "fit of the maps to each volume, cleaned with the masker's parameters",
            "Units": "arbitrary",
        }
    out["daskmasker"] = {**provenance, "parameters": parameters}
    if volumes is not None:
        out["daskmasker"]["volumes"] = list(volumes)
    return out


def dataset_description(
    version: str, sources: dict[str, str], existing: dict | None = None
) -> dict:
    """``dataset_description.json`` of the derivatives, merged with an existing one of ours.

    ``sources`` maps the ``DatasetLinks`` names used in the sidecars' ``Sources`` URIs
    (``bids:<name>:sub-01/...``) to the source datasets' URLs.
    """
    if existing is not None and not any(
        g.get("Name") == "daskmasker" for g in existing.get("GeneratedBy", ())
    ):
        raise ValueError(
            "the BIDS output folder has a dataset_description.json not generated by daskmasker "
            f"({existing.get('GeneratedBy')!r}); derivatives of different pipelines go in "
            "separate folders"
        )
    links = dict((existing or {}).get("DatasetLinks", {}))
    links.update(sources)
    out: dict[str, Any] = {
        "Name": "daskmasker region time series",
        "BIDSVersion": bids_version(),
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "daskmasker", "Version": version}],
    }
    if links:
        out["DatasetLinks"] = links
        out["SourceDatasets"] = [{"URL": url} for url in sorted(set(links.values()))]
    return out


def tsv_text(signals: np.ndarray, columns: Sequence[str]) -> str:
    r"""A BIDS TSV: a header row, values that read back exactly, ``n/a`` for missing ones.

    Examples
    --------
    >>> tsv_text(np.array([[0.1, np.nan]], dtype=np.float32), ["a", "b"])
    'a\tb\n0.1\tn/a\n'
    """
    lines = ["\t".join(columns)]
    for row in np.asarray(signals):
        # str of a NumPy float: the shortest text that reads back as the same float32/float64
        lines.append("\t".join("n/a" if np.isnan(v) else str(v) for v in row))
    return "\n".join(lines) + "\n"


def to_json(value: Any) -> str:
    """JSON with nulls for None and NaN (never ``"None"``, ``NaN`` or ``Infinity``)."""
    return json.dumps(_nulls(value), indent=2, allow_nan=False)


def _nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _nulls(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nulls(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_files(root: str, texts: dict[str, str], storage_options: dict | None = None) -> None:
    """Write ``{relative path: text}`` under ``root``, each file atomically (``.partial``, move)."""
    fs, _, (base,) = fsspec.get_fs_token_paths(root, storage_options=storage_options or {})
    for relative, text in texts.items():
        path = f"{base.rstrip('/')}/{relative}"
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.partial"
        with fs.open(tmp, "w") as f:
            f.write(text)
        fs.mv(tmp, path)


def read_json(root: str, relative: str, storage_options: dict | None = None) -> dict | None:
    """A JSON file under ``root``, or None if there is none."""
    fs, _, (base,) = fsspec.get_fs_token_paths(root, storage_options=storage_options or {})
    path = f"{base.rstrip('/')}/{relative}"
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        return json.load(f)


def plan(
    sources: dict[str, str], atlas: str, links: dict[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Where each run's outputs go, checked before any is computed.

    Parameters
    ----------
    sources : dict
        Run name -> its source's path or URL (or its name, for in-memory images).
    atlas : str
        The ``atlas`` label.
    links : dict, optional
        ``DatasetLinks`` already in the output's ``dataset_description.json``.

    Returns
    -------
    (stems, uris, links)
        Run name -> TSV path without extension, relative to the root; run name -> its source's
        BIDS URI (``bids:<link>:sub-01/...``, for runs inside a BIDS tree); the ``DatasetLinks``.

    Raises
    ------
    ValueError
        When two runs would be written to the same file.
    """
    links = dict(links or {})
    stems: dict[str, str] = {}
    uris: dict[str, str] = {}
    owner: dict[str, str] = {}
    for name, source in sources.items():
        stem = derivative_path(source, atlas)
        if stem in owner:
            raise ValueError(
                f"runs {owner[stem]!r} ({sources[owner[stem]]}) and {name!r} ({source}) would "
                f"both be written to {stem}.tsv: give them distinct BIDS file names"
            )
        owner[stem], stems[name] = name, stem
        found = source_dataset(source)
        if found is not None:
            root, relative = found
            key = next((k for k, url in links.items() if url == root), None)
            if key is None:
                key = f"source{len(links) + 1}" if links else "source"
                links[key] = root
            uris[name] = f"bids:{key}:{relative}"
    return stems, uris, links


def start(
    root: str,
    sources: dict[str, str],
    atlas: str,
    version: str,
    storage_options: dict | None = None,
) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """Plan a batch's BIDS outputs (:func:`plan`) and write ``dataset_description.json``,
    before any run is computed.

    Returns
    -------
    (stems, uris, present)
        As :func:`plan`, and the paths of the files already under ``root`` (relative to it).
    """
    existing = read_json(root, "dataset_description.json", storage_options)
    stems, uris, links = plan(sources, atlas, (existing or {}).get("DatasetLinks"))
    description = to_json(dataset_description(version, links, existing))
    write_files(root, {"dataset_description.json": description}, storage_options)
    fs, _, (base,) = fsspec.get_fs_token_paths(root, storage_options=storage_options or {})
    present = {path[len(base.rstrip("/")) + 1 :] for path in fs.find(base)}
    return stems, uris, present


def run_files(ds: xr.Dataset, stem: str, maps: str, sources: Sequence[str] = ()) -> dict[str, str]:
    """The TSV and JSON sidecar of one run, from its Dataset in the batch store
    (:func:`daskmasker.batch.dataset.run_dataset`): columns from ``region_name``, timing from
    ``t_r`` and ``frame``, provenance from its attributes."""
    frames = ds["frame"].values
    start_time = float(frames[0] * ds.attrs["t_r"]) if ds.attrs.get("t_r") else None
    if start_time is None and frames.size and frames[0] == 0:
        start_time = 0.0
    attrs = ds.attrs
    masked = (attrs.get("fingerprint") or {}).get("sample_mask") is not None
    columns = [str(n) for n in ds["region_name"].values]
    meta = sidecar(
        columns=columns,
        regions=ds["region"].values.tolist(),
        maps=maps,
        t_r=attrs.get("t_r"),
        start_time=start_time,
        provenance={
            "source": attrs["source"],
            "checksum": attrs.get("checksum") or None,
            "versions": attrs["versions"],
        },
        parameters={k: None if v == "None" else v for k, v in attrs["parameters"].items()},
        sources=sources,
        volumes=frames.tolist() if masked else None,
    )
    if attrs.get("denoise"):
        meta["Denoising"] = attrs["denoise"]
    if "coverage" in ds:
        low = set(attrs.get("low_coverage_regions") or [])
        meta["daskmasker"]["coverage"] = {
            "BrainMask": attrs.get("brain_mask_source") or None,
            "MinCoverage": attrs.get("min_coverage"),
            "Coverage": dict(zip(columns, ds["coverage"].values.tolist(), strict=True)),
            "BelowMinCoverage": [
                c for c, k in zip(columns, ds["region"].values.tolist(), strict=True) if k in low
            ],
        }
    return {f"{stem}.tsv": tsv_text(ds["signals"].values, columns), f"{stem}.json": to_json(meta)}
