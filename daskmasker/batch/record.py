"""What a batch records for each run: its fingerprint, checked on reruns, and its Dataset.

:class:`Recorder` sorts a batch's runs into those to extract and those complete with the same
fingerprint (skipped); a complete run whose fingerprint differs stops the batch with a
:class:`StaleStoreError` naming what differs, before anything is computed.  The resume index
(:func:`daskmasker.batch.index.completed`) holds each complete run's fingerprint sha256 and
input digests, so a resume opens only the runs that differ (to say how).  A Recorder is sent
to the workers, which build and write the Datasets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from daskmasker.batch import provenance
from daskmasker.batch.dataset import run_dataset
from daskmasker.batch.fingerprint import (
    differences,
    fingerprint_sha,
    own_sha,
    run_fingerprint,
    sample_mask_sha,
    shared_fields,
    shared_sha,
)
from daskmasker.batch.index import INPUTS, ResumeIndex, entry_of
from daskmasker.batch.store import run_attrs
from daskmasker.io.checksum import digest, unchanged
from daskmasker.io.fs import Location

if TYPE_CHECKING:
    from daskmasker.batch.items import Item
    from daskmasker.masker.spec import ExtractionSpec

OVERWRITE_HINT = "rerun with --overwrite (Python: overwrite=True) to recompute"


class StaleStoreError(ValueError):
    """A complete run of the store was computed from other inputs or parameters."""


class Recorder:
    """Fingerprints and Datasets of the runs of one batch.

    Parameters
    ----------
    spec : ExtractionSpec
        The fitted extraction (``masker.extraction_spec()``).
    storage_options : dict, optional
        fsspec options for URLs.
    """

    def __init__(self, spec: ExtractionSpec, storage_options: dict | None = None):
        self.spec = spec
        self.params = spec.attrs
        self.storage_options = storage_options
        self.region_names = list(spec.region_names)
        self._shared: dict[str, dict | None] = {}
        self._fields: dict | None = None  # the fingerprint fields every run shares
        self.refreshed: dict[str, dict] = {}  # skipped runs whose index entries are renewed

    def __getstate__(self) -> dict:
        # a worker fingerprints with its own package versions: the shared fields are not sent
        return {**self.__dict__, "_fields": None}

    def _shared_digest(self, role: str, obj: Any, known: dict | None) -> dict | None:
        """The maps' or mask's digest, computed once per batch."""
        if role not in self._shared:
            self._shared[role] = digest(obj, self.storage_options, known)
        return self._shared[role]

    def shared_fields(self) -> dict:
        """The fingerprint fields every run of the batch shares (parameters, maps and mask
        digests, region names, versions), computed once."""
        if self._fields is None:
            maps = self._shared_digest("maps", self.spec.params["maps_img"], None)
            mask = self._shared_digest("mask", self.spec.params["mask_img"], None)
            self._fields = shared_fields(self.params, maps, mask, self.region_names)
        return self._fields

    def fingerprint(self, item: Item, known: dict | None = None) -> dict:
        """The fingerprint of a run (``known``: the one recorded, for the quick checks)."""
        known = known or {}
        inputs = {
            "image": digest(item.image, self.storage_options, known.get("image")),
            "confounds": digest(item.confounds, self.storage_options, known.get("confounds")),
        }
        if getattr(item, "brain_mask", None) is not None:
            inputs["brain_mask"] = digest(
                item.brain_mask, self.storage_options, known.get("brain_mask")
            )
        sample_mask = None if item.sample_mask is None else np.asarray(item.sample_mask)
        return run_fingerprint(self.shared_fields(), inputs, sample_mask, _denoise(item))

    def prepare(self) -> Recorder:
        """Digest the maps and mask now (once per batch, before the Recorder goes to workers)."""
        self._shared_digest("maps", self.spec.params["maps_img"], None)
        self._shared_digest("mask", self.spec.params["mask_img"], None)
        return self

    def split(self, location: Location, items: list, done: ResumeIndex) -> tuple[list, list[str]]:
        """The runs to extract, and the names of those complete with the same fingerprint.

        ``done`` are the complete runs and their index entries
        (:func:`~daskmasker.batch.index.completed`): a run whose entry matches its new
        fingerprint is skipped without opening it; the others are opened (concurrently) to say
        what differs.  The quick path, safe as git's index: a run is skipped when the
        fingerprint fields the batch shares (their sha256, computed once) and the run's own
        (sample mask, denoising record) are those its entry recorded, and each input is
        absent as recorded or a local file whose path and stat (size, modification time) are
        the recorded ones; no fingerprint is encoded.  Any other run has its fingerprint
        computed (an input whose stat changed is hashed again) and its sha256 compared with
        the entry's, so a changed input, parameter, sample mask or version is still found.

        Raises
        ------
        StaleStoreError
            If complete runs have another fingerprint (or none), naming each run and what
            differs.
        """
        todo, skipped, differing = [], [], []
        self.refreshed = {}
        quick = _QuickCheck(done, shared_sha(self.shared_fields()))
        for item in items:
            if item.name not in done:
                todo.append(item)
            elif quick.same(item):
                skipped.append(item.name)
            else:
                entry = done[item.name]
                known = {role: entry.get(role) for role in ("image", "confounds", "brain_mask")}
                fp = self.fingerprint(item, known)
                if fingerprint_sha(fp) != entry.get("fingerprint"):
                    differing.append(item)
                    continue
                skipped.append(item.name)
                if entry.get("own") is None:  # an entry of a format-1 index: quick next time
                    self.refreshed[item.name] = entry_of(fp)
        stale = []
        recorded = run_attrs(location, [item.name for item in differing])
        for item in differing:
            old = recorded.get(item.name, {}).get("fingerprint")
            new = self.fingerprint(item, old)
            diffs = differences(old, new)
            if diffs:
                stale.append(f"run {item.name}: {'; '.join(diffs)}")
            else:  # same contents, other stat (a file touched): kept, its entry refreshed
                skipped.append(item.name)
                self.refreshed[item.name] = entry_of(new)
        if stale:
            more = f"\n(and {len(stale) - 5} more runs)" if len(stale) > 5 else ""
            raise StaleStoreError(
                "the store holds complete runs computed otherwise:\n"
                + "\n".join(stale[:5])
                + f"{more}\n{OVERWRITE_HINT}"
            )
        return todo, skipped

    def dataset(
        self,
        item: Item,
        lazy: xr.DataArray | dict,
        signals: np.ndarray,
        raw: np.ndarray,
        confounds: np.ndarray | None,
    ) -> xr.Dataset:
        """A run's Dataset, from its lazy signals' coordinates (or their :func:`run_meta`) and
        the computed arrays."""
        meta = run_meta(lazy) if isinstance(lazy, xr.DataArray) else lazy
        fp = self.fingerprint(item)
        n_hv, names = 0, None
        if confounds is not None:
            names = provenance.confound_names(item.confounds, raw.shape[0])
            n_hv = confounds.shape[1] - len(names)
            names = provenance.confound_names(item.confounds, raw.shape[0], n_hv)
        header_t_r = meta["encoding"].get("header_t_r")
        t_r = self.params["t_r"] if self.params["t_r"] != "None" else header_t_r
        t_r_source = "t_r parameter" if self.params["t_r"] != "None" else "image header"
        conf = fp["confounds"]
        conf = (conf or {}).get("file") or conf  # a table read from a file: the file
        attrs = {
            "source": _text(fp["image"]["source"]),
            "checksum": f"sha256:{fp['image']['sha256']}",
            "confounds_source": "" if conf is None else _text(conf["source"]),
            "confounds_checksum": "" if conf is None else f"sha256:{conf['sha256']}",
            "parameters": self.params,
            "versions": provenance.versions(),
            "t_r": float(t_r) if t_r else None,
            "t_r_source": t_r_source if t_r else "unknown",
            "header_t_r": float(header_t_r) if header_t_r else None,
            "dtypes": meta["encoding"]["dtypes"],
            "n_high_variance_confounds": n_hv,
            "fingerprint": fp,
        }
        if getattr(item, "denoise", None) is not None:
            attrs["denoise"] = item.denoise
        if meta.get("coverage") is not None:
            attrs["brain_mask_source"] = (
                _text(fp["brain_mask"]["source"]) if fp.get("brain_mask") else ""
            )
            attrs["min_coverage"] = self.spec.params.get("min_coverage")
            attrs["low_coverage_regions"] = list(meta.get("low_coverage_regions") or [])
        return run_dataset(
            signals,
            raw,
            confounds,
            frames=meta["frame"],
            region=meta["region"],
            region_names=[self.region_names[k] for k in meta["region"]],
            confound_names=names,
            t_r=attrs["t_r"],
            attrs=attrs,
            coverage=meta.get("coverage"),
        )


def run_meta(lazy: xr.DataArray) -> dict:
    """What a run's Dataset takes from its lazy signals, without their graph (sent to workers)."""
    return {
        "frame": lazy["frame"].values,
        "region": lazy["region"].values,
        "encoding": {k: lazy.encoding.get(k) for k in ("header_t_r", "dtypes")},
        "coverage": lazy["coverage"].values if "coverage" in lazy.coords else None,
        "low_coverage_regions": lazy.attrs.get("low_coverage_regions"),
    }


