"""Connectomes of a batch store as BIDS derivatives: :func:`write_relmats`.

Beside each run's ``*_timeseries.tsv`` (:mod:`daskmasker.batch.bids`), one relationship matrix
per kind, named as the BEP017 draft and giga_connectome name theirs::

    sub-01/[ses-1/]func/sub-01_[ses-1_]task-rest_[run-1_][space-X_]atlas-<label>_meas-<Measure>_relmat.tsv
                        a header row of region names, then one row per region
    sub-01/.../..._meas-<Measure>_relmat.json
                        Measure, MeasureDescription, Weighted, Directed, ValidDiagonal,
                        StorageFormat, Sources (the time series, when beside), and the
                        computation under "daskmasker" (kind, estimator, kept frames)
    group/[<entities all runs share>_]atlas-<label>_meas-<Measure>_desc-mean_relmat.tsv (+ .json)
                        nilearn's ``mean_``: the geometric mean of the covariances for tangent
                        (and its ``whitening_``, ``desc-whitening``), else the mean matrix

Measures: ``correlation`` -> ``PearsonCorrelation`` (giga_connectome's label for the same
nilearn computation), ``partial correlation`` -> ``PartialCorrelation``, ``covariance`` ->
``Covariance``, ``precision`` -> ``Precision``, ``tangent`` -> ``Tangent``.  Each chunk of runs
writes its own files from the task that computed them; only the group means reach the client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import PurePosixPath

import dask
import dask.array as da
import fsspec
import numpy as np
import xarray as xr

from daskmasker.batch import bids
from daskmasker.batch.connectivity import connectivity_measure
from daskmasker.compute.connectivity import KINDS, check_kind
from daskmasker.compute.regression import one_blas_thread
from daskmasker.io.fs import check_folder
from daskmasker.runtime.client import active_client

MEASURES = {
    "correlation": "PearsonCorrelation",
    "partial correlation": "PartialCorrelation",
    "covariance": "Covariance",
    "precision": "Precision",
    "tangent": "Tangent",
}

_DESCRIPTIONS = {
    "correlation": "Pearson correlation of the run's region time series (kept frames only), "
    "from their Ledoit-Wolf shrunk covariance after z-scoring (nilearn's ConnectivityMeasure"
    "(kind='correlation'))",
    "partial correlation": "partial correlation of the run's region time series (kept frames "
    "only), from the inverse of their Ledoit-Wolf shrunk covariance (nilearn's "
    "ConnectivityMeasure(kind='partial correlation'))",
    "covariance": "Ledoit-Wolf shrunk covariance of the run's region time series (kept frames "
    "only) (nilearn's ConnectivityMeasure(kind='covariance'))",
    "precision": "inverse of the Ledoit-Wolf shrunk covariance of the run's region time series "
    "(kept frames only) (nilearn's ConnectivityMeasure(kind='precision'))",
    "tangent": "tangent-space embedding: the matrix logarithm of the run's Ledoit-Wolf shrunk "
    "covariance whitened by the geometric mean of all the runs' covariances (nilearn's "
    "ConnectivityMeasure(kind='tangent'); the mean is the group file)",
}

_PER_RUN = ("sub", "ses", "run")  # entities that name one run, not a group


def write_relmats(
    store: str, out_dir: str, kinds: Sequence[str], storage_options: dict | None = None
) -> list[str]:
    """Write each run's connectivity matrices of ``kinds`` as BIDS-derivative ``*_relmat.tsv``
    with JSON sidecars, and the group means, under ``out_dir``.

    Parameters
    ----------
    store : str
        A batch store (path or URL), opened with :func:`daskmasker.open_timeseries`.
    out_dir : str
        The BIDS derivatives folder (path or URL), usually the one holding the runs'
        ``*_timeseries.tsv``; a ``dataset_description.json`` is written if there is none.
    kinds : sequence of str
        nilearn's kinds: ``correlation``, ``partial correlation``, ``covariance``,
        ``precision``, ``tangent`` (computed together: the store is read once).
    storage_options : dict, optional
        fsspec options for the store and ``out_dir``.

    Returns
    -------
    list of str
        The files written, relative to ``out_dir``.
    """
    from daskmasker.batch.read import open_timeseries

    kinds = _check_kinds(kinds)
    ds = open_timeseries(store, storage_options=storage_options)
    atlas = _atlas(store, ds, storage_options)
    return write_dataset_relmats(ds, out_dir, kinds, atlas, storage_options)


def _check_kinds(kinds: Sequence[str]) -> list[str]:
    if isinstance(kinds, str):
        kinds = [kinds]
    kinds = list(kinds)
    if not kinds:
        raise ValueError(f"give at least one kind of connectivity, among {list(KINDS)}")
    for kind in kinds:
        check_kind(kind)
    return list(dict.fromkeys(kinds))


def _atlas(store: str, ds: xr.Dataset, storage_options: dict | None) -> str:
    """The ``atlas`` label of the store's time series: its maps' file name, as ``extract``
    labels its TSVs."""
    if ds.attrs.get("atlas"):
        return bids.atlas_label(None, str(ds.attrs["atlas"]))
    from daskmasker.batch.read import open_store
    from daskmasker.batch.store import BATCH_ATTR

    _, attrs = open_store(store, storage_options)
    maps = dict(attrs[BATCH_ATTR]).get("parameters", {}).get("maps_img")
    return bids.atlas_label(maps)


def write_dataset_relmats(
    ds: xr.Dataset,
    out_dir: str,
    kinds: Sequence[str],
    atlas: str,
    storage_options: dict | None = None,
) -> list[str]:
    """:func:`write_relmats` on an opened Dataset, whose time series are labelled ``atlas``."""
    kinds = _check_kinds(kinds)
    atlas = bids.atlas_label(None, atlas)
    stems = run_stems(ds, atlas)
    check_folder(out_dir, storage_options)
    existing = bids.read_json(out_dir, "dataset_description.json", storage_options)
    written = []
    if existing is None:
        description = bids.dataset_description(version("daskmasker"), {})
        description["Name"] = "daskmasker region time series and connectivity"
        bids.write_files(
            out_dir, {"dataset_description.json": bids.to_json(description)}, storage_options
        )
        written.append("dataset_description.json")
    else:
        bids.dataset_description(version("daskmasker"), {}, existing)  # refuses others' folders
    present = _present(out_dir, storage_options)
    group_stem = _group_stem(stems)
    columns = [str(n) for n in ds["region_name"].values] if "region_name" in ds.coords else None
    tasks, means = [], []
    for kind in kinds:
        measured = connectivity_measure(ds, kind)
        matrices = measured["connectivity"]
        columns = columns or [str(r) for r in matrices["region"].values]
        names = [f"{stem}_meas-{MEASURES[kind]}_relmat" for stem in stems]
        group = f"{group_stem}_meas-{MEASURES[kind]}"
        sidecars = np.array(
            [
                bids.to_json(_sidecar(kind, stem, int(n), present, group))
                for stem, n in zip(stems, ds["n_frames"].values, strict=True)
            ],
            dtype=object,
        )
        chunks = (matrices.data.chunks[0],)
        tasks.append(
            da.map_blocks(
                _write_block,
                matrices.data,
                da.from_array(np.array(names, dtype=object), chunks=chunks)[:, None, None],
                da.from_array(sidecars, chunks=chunks)[:, None, None],
                out_dir,
                columns,
                storage_options,
                chunks=((1,) * matrices.data.numblocks[0],),
                drop_axis=[1, 2],
                dtype=np.int64,
            ).sum()
        )
        written.extend(f"{name}.{ext}" for name in names for ext in ("tsv", "json"))
        means.append((kind, group, measured["mean"].data, measured.get("whitening")))
    arrays = [m for _, _, m, w in means] + [w.data for *_, w in means if w is not None]
    # locally, BLAS stays on one thread for the whole computation: the tasks limit it each, but
    # lifting and setting the limit between the tangent's descent steps cost more than the steps
    held = one_blas_thread() if active_client() is None else contextlib.nullcontext()
    with held:
        _, *values = dask.compute(tasks, *arrays)
    whitenings = iter(values[len(means) :])
    assert columns is not None  # set by the loop over kinds, which _check_kinds keeps non-empty
    texts = {}
    for (kind, group, _, whitening), mean in zip(means, values[: len(means)], strict=True):
        texts[f"{group}_desc-mean_relmat.tsv"] = bids.tsv_text(mean, columns)
        texts[f"{group}_desc-mean_relmat.json"] = bids.to_json(_group_sidecar(kind, "mean", stems))
        if whitening is not None:
            texts[f"{group}_desc-whitening_relmat.tsv"] = bids.tsv_text(next(whitenings), columns)
            texts[f"{group}_desc-whitening_relmat.json"] = bids.to_json(
                _group_sidecar(kind, "whitening", stems)
            )
    bids.write_files(out_dir, texts, storage_options)
    return written + list(texts)


def _write_block(
    matrices: np.ndarray,
    names: np.ndarray,
    sidecars: np.ndarray,
    root: str,
    columns: Sequence[str],
    storage_options: dict | None,
) -> np.ndarray:
    texts = {}
    for matrix, name, sidecar in zip(matrices, names.ravel(), sidecars.ravel(), strict=True):
        texts[f"{name}.tsv"] = bids.tsv_text(matrix, columns)
        texts[f"{name}.json"] = sidecar
    bids.write_files(root, texts, storage_options)
    return np.array([len(matrices)])


def run_stems(ds: xr.Dataset, atlas: str) -> list[str]:
    """Each run's derivative path without suffix (``sub-01/func/sub-01_task-rest_atlas-X``):
    its time series TSV's, from the run's ``source`` file name when the store has it, else from
    its BIDS entity coordinates (``subject``, ``session``, ``task``, ``acquisition``, ``space``,
    ...; the BIDS ``run`` only from ``source``: a coordinate named ``run`` is the run axis's
    index)."""
    n_runs = ds.sizes["run"]
    if "source" in ds.coords and ds["source"].dims == ("run",):
        stems = [
            bids.derivative_path(str(s), atlas).removesuffix("_timeseries")
            for s in ds["source"].values
        ]
    else:
        stems = [_stem_from_entities(ds, i, atlas) for i in range(n_runs)]
    seen: dict[str, int] = {}
    for i, stem in enumerate(stems):
        if stem in seen:
            raise ValueError(
                f"runs {_run_name(ds, seen[stem])!r} and {_run_name(ds, i)!r} would both be "
                f"written to {stem}_meas-..._relmat.tsv: their BIDS entities are the same"
            )
        seen[stem] = i
    return stems


def _run_name(ds: xr.Dataset, i: int) -> object:
    return ds["run"].values[i].item() if "run" in ds.coords else i


def _entity_names() -> dict[str, str]:
    """BIDS entity short names (``sub``) by their long names (``subject``), from the schema."""
    schema = bids.bids_schema()
    return {key: schema.objects.entities[key]["name"] for key in schema.rules.entities}


def _stem_from_entities(ds: xr.Dataset, i: int, atlas: str) -> str:
    entities = {}
    for long, short in _entity_names().items():
        if short in bids.DROPPED or long not in ds.coords or ds[long].dims != ("run",):
            continue
        if long in ds.indexes:  # the run axis's own names (``run``), not the BIDS entity
            continue
        value = str(ds[long].values[i])
        if value:
            entities[short] = value
    if "sub" not in entities:
        raise ValueError(
            f"run {_run_name(ds, i)!r} has no 'subject' (nor 'source') coordinate to name its "
            "BIDS files after"
        )
    entities["atlas"] = atlas
    order = bids.entity_order()
    stem = "_".join(f"{k}-{entities[k]}" for k in order if k in entities)
    folder = f"sub-{entities['sub']}/" + (f"ses-{entities['ses']}/" if "ses" in entities else "")
    return f"{folder}{bids.DEFAULT_DATATYPE}/{stem}"


def _group_stem(stems: Sequence[str]) -> str:
    """``group/<entities every run shares, but sub/ses/run>``, atlas included."""
    parsed = [bids.split_name(PurePosixPath(s).name + "_x")[0] for s in stems]
    common = {
        k: v
        for k, v in parsed[0].items()
        if k not in _PER_RUN and all(p.get(k) == v for p in parsed)
    }
    order = bids.entity_order()
    return "group/" + "_".join(f"{k}-{common[k]}" for k in order if k in common)


def _present(root: str, storage_options: dict | None) -> set[str]:
    fs, _, (base,) = fsspec.get_fs_token_paths(root, storage_options=storage_options or {})
    if not fs.exists(base):
        return set()
    return {path[len(base.rstrip("/")) + 1 :] for path in fs.find(base)}


def _sidecar(kind: str, stem: str, n_frames: int, present: set[str], group: str) -> dict:
    out = {
        "Measure": MEASURES[kind],
        "MeasureDescription": _DESCRIPTIONS[kind],
        "Weighted": True,
        "Directed": False,
        "ValidDiagonal": kind not in ("correlation", "partial correlation"),
        "StorageFormat": "Full",
    }
    sources = [f"bids::{stem}_timeseries.tsv"] if f"{stem}_timeseries.tsv" in present else []
    if kind == "tangent":
        sources.append(f"bids::{group}_desc-mean_relmat.tsv")
    if sources:
        out["Sources"] = sources
    out["daskmasker"] = {
        "version": version("daskmasker"),
        "kind": kind,
        "cov_estimator": "LedoitWolf(store_precision=False)",
        "n_frames": n_frames,
        "nilearn": f"ConnectivityMeasure(kind={kind!r}).fit_transform: equal within 1e-10",
    }
    return out


def _group_sidecar(kind: str, what: str, stems: Sequence[str]) -> dict:
    if what == "whitening":
        description = (
            "nilearn's ConnectivityMeasure(kind='tangent').whitening_: the inverse square root "
            "of the geometric mean of the runs' covariances"
        )
    elif kind == "tangent":
        description = (
            "nilearn's ConnectivityMeasure(kind='tangent').mean_: the geometric mean of the "
            "runs' Ledoit-Wolf shrunk covariances (the tangent space's reference point)"
        )
    else:
        description = (
            f"nilearn's ConnectivityMeasure(kind={kind!r}).mean_: the mean of the runs' "
            "matrices, made symmetric"
        )
    return {
        "Measure": MEASURES[kind],
        "MeasureDescription": description,
        "Weighted": True,
        "Directed": False,
        "StorageFormat": "Full",
        "Sources": [f"bids::{stem}_meas-{MEASURES[kind]}_relmat.tsv" for stem in stems],
        "daskmasker": {"version": version("daskmasker"), "kind": kind, "runs": len(stems)},
    }
