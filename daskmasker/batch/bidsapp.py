"""The BIDS App over an fMRIPrep dataset: participant and group levels.

``participant`` finds the selected runs (:mod:`daskmasker.batch.fmriprep`), denoises their
confounds with nilearn's strategies (:mod:`daskmasker.batch.denoise`) and extracts them with
:func:`~daskmasker.batch.run.run_batch`, one resumable batch store per atlas (the atlases in
one pass: each image read once), each run's brain mask giving its maps' coverage; BIDS
derivatives are written beside::

    OUTPUT_DIR/dataset_description.json           GeneratedBy daskmasker, SourceDatasets fMRIPrep
    OUTPUT_DIR/.bidsignore                          stores/ and group/ are not BIDS files
    OUTPUT_DIR/sub-01/ses-1/func/sub-01_ses-1_task-rest_run-1_space-X_atlas-A_timeseries.tsv|json
    OUTPUT_DIR/stores/atlas-A.zarr                  the batch store of atlas A
    OUTPUT_DIR/group/atlas-A_summary.tsv            group level: one row per run
    OUTPUT_DIR/group/atlas-A/...                    group level: connectomes (write_relmats)

A rerun behaves as ``extract``'s: complete runs with the same fingerprint (inputs, masker
parameters, denoising strategy) are skipped, changed ones refused naming what differs, runs
killed midway redone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from daskmasker.batch import bids
from daskmasker.batch.denoise import denoise_run, resolve
from daskmasker.batch.fmriprep import BOLD_DESC, FmriprepRun, find_runs
from daskmasker.batch.run import BatchResult, run_batch

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger("daskmasker")
STORES = "stores"
GROUP = "group"
BIDSIGNORE = f"{STORES}\n{GROUP}\n"  # the deno validator matches folder names without "/"


@dataclass
class ParticipantResult:
    """What a participant-level run did: a batch result per atlas, runs whose confounds
    could not be loaded."""

    results: dict[str, BatchResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def store_path(output_dir: str | Path, atlas: str) -> str:
    """The batch store of an atlas."""
    return str(Path(output_dir) / STORES / f"atlas-{atlas}.zarr")


def select_runs(fmriprep_dir: str | Path, strategy: str, **selection: Any) -> list[FmriprepRun]:
    """The runs to process: ICA-AROMA's denoised BOLD files for ``ica_aroma`` (nilearn's
    "full" ICA-AROMA reads them), the preprocessed BOLD otherwise."""
    desc = BOLD_DESC["aroma" if strategy == "ica_aroma" else "preproc"]
    try:
        return find_runs(fmriprep_dir, desc=desc, **selection)
    except FileNotFoundError as exc:
        if strategy == "ica_aroma":
            raise FileNotFoundError(
                f"{exc}; --denoise-strategy ica_aroma reads fMRIPrep's "
                "*_desc-smoothAROMAnonaggr_bold.nii.gz (fMRIPrep < 24 with --use-aroma), written "
                "in space MNI152NLin6Asym: pass --space MNI152NLin6Asym"
            ) from None
        raise


def common_t_r(runs: Sequence[FmriprepRun]) -> float | None:
    """The runs' repetition time from their sidecars; several in one store is an error."""
    values = sorted({r.t_r for r in runs if r.t_r is not None})
    if len(values) > 1:
        examples = {v: next(r.bold for r in runs if r.t_r == v) for v in values}
        raise ValueError(
            f"the selected runs have several repetition times {values} (e.g. {examples}); a "
            "batch store holds one: select runs of one TR (--task, --session-label, "
            "--bids-filter-file)"
        )
    return values[0] if values else None