def index_entry(ds: xr.Dataset) -> dict:
    """A complete run's entry in the resume index (:func:`~daskmasker.batch.store.entry_of`)."""
    return entry_of(ds.attrs["fingerprint"])


def _text(source: str | list) -> str:
    return source if isinstance(source, str) else ", ".join(source)


def _denoise(item: Item) -> dict | None:
    """What of a run's denoising record its fingerprint holds: what chose the confounds, not
    what was derived from them."""
    denoise = getattr(item, "denoise", None)
    if denoise is None:
        return None
    return {k: denoise[k] for k in ("strategy", "load_confounds") if k in denoise}


class _QuickCheck:
    """Whether a run is the one its index entry recorded, from the index's columns alone
    (:meth:`Recorder.split`'s quick path; False sends the run the slow way)."""

    def __init__(self, index: ResumeIndex, shared: str) -> None:
        columns = index.columns
        self.rows, self.kind = index.rows, columns["kind"]
        # per kind, its own fields' sha256 if its shared ones are the batch's (else no match)
        self.own = [k["own"] if k["shared"] == shared else None for k in columns["kinds"]]
        nothing = [None] * len(columns["names"])
        self.inputs = [
            (
                role,
                columns[role].get("source"),
                columns[role].get("stat"),
                columns[role].get("size", nothing),
                columns[role].get("mtime", nothing),
                columns[role]["other"],
            )
            for role in INPUTS
        ]
        self.plain_own = own_sha({})  # no sample mask, no denoising: most runs

    def same(self, item: Item) -> bool:
        row = self.rows.get(item.name)
        if row is None:
            return False
        own = self.own[self.kind[row]]
        if own is None or own != self._own(item):
            return False
        for role, sources, stats, sizes, mtimes, other in self.inputs:
            obj = getattr(item, role)
            if obj is None:
                if (sources is not None and sources[row] is not None) or (
                    other and str(row) in other
                ):
                    return False
            elif sources is None or not unchanged(
                obj, sources[row], stats[row], sizes[row], mtimes[row]
            ):
                return False
        return True

    def _own(self, item: Item) -> str:
        denoise = _denoise(item)
        if item.sample_mask is None and denoise is None:
            return self.plain_own
        return own_sha({"denoise": denoise, "sample_mask": sample_mask_sha(item.sample_mask)})
