"""The runs of an fMRIPrep derivatives dataset: each preprocessed BOLD with its brain mask,
confounds files and repetition time.

The tree is indexed by bids2table (``index_dataset``: one pass over the file names, parsed with the
BIDS schema), chosen over pybids, whose ``BIDSLayout`` and queries are far slower on a large
fMRIPrep tree (``benchmarks/results/2026-12-07-bids-index.md``). From its table the BIDS-Apps
selections (participants, sessions, tasks, space, resolution, a ``--bids-filter-file``) pick the
BOLD files; each one's companions are found by fMRIPrep's naming, read from the BOLD's own entities
(strings as written: ``run-01`` stays ``01``):

====================  ================================================================
BOLD                  ``sub-01[_ses-1]_task-rest[_run-1]_space-X[_res-2]_desc-preproc_bold.nii.gz``
brain mask            the same entities, ``desc-brain_mask.nii.gz``
confounds             the entities without ``space``/``res``/``den``,
                      ``desc-confounds_timeseries.tsv`` and ``.json``
repetition time       ``RepetitionTime`` of the BOLD's JSON sidecar
====================  ================================================================
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daskmasker.batch.bids import entity_order, parse_name

DEFAULT_SPACE = "MNI152NLin2009cAsym"
BOLD_DESC = {"preproc": "preproc", "aroma": "smoothAROMAnonaggr"}
SPATIAL = ("space", "res", "den")  # entities of the BOLD that its confounds file does not have
# pybids' entity names, used by fMRIPrep's --bids-filter-file, to the short ones of file names
LONG_NAMES = {
    "subject": "sub",
    "session": "ses",
    "acquisition": "acq",
    "reconstruction": "rec",
    "direction": "dir",
    "ceagent": "ce",
    "resolution": "res",
    "density": "den",
    "description": "desc",
}


class MissingFileError(FileNotFoundError):
    """A run of the tree lacks a file fMRIPrep writes beside its BOLD."""


@dataclass(frozen=True)
class FmriprepRun:
    """One preprocessed BOLD run and its companions."""

    bold: str
    brain_mask: str
    confounds: str
    confounds_json: str | None
    t_r: float | None
    entities: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run's name in a batch store: its entities, without desc and suffix
        (``sub-01_ses-1_task-rest_run-1_space-MNI152NLin2009cAsym``)."""
        order = entity_order()
        return "_".join(f"{k}-{self.entities[k]}" for k in order if k in self.entities)


def _label(value: str, prefix: str) -> str:
    return value[len(prefix) :] if value.startswith(prefix) else value


def read_filter(path: str | None) -> dict[str, Any]:
    """The ``bold`` selection of a ``--bids-filter-file`` (fMRIPrep's format: ``{"bold":
    {"session": "1", "run": [1, 2], "acquisition": null}}``), with short entity names.

    A value may be a label, a list of labels, or null (the entity must be absent).
    """
    if path is None:
        return {}
    try:
        content = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"--bids-filter-file {path}: not valid JSON ({exc})") from None
    if not isinstance(content, dict) or not isinstance(content.get("bold", {}), dict):
        raise ValueError(
            f"--bids-filter-file {path}: expected an object such as "
            '{"bold": {"session": "1", "task": "rest"}}'
        )
    unknown = sorted(set(content) - {"bold", "t1w", "t2w", "flair", "fmap", "sbref", "roi"})
    if unknown:
        raise ValueError(f"--bids-filter-file {path}: unknown queries {unknown} (use 'bold')")
    known = set(entity_order())
    out = {}
    for key, value in content.get("bold", {}).items():
        short = LONG_NAMES.get(key, key)
        if short in ("suffix", "extension", "datatype", "desc"):
            raise ValueError(
                f"--bids-filter-file {path}: 'bold.{key}' is set by daskmasker (preprocessed "
                "BOLD runs); filter on entities such as session, task, run, acquisition"
            )
        if short not in known:
            raise ValueError(f"--bids-filter-file {path}: '{key}' is not a BIDS entity")
        out[short] = value
    return out


def _matches(value: str | None, wanted: Any) -> bool:
    if wanted is None:
        return value is None
    options = wanted if isinstance(wanted, list) else [wanted]
    if value is None:
        return False
    # numbers compare as numbers (run 1 matches run-01), labels as text
    return any(
        str(o) == value or (str(o).isdigit() and value.isdigit() and int(o) == int(value))
        for o in options
    )


def index_files(root: str | Path) -> list[str]:
    """Every file of the tree, relative to it (bids2table's index of the BIDS files)."""
    try:
        from bids2table import index_dataset
    except ImportError as exc:
        raise ImportError(
            "indexing an fMRIPrep tree needs bids2table: pip install 'daskmasker[fmriprep]'"
        ) from exc

    table = index_dataset(Path(root))
    return [str(p) for p in table.column("path").to_pylist()]


