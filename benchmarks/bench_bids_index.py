"""Indexing an fMRIPrep tree of 1,000 runs: pybids against bids2table.

Each library runs in its own process (wall time and peak RSS of the whole process, imports
included: bids2table through daskmasker's ``daskmasker.batch.fmriprep.find_runs``, pybids
through a ``BIDSLayout`` and its queries) and must return the 1,000 preprocessed BOLD files of
the space asked for, each with its brain mask, confounds file and RepetitionTime.  The tree
holds fMRIPrep's files per run (BOLD, its JSON, brain mask, its JSON, in two spaces; confounds
TSV and JSON) plus anat files, with empty images (indexing reads names and sidecars, never
voxels).

    python benchmarks/bench_bids_index.py [--runs 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from measure import run_measured

SPACE = "MNI152NLin2009cAsym"


def make_tree(root: Path, n_runs: int) -> None:
    (root / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "fMRIPrep",
                "BIDSVersion": "1.9.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "fMRIPrep", "Version": "23.2.1"}],
            }
        )
    )
    per_subject = 10  # 2 sessions x 5 runs
    for i in range(n_runs):
        sub, ses, run = f"{i // per_subject + 1:03d}", f"{i % 10 // 5 + 1}", f"{i % 5 + 1}"
        func = root / f"sub-{sub}" / f"ses-{ses}" / "func"
        func.mkdir(parents=True, exist_ok=True)
        prefix = f"sub-{sub}_ses-{ses}_task-rest_run-{run}"
        for space in (SPACE, "T1w"):
            (func / f"{prefix}_space-{space}_desc-preproc_bold.nii.gz").touch()
            (func / f"{prefix}_space-{space}_desc-preproc_bold.json").write_text(
                json.dumps({"RepetitionTime": 2.0, "TaskName": "rest", "SkullStripped": False})
            )
            (func / f"{prefix}_space-{space}_desc-brain_mask.nii.gz").touch()
            (func / f"{prefix}_space-{space}_desc-brain_mask.json").write_text('{"Type": "Brain"}')
        (func / f"{prefix}_desc-confounds_timeseries.tsv").write_text("trans_x\n0\n")
        (func / f"{prefix}_desc-confounds_timeseries.json").write_text("{}")
        if i % per_subject == 0:
            anat = root / f"sub-{sub}" / "anat"
            anat.mkdir(parents=True, exist_ok=True)
            (anat / f"sub-{sub}_desc-preproc_T1w.nii.gz").touch()
            (anat / f"sub-{sub}_space-{SPACE}_desc-brain_mask.nii.gz").touch()


def index_pybids(root: str) -> int:
    from bids import BIDSLayout

    layout = BIDSLayout(root, validate=False, config=["bids", "derivatives"])
    found = 0
    for bold in layout.get(
        suffix="bold", desc="preproc", space=SPACE, extension=".nii.gz", datatype="func"
    ):
        entities = {
            k: v for k, v in bold.entities.items() if k in ("subject", "session", "task", "run")
        }
        (mask,) = layout.get(
            suffix="mask", desc="brain", space=SPACE, extension=".nii.gz", **entities
        )
        (conf,) = layout.get(suffix="timeseries", desc="confounds", extension=".tsv", **entities)
        assert bold.get_metadata()["RepetitionTime"] == 2.0 and mask and conf
        found += 1
    return found


def index_bids2table(root: str) -> int:
    """daskmasker's own path: bids2table's index, then fMRIPrep's names and the sidecars."""
    from daskmasker.batch.fmriprep import find_runs

    runs = find_runs(root, space=SPACE)
    assert all(r.t_r == 2.0 and r.brain_mask and r.confounds for r in runs)
    return len(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--job", choices=["pybids", "bids2table"])
    parser.add_argument("--root")
    parser.add_argument("--libraries", default="pybids,bids2table")
    args = parser.parse_args()
    if args.job:
        start = time.perf_counter()
        found = {"pybids": index_pybids, "bids2table": index_bids2table}[args.job](args.root)
        print(f"RESULT {found} {time.perf_counter() - start:.2f}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fmriprep"
        root.mkdir()
        make_tree(root, args.runs)
        rows = {}
        for job in args.libraries.split(","):
            wall, peak, out = run_measured(
                [sys.executable, __file__, "--job", job, "--root", str(root)], capture=True
            )
            found, inner = out.split("RESULT ")[1].split()
            rows[job] = (wall, float(inner), peak, int(found))
            print(
                f"{job:<11} runs found {found}  wall {wall:6.2f} s (index+match {inner} s)  "
                f"peak RSS {peak:.2f} GB",
                flush=True,
            )
        if len(rows) == 2:
            print(f"pybids / bids2table wall: {rows['pybids'][0] / rows['bids2table'][0]:.2f}")


if __name__ == "__main__":
    main()
