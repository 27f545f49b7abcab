"""Extract once, clean many: new cleaning parameters applied to a batch store, no image read.

nilearn cleans *region* signals (``signal.clean`` after the least-squares projection), so the
store's ``raw_signals`` and ``confounds`` are all a new cleaning needs: :func:`reclean` gives the
numbers a full extraction with those parameters gives (the same function on the same float64
values).  Parameters that act before the projection (maps, mask, resampling, smoothing) or read
the voxels (high-variance confounds) cannot change without the images, and are refused by name.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from daskmasker.batch import bids
from daskmasker.batch.dataset import run_dataset
from daskmasker.batch.fingerprint import canonical, differences, fingerprint_sha, sample_mask_sha
from daskmasker.batch.index import completed, entry_of
from daskmasker.batch.provenance import confound_names, versions
from daskmasker.batch.read import open_store
from daskmasker.batch.record import OVERWRITE_HINT, StaleStoreError
from daskmasker.batch.run import BatchResult, finish
from daskmasker.batch.store import (
    listed_runs,
    mark_pending,
    open_output,
    open_run,
    run_attrs,
    write_run,
)
from daskmasker.compute.clean import clean_arrays
from daskmasker.io.checksum import digest
from daskmasker.io.fs import check_folder
from daskmasker.masker.confounds import load_confounds, load_sample_mask
from daskmasker.masker.params import check_params
from daskmasker.masker.transform import clean_kwargs, json_params, output_dtype

CLEANING = (
    "standardize",
    "standardize_confounds",
    "detrend",
    "low_pass",
    "high_pass",
    "t_r",
    "clean_args",
    "dtype",
)
"""Masker parameters a re-clean may change."""
BEFORE_EXTRACTION = {
    "maps_img": "the maps define the regions the voxels are projected on",
    "mask_img": "the mask selects the voxels before the projection",
    "resampling_target": "resampling acts on the voxels before the projection",
    "smoothing_fwhm": "smoothing acts on the voxels before the projection",
    "allow_overlap": "the overlap check is made on the maps at extraction",
    "keep_masked_maps": "it decides which maps are projected",
    "high_variance_confounds": "high-variance confounds are computed from the voxels",
    "region_names": "names are fixed at extraction",
}
"""Masker parameters a re-clean cannot change, and why."""
KEEP = "keep"
"""``confounds``/``sample_masks`` value that keeps those the store's signals were cleaned with."""


def _decode(value: Any) -> Any:
    """A parameter as stored in attributes (:func:`json_params`) back to its value."""
    if value == "None":
        return None
    if isinstance(value, str) and value.startswith("{"):
        return ast.literal_eval(value)
    return value


def _check_requested(params: dict, stored: dict) -> None:
    for name, value in params.items():
        if name in BEFORE_EXTRACTION:
            if json_params({name: value})[name] != stored.get(name):
                raise ValueError(
                    f"parameter '{name}' cannot be changed by re-cleaning: "
                    f"{BEFORE_EXTRACTION[name]} (the store has {stored.get(name)}, asked "
                    f"{value!r}); extract again from the images (daskmasker extract)"
                )
        elif name not in CLEANING:
            raise TypeError(
                f"reclean() got an unexpected parameter '{name}'; re-cleaning parameters are "
                f"{', '.join(CLEANING)}"
            )


def _per_run(value: Any, runs: list[str], label: str) -> dict:
    """``confounds``/``sample_masks`` as {run: value}: KEEP, a mapping, or a list in run order."""
    if isinstance(value, str) and value == KEEP:
        return dict.fromkeys(runs, KEEP)
    if value is None:
        return dict.fromkeys(runs)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(runs))
        if unknown:
            raise ValueError(f"{label} given for runs not in the store: {unknown}")
        return {run: value.get(run, KEEP) for run in runs}
    if isinstance(value, Sequence) and len(value) == len(runs):
        return dict(zip(runs, value, strict=True))
    raise ValueError(
        f"{label} must be '{KEEP}', None, a dict by run, or one entry per run in the store's "
        f"order ({len(runs)} runs: {runs}); got {type(value).__name__}"
        + (f" of length {len(value)}" if isinstance(value, Sequence) else "")
    )