def find_runs(
    root: str | Path,
    *,
    participant_label: Sequence[str] | None = None,
    session_label: Sequence[str] | None = None,
    task: Sequence[str] | None = None,
    space: str = DEFAULT_SPACE,
    res: str | None = None,
    bids_filter: dict[str, Any] | None = None,
    desc: str = "preproc",
) -> list[FmriprepRun]:
    """The preprocessed BOLD runs of an fMRIPrep tree, selected as BIDS Apps select them.

    Parameters
    ----------
    root : path
        The fMRIPrep output folder (holding ``dataset_description.json`` and ``sub-*``).
    participant_label, session_label, task : sequences of str, optional
        Labels to keep (``sub-``/``ses-`` prefixes accepted); default all.
    space : str, default="MNI152NLin2009cAsym"
        The ``space`` entity of the BOLD files.
    res : str, optional
        The ``res`` entity; default any (an error if several are found for a run).
    bids_filter : dict, optional
        More entity selections (:func:`read_filter`).
    desc : str, default="preproc"
        The ``desc`` of the BOLD files: ``smoothAROMAnonaggr`` for fMRIPrep's ICA-AROMA runs.

    Returns
    -------
    list of FmriprepRun
        Sorted by name.

    Raises
    ------
    FileNotFoundError
        No such folder, no selected run, or a run lacks its brain mask or confounds file (the
        message names the file looked for).
    ValueError
        A requested participant, session or task is absent from the tree (the message lists
        those present).
    """
    root = Path(root).absolute()
    if not (root / "dataset_description.json").is_file():
        raise FileNotFoundError(
            f"'{root}' is not a BIDS derivatives folder (no dataset_description.json): give "
            "fMRIPrep's output folder"
        )
    files = set(index_files(root))
    bolds = []
    for path in sorted(files):
        entities, suffix = parse_name(path)
        if suffix == "bold" and path.endswith(".nii.gz") and entities.get("desc") == desc:
            bolds.append((path, entities))
    selections = {
        "sub": [_label(p, "sub-") for p in participant_label or []],
        "ses": [_label(s, "ses-") for s in session_label or []],
        "task": [_label(t, "task-") for t in task or []],
    }
    for key, wanted in selections.items():
        present = sorted({str(e[key]) for _, e in bolds if e.get(key) is not None})
        missing = [w for w in wanted if w not in present]
        if missing:
            raise ValueError(
                f"{key} {missing} not found in '{root}' (present: {present or 'none'})"
            )
    criteria: dict[str, Any] = {k: v for k, v in selections.items() if v}
    criteria.update(bids_filter or {})
    criteria["space"] = space
    if res is not None:
        criteria["res"] = _label(res, "res-")
    chosen = [
        (path, e) for path, e in bolds if all(_matches(e.get(k), v) for k, v in criteria.items())
    ]
    if not chosen:
        spaces = sorted({e.get("space", "none") for _, e in bolds})
        raise FileNotFoundError(
            f"no *_desc-{desc}_bold.nii.gz in '{root}' matches {criteria} "
            f"(spaces present: {spaces or 'none'})"
        )
    runs = [_companions(root, path, entities, files) for path, entities in chosen]
    seen: dict[str, str] = {}
    for run in runs:
        if run.name in seen:
            raise ValueError(
                f"{seen[run.name]} and {run.bold} are the same run in several resolutions: "
                "choose one with --res"
            )
        seen[run.name] = run.bold
    return sorted(runs, key=lambda r: r.name)


def _companions(root: Path, bold: str, entities: dict[str, str], files: set[str]) -> FmriprepRun:
    folder = bold.rsplit("/", 1)[0]
    order = entity_order()
    kept = {k: v for k, v in entities.items() if k != "desc"}

    def name(ents: dict[str, str], tail: str) -> str:
        return f"{folder}/" + "_".join(f"{k}-{ents[k]}" for k in order if k in ents) + tail

    mask = name(kept, "_desc-brain_mask.nii.gz")
    conf_entities = {k: v for k, v in kept.items() if k not in SPATIAL}
    confounds = name(conf_entities, "_desc-confounds_timeseries.tsv")
    for path, what in ((mask, "brain mask"), (confounds, "confounds file")):
        if path not in files:
            raise MissingFileError(
                f"{root / bold}: its {what} {root / path} does not exist (fMRIPrep writes it "
                "beside the BOLD)"
            )
    conf_json = confounds.removesuffix(".tsv") + ".json"
    sidecar = root / bold.replace(".nii.gz", ".json")
    t_r = None
    if sidecar.is_file():
        t_r = json.loads(sidecar.read_text()).get("RepetitionTime")
    if t_r is None:
        warnings.warn(
            f"{root / bold}: no RepetitionTime in its JSON sidecar {sidecar.name}; the image "
            "header's is used",
            stacklevel=3,
        )
    return FmriprepRun(
        bold=str(root / bold),
        brain_mask=str(root / mask),
        confounds=str(root / confounds),
        confounds_json=str(root / conf_json) if (root / conf_json).is_file() else None,
        t_r=None if t_r is None else float(t_r),
        entities={k: v for k, v in kept.items()},
    )
