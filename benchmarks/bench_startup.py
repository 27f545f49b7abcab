"""Startup as a one-shot job pays it: daskmasker and nilearn 0.14.1 side by side, whole processes.

Three cases, each in fresh processes (wall time of the whole process, medians; peak RSS):

* ``construct``: ``import`` + ``NiftiMapsMasker(...)`` with the seed parameters;
* ``600 volumes``: a whole process extracting a 600-volume ``.nii.gz`` (nilearn's MNI 2 mm
  grid, float32) with the seed parameters: 63 float64 DiFuMo-like maps, the FSL MNI brain mask,
  ``resampling_target="data"``, ``standardize="zscore_sample"``, ``keep_masked_maps=True``
  (``/work/shared/reference/seed-masker-report.txt``);
* ``small``: the same for a 10-volume run (imports and fit dominate).

The data are generated once into ``benchmarks/data/startup`` (``daskmasker.synthetic``, ~30 s)
and reused while their parameters are unchanged.  Run::

    python benchmarks/bench_startup.py                 # repeat 3, the 600-volume case once
    python benchmarks/bench_startup.py --repeat 5 --big-repeat 3
    python benchmarks/bench_startup.py --construct-only --repeat 7   # seconds, no data
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from measure import run_job

DATA = Path(__file__).parent / "data" / "startup"
SEED = {"n_maps": 63, "seed": 0, "generator": 2}
SEED_PARAMS = dict(
    resampling_target="data",
    standardize="zscore_sample",
    keep_masked_maps=True,
)


def prepare(volumes: dict[str, int]) -> dict[str, str]:
    """The maps, the mask and one run per case, generated once (keyed on their parameters)."""
    DATA.mkdir(parents=True, exist_ok=True)
    record = DATA / "params.json"
    params = {**SEED, "volumes": volumes}
    files = {"maps": DATA / "maps.nii.gz", "mask": DATA / "mask.nii.gz"}
    files.update({case: DATA / f"run-{n}_bold.nii.gz" for case, n in volumes.items()})
    if record.exists() and json.loads(record.read_text()) == params:
        if all(p.exists() for p in files.values()):
            return {k: str(v) for k, v in files.items()}
    import numpy as np

    from daskmasker import synthetic

    start = time.perf_counter()
    record.unlink(missing_ok=True)
    maps = synthetic.make_maps(n_maps=SEED["n_maps"], seed=SEED["seed"], dtype=np.float64)
    synthetic.save(maps, files["maps"])
    synthetic.save(synthetic.make_brain_mask(), files["mask"])
    for case, n in volumes.items():
        synthetic.write_fmri(files[case], maps, n, seed=SEED["seed"])
    record.write_text(json.dumps(params))
    print(f"generated the data in {time.perf_counter() - start:.1f} s", flush=True)
    return {k: str(v) for k, v in files.items()}


def worker(job: dict) -> None:
    """One measured process: import, construct, and (unless ``construct``) fit + transform."""
    start = time.perf_counter()
    if job["tool"] == "daskmasker":
        from daskmasker import NiftiMapsMasker
    else:
        from nilearn.maskers import NiftiMapsMasker
    masker = NiftiMapsMasker(job["maps"], mask_img=job["mask"], **SEED_PARAMS)
    constructed = time.perf_counter() - start
    shape = None
    if job["run"] is not None:
        shape = list(masker.fit_transform(job["run"]).shape)
    print("RESULT " + json.dumps({"construct": constructed, "shape": shape}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3, help="runs per small case (median)")
    parser.add_argument("--big-repeat", type=int, default=1, help="runs of the 600-volume case")
    parser.add_argument("--volumes", type=int, default=600, help="volumes of the large run")
    parser.add_argument(
        "--construct-only",
        action="store_true",
        help="only the import + construct case (neither library reads a file when constructing: "
        "no data generated)",
    )
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    construct = ("import + NiftiMapsMasker(...)", None, args.repeat)
    if args.construct_only:
        files = {"maps": str(DATA / "maps.nii.gz"), "mask": str(DATA / "mask.nii.gz")}
        cases = [construct]
    else:
        files = prepare({"big": args.volumes, "small": 10})
        cases = [
            construct,
            (f"whole process, {args.volumes} volumes .nii.gz", files["big"], args.big_repeat),
            ("whole process, 10 volumes .nii.gz", files["small"], args.repeat),
        ]
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.1f} on {os.cpu_count()} cores; fresh processes, medians")
    print("| case | daskmasker | peak RSS | nilearn | peak RSS | ratio |")
    print("|---|---|---|---|---|---|")
    for label, run, repeat in cases:
        row = {}
        for tool in ("daskmasker", "nilearn"):
            job = {"tool": tool, "maps": files["maps"], "mask": files["mask"], "run": run}
            walls, rss, shapes = [], [], set()
            for _ in range(repeat):
                result, wall, peak = run_job(__file__, job)
                walls.append(wall)
                rss.append(peak)
                shapes.add(str(result["shape"]))
            row[tool] = (statistics.median(walls), max(rss), shapes)
        ours, theirs = row["daskmasker"], row["nilearn"]
        assert ours[2] == theirs[2], (ours[2], theirs[2])  # the same output shape
        print(
            f"| {label} | {ours[0]:.2f} s | {ours[1]:.2f} GB | {theirs[0]:.2f} s "
            f"| {theirs[1]:.2f} GB | {ours[0] / theirs[0]:.3f} |",
            flush=True,
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