def reclean(
    store: str,
    out: str,
    *,
    confounds: Any = KEEP,
    sample_masks: Any = KEEP,
    overwrite: bool = False,
    storage_options: dict | None = None,
    tsv_dir: str | None = None,
    atlas_label: str | None = None,
    **params: Any,
) -> BatchResult:
    """Clean a batch store's raw region signals again, into a new store, reading no image.

    Parameters
    ----------
    store : str
        A batch store written by :func:`~daskmasker.batch.run.run_batch` (or by this function).
    out : str
        The new store (same layout, re-cleanable again).
    confounds : 'keep', None, dict or sequence, default='keep'
        'keep' the confounds stored; None for none; or per run (a dict by run name, or one
        entry per complete run in sorted order) anything ``transform`` accepts, 'keep' or None.
        High-variance confounds, computed from the voxels at extraction, stay in front.
    sample_masks : 'keep', None, dict or sequence, default='keep'
        The volumes to keep, as ``confounds`` (None keeps all of them).
    overwrite : bool, default=False
        Replace an existing output store.
    storage_options : dict, optional
        fsspec options for both stores.
    tsv_dir : str, optional
        Also write BIDS derivatives there (:mod:`daskmasker.batch.bids`), as ``run_batch``.
    atlas_label : str, optional
        The ``atlas`` entity of the BIDS file names; by default from the maps' file name.
    **params
        New values of the cleaning parameters (``standardize``, ``standardize_confounds``,
        ``detrend``, ``low_pass``, ``high_pass``, ``t_r``, ``clean_args``, ``dtype``); the others
        keep the store's.  Maps, mask, resampling, smoothing, overlap and high-variance
        confounds cannot change (``ValueError`` naming the parameter).

    Returns
    -------
    BatchResult
    """
    source, root_attrs = open_store(store, storage_options)
    runs = sorted(listed_runs(source))
    stored = dict(root_attrs.get("daskmasker_batch", {}).get("parameters", {}))
    _check_requested(params, stored)
    merged = {k: _decode(v) for k, v in stored.items() if k in CLEANING}
    merged.update(params)
    check_params(merged)
    new_params = {**stored, **json_params(params)}
    conf_by_run = _per_run(confounds, runs, "confounds")
    mask_by_run = _per_run(sample_masks, runs, "sample_masks")
    if tsv_dir is not None:  # before the store is created
        check_folder(tsv_dir, storage_options)
    location = open_output(out, new_params, overwrite, storage_options, recleaned_from=str(store))
    source_attrs = run_attrs(source, runs)
    stems, uris = _plan_bids(source_attrs, runs, stored, tsv_dir, atlas_label, storage_options)
    result = BatchResult(store=str(out), action="re-cleaned")
    done = completed(location)
    planned, stale = {}, []
    differing = []
    for run in runs:
        fp = _new_fingerprint(source_attrs[run], new_params, conf_by_run[run], mask_by_run[run])
        if run not in done:
            planned[run] = fp
        elif done[run].get("fingerprint") == fingerprint_sha(fp):
            result.skipped.append(run)
        else:
            differing.append((run, fp))
    recorded = run_attrs(location, [run for run, _ in differing])
    for run, fp in differing:
        diffs = differences(recorded.get(run, {}).get("fingerprint"), fp)
        stale.append(f"run {run}: {'; '.join(diffs) or 'recorded otherwise'}")
    if stale:
        raise StaleStoreError(
            f"{out} holds complete runs cleaned otherwise:\n"
            + "\n".join(stale)
            + f"\n{OVERWRITE_HINT}"
        )
    index = dict(done)
    if planned:
        mark_pending(location)
    try:
        for run, fp in planned.items():
            ds = open_run(source, run)
            attrs = source_attrs[run]
            try:
                cleaned = _clean_run(ds, attrs, merged, conf_by_run[run], mask_by_run[run], params)
            except Exception as exc:  # a run that cannot be cleaned so fails alone, as extract
                result.failed[run] = f"{type(exc).__name__}: {exc}"
                continue
            new_attrs = {
                **attrs,
                "parameters": new_params,
                "versions": versions(),
                "fingerprint": fp,
                "recleaned_from": {"store": str(store), "run": run},
                **cleaned["attrs"],
            }
            out_ds = run_dataset(
                cleaned["signals"],
                ds["raw_signals"].values,
                cleaned["confounds"],
                frames=cleaned["frames"],
                region=ds["region"].values,
                region_names=[str(n) for n in ds["region_name"].values],
                confound_names=cleaned["confound_names"],
                t_r=new_attrs["t_r"],
                attrs=new_attrs,
            )
            if tsv_dir is not None:  # before the run is written, as in run_batch
                sources = (uris[run],) if run in uris else ()
                texts = bids.run_files(out_ds, stems[run], str(stored.get("maps_img")), sources)
                bids.write_files(tsv_dir, texts, storage_options)
            write_run(location, run, out_ds)
            index[run] = entry_of(fp)
            result.done.append(run)
    finally:
        finish(location, index, redone=result.done)
    return result