def participant(
    fmriprep_dir: str | Path,
    output_dir: str | Path,
    maps: Sequence[Any],
    *,
    atlas_labels: Sequence[str] | None = None,
    strategy: str = "simple",
    denoise_params: dict[str, Any] | None = None,
    masker_params: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
    runs: Sequence[FmriprepRun] | None = None,
    overwrite: bool = False,
    client: Client | None = None,
) -> ParticipantResult:
    """Denoise and extract the selected runs: a batch store per atlas and BIDS derivatives.

    Parameters
    ----------
    fmriprep_dir, output_dir : path
    maps : sequence
        One 4D maps image per atlas.
    atlas_labels : sequence of str, optional
        One ``atlas-<label>`` per maps (default: from the maps' file names).
    strategy : str
        nilearn's denoising preset.
    denoise_params : dict, optional
        Its parameters (None values: the preset's).
    masker_params : dict, optional
        :class:`~daskmasker.NiftiMapsMasker` parameters (``t_r`` comes from the sidecars).
    selection : dict, optional
        :func:`~daskmasker.batch.fmriprep.find_runs` keywords.
    runs : sequence of FmriprepRun, optional
        The runs, selected already (:func:`select_runs`; the command line counts them to size
        its cluster); ``selection`` is then not used.
    overwrite : bool
    client : distributed.Client, optional

    Returns
    -------
    ParticipantResult
    """
    from daskmasker.masker.estimator import NiftiMapsMasker

    denoise_params = dict(denoise_params or {})
    resolve(strategy, **denoise_params)  # a parameter the strategy does not take: before any run
    if atlas_labels and len(atlas_labels) != len(maps):
        raise ValueError(
            f"{len(atlas_labels)} --atlas-label for {len(maps)} --maps: give one per maps"
        )
    labels = [
        bids.atlas_label(m, None if not atlas_labels else atlas_labels[i])
        for i, m in enumerate(maps)
    ]
    if len(set(labels)) < len(labels):
        raise ValueError(f"two atlases have the same label {labels}: pass --atlas-label")
    if runs is None:
        runs = select_runs(fmriprep_dir, strategy, **(selection or {}))
    t_r = common_t_r(runs)
    out = ParticipantResult()
    kept, confounds, sample_masks, records = [], [], [], []
    for run in runs:
        try:
            conf, mask, record = denoise_run(run.bold, strategy, denoise_params)
        except (ValueError, OSError, KeyError) as exc:
            out.failed[run.name] = f"{type(exc).__name__}: {exc}"
            logger.error("FAILED %s: confounds: %s", run.name, exc)
            continue
        kept.append(run)
        confounds.append(conf)
        sample_masks.append(mask)
        records.append(record)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    bids.write_files(str(output_dir), {".bidsignore": BIDSIGNORE})
    params = {**(masker_params or {}), "t_r": t_r}
    results = run_batch(  # the atlases in one pass: each image read once for all of them
        [NiftiMapsMasker(maps_img, **params) for maps_img in maps],
        [r.bold for r in kept],
        [store_path(output_dir, label) for label in labels],
        confounds=confounds,
        sample_masks=sample_masks,
        names=[r.name for r in kept],
        brain_masks=[r.brain_mask for r in kept],
        denoise=records,
        overwrite=overwrite,
        tsv_dir=str(output_dir),
        atlas_label=labels,
        client=client,
    )
    out.results = dict(zip(labels, results, strict=True))
    return out


def stores(output_dir: str | Path) -> dict[str, str]:
    """The batch stores a participant level wrote, atlas label -> path."""
    folder = Path(output_dir) / STORES
    found = sorted(folder.glob("atlas-*.zarr")) if folder.is_dir() else []
    return {p.name.removeprefix("atlas-").removesuffix(".zarr"): str(p) for p in found}


def summary(store: str) -> pd.DataFrame:
    """One row per complete run of a store: its entities, volumes, denoising and coverage."""
    from daskmasker.batch.read import open_timeseries

    rows = []
    for name in open_timeseries(store)["run"].values.tolist():
        ds = open_timeseries(store, run=name)
        entities, _ = bids.parse_name(f"{name}_bold.nii.gz")
        record = ds.attrs.get("denoise") or {}
        coverage = ds["coverage"].values if "coverage" in ds else None
        rows.append(
            {
                "store_run": name,
                **entities,
                "n_volumes": int(ds.sizes["volume"]),
                "n_volumes_kept": int(ds.sizes["time"]),
                "denoise_strategy": record.get("strategy", "n/a"),
                "mean_framewise_displacement": record.get("MeanFramewiseDisplacement"),
                "min_coverage": None if coverage is None else float(coverage.min()),
                "n_regions_below_min_coverage": len(ds.attrs.get("low_coverage_regions") or []),
            }
        )
    return pd.DataFrame(rows)


def group(
    output_dir: str | Path,
    kinds: Sequence[str] = ("correlation",),
    storage_options: dict | None = None,
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The study-level outputs of each atlas's store: a summary TSV and the connectomes.

    Connectomes are written by ``daskmasker.batch.connectome.write_relmats`` when this
    daskmasker has it; otherwise a warning says they were skipped.

    Returns
    -------
    (dict, dict)
        Atlas label -> the files written; atlas label -> why its connectomes failed (the
        summaries are written whatever happens to the connectomes).
    """
    found = stores(output_dir)
    if not found:
        raise FileNotFoundError(
            f"no batch store in {Path(output_dir) / STORES}: run the participant level first"
        )
    from daskmasker.batch import connectome

    written: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    folder = Path(output_dir) / GROUP
    folder.mkdir(parents=True, exist_ok=True)
    for label, store in found.items():
        path = folder / f"atlas-{label}_summary.tsv"
        table = summary(store)
        bids.write_files(
            str(folder), {path.name: table.to_csv(sep="\t", index=False, na_rep="n/a")}
        )
        written[label] = [str(path)]
        try:
            out = connectome.write_relmats(
                store, str(folder / f"atlas-{label}"), list(kinds), storage_options=storage_options
            )
        except Exception as exc:  # the summary stands; the failure is reported
            failed[label] = f"{type(exc).__name__}: {exc}"
            logger.error("connectomes of atlas %s failed: %s", label, failed[label])
            continue
        written[label] += [str(p) for p in out]
    return written, failed