def _plan_bids(
    attrs: Mapping[str, dict],
    runs: Sequence[str],
    stored: Mapping[str, Any],
    root: str | None,
    atlas_label: str | None,
    storage_options: dict | None,
) -> tuple[dict[str, str], dict[str, str]]:
    """The BIDS destinations of the runs (``dataset_description.json`` written now)."""
    if root is None:
        return {}, {}
    from importlib.metadata import version

    atlas = bids.atlas_label(stored.get("maps_img"), atlas_label)
    sources = {run: str(attrs[run].get("source") or run) for run in runs}
    stems, uris, _ = bids.start(root, sources, atlas, version("daskmasker"), storage_options)
    return stems, uris


def _new_fingerprint(attrs: dict, new_params: dict, conf: Any, mask: Any) -> dict:
    """The run's fingerprint with the new cleaning: what a full extraction would record."""
    old = attrs["fingerprint"]
    fp = {**old, "parameters": {**old["parameters"]}}
    for name in CLEANING:
        fp["parameters"][name] = canonical(new_params[name])
    if not (isinstance(conf, str) and conf == KEEP):
        fp["confounds"] = digest(conf)
    if not (isinstance(mask, str) and mask == KEEP):
        fp["sample_mask"] = sample_mask_sha(mask)
    fp["versions"] = {name: versions()[name] for name in old["versions"]}
    return fp


def _clean_run(
    ds: xr.Dataset, attrs: dict, merged: dict, conf: Any, mask: Any, params: dict
) -> dict[str, Any]:
    """The new cleaned signals of one run and what changes in its Dataset."""
    raw = ds["raw_signals"].values
    n_scans = raw.shape[0]
    stored_conf = ds["confounds"].values if "confounds" in ds else None
    n_hv = int(attrs.get("n_high_variance_confounds", 0))
    names = [str(n) for n in ds["confound"].values] if stored_conf is not None else None
    extra: dict[str, Any] = {}
    if not (isinstance(conf, str) and conf == KEEP):
        user = load_confounds(conf, n_scans)
        kept = stored_conf[:, :n_hv] if n_hv and stored_conf is not None else None
        parts = [p for p in (kept, user) if p is not None]
        stored_conf = np.hstack(parts) if len(parts) > 1 else (parts[0] if parts else None)
        names = confound_names(conf, n_scans, n_hv) if stored_conf is not None else None
        source = digest(conf)
        extra["confounds_source"] = "" if source is None else str(source["source"])
        extra["confounds_checksum"] = "" if source is None else f"sha256:{source['sha256']}"
    if isinstance(mask, str) and mask == KEEP:
        given = attrs["fingerprint"].get("sample_mask") is not None
        mask_idx = ds["frame"].values.astype(np.int32) if given else None
    else:
        mask_idx = load_sample_mask(mask, n_scans)
    if "dtype" in params:
        dtypes = attrs["dtypes"]
        out_dtype = output_dtype(dtypes["pipeline"], np.dtype(dtypes["source"]), params["dtype"])
    else:
        out_dtype = ds["signals"].dtype
    clean_args = merged.get("clean_args") or {}
    cleaned = clean_arrays(
        raw, confounds=stored_conf, sample_mask=mask_idx, **clean_kwargs(merged, clean_args)
    )
    t_r = merged["t_r"] or attrs.get("header_t_r")
    extra["t_r"] = float(t_r) if t_r else None
    extra["t_r_source"] = (
        "t_r parameter" if merged["t_r"] else ("image header" if t_r else "unknown")
    )
    return {
        "signals": np.asarray(cleaned).astype(out_dtype, copy=False),
        "confounds": stored_conf,
        "confound_names": names,
        "frames": np.arange(n_scans) if mask_idx is None else mask_idx,
        "attrs": extra,
    }
