"""Startup as a one-shot job pays it: daskmasker and nilearn 0.14.1 side by side, whole processes.

Each case in fresh processes (wall and CPU time of the whole process, medians; peak RSS):

* ``construct``: ``import`` + ``NiftiMapsMasker(...)`` with the seed parameters;
* ``600 volumes``: a whole process (a Python script: import, construct, ``fit_transform``)
  extracting a 600-volume ``.nii.gz`` (nilearn's MNI 2 mm grid, float32) with the seed
  parameters: 63 float64 DiFuMo-like maps, the FSL MNI brain mask,
  ``resampling_target="data"``, ``standardize="zscore_sample"``, ``keep_masked_maps=True``
  (``/work/shared/reference/seed-masker-report.txt``);
* ``10 volumes``: the same for a 10-volume run (imports and fit dominate);
* ``small image``: a whole process on a small image (8 maps and a 30-volume run on a 6 mm grid of
  30 × 36 × 30 voxels, no mask, ``standardize="zscore_sample"``): imports are nearly all of it;
* ``daskmasker extract``: the command line on the same runs (the same extraction, plus its
  Zarr store; ``--no-report``: the HTML reports are nilearn's plotting), against nilearn's
  script.

The processes write their bytecode caches (``PYTHONDONTWRITEBYTECODE`` is dropped from their
environment), as an installed package has them; one unmeasured 10-volume run of each tool
first writes them and warms the page cache.  The data are generated once into
``benchmarks/data/startup`` (``daskmasker.synthetic``, ~30 s) and reused while their
parameters are unchanged.  Run::

    python benchmarks/bench_startup.py                 # 3 runs of every case
    python benchmarks/bench_startup.py --repeat 5 --big-repeat 1
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

from measure import measure

DATA = Path(__file__).parent / "data" / "startup"
SEED = {"n_maps": 63, "seed": 0, "generator": 2}
TINY_SHAPE = (30, 36, 30)
TINY_AFFINE = [[6.0, 0, 0, -90], [0, 6.0, 0, -126], [0, 0, 6.0, -72], [0, 0, 0, 1]]
SEED_PARAMS = dict(
    resampling_target="data",
    standardize="zscore_sample",
    keep_masked_maps=True,
)


def prepare(volumes: dict[str, int]) -> dict[str, str]:
    """The maps, the mask and one run per case, generated once (keyed on their parameters)."""
    DATA.mkdir(parents=True, exist_ok=True)
    record = DATA / "params.json"
    params = {**SEED, "volumes": volumes, "tiny": [list(TINY_SHAPE), TINY_AFFINE, 30]}
    files = {"maps": DATA / "maps.nii.gz", "mask": DATA / "mask.nii.gz"}
    files.update({case: DATA / f"run-{n}_bold.nii.gz" for case, n in volumes.items()})
    files.update({"tiny_maps": DATA / "tiny_maps.nii.gz", "tiny": DATA / "tiny_bold.nii.gz"})
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
    tiny = synthetic.make_maps(n_maps=8, shape=TINY_SHAPE, affine=TINY_AFFINE, seed=SEED["seed"])
    synthetic.save(tiny, files["tiny_maps"])
    synthetic.write_fmri(files["tiny"], tiny, 30, shape=TINY_SHAPE, affine=TINY_AFFINE)
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
    params = {"standardize": "zscore_sample"} if job["mask"] is None else SEED_PARAMS
    masker = NiftiMapsMasker(job["maps"], mask_img=job["mask"], **params)
    constructed = time.perf_counter() - start
    shape = None
    if job["run"] is not None:
        shape = list(masker.fit_transform(job["run"]).shape)
    print("RESULT " + json.dumps({"construct": constructed, "shape": shape}), flush=True)


def command(tool: str, job: dict, out: Path) -> list[str]:
    """The process of one measured run: this script as a worker, or ``daskmasker extract``."""
    if tool == "daskmasker extract":
        argv = ["extract", job["run"], "--maps", job["maps"], "--mask", job["mask"]]
        argv += ["--resampling-target", "data", "--standardize", "zscore_sample"]
        argv += ["--keep-masked-maps", "--no-report", "-q", "--overwrite", "--out", str(out)]
        return [sys.executable, "-m", "daskmasker", *argv]
    return [sys.executable, __file__, "--worker", json.dumps({**job, "tool": tool})]


def run_case(tool: str, job: dict, repeat: int, out: Path) -> tuple[float, float, float, set]:
    """Median wall and CPU seconds, peak RSS (GB) and the output shapes of ``repeat`` runs."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    walls, cpus, rss, shapes = [], [], [], set()
    for _ in range(repeat):
        done = measure(command(tool, job, out), capture=True, env=env)
        walls.append(done.wall)
        cpus.append(done.cpu)
        rss.append(done.rss)
        if tool == "daskmasker extract":
            import xarray as xr

            with xr.open_zarr(str(out)) as ds:
                shapes.add(str(list(ds["signals"].isel(run=0).shape)))
        else:
            line = next(ln for ln in done.out.splitlines() if ln.startswith("RESULT "))
            shapes.add(str(json.loads(line.removeprefix("RESULT "))["shape"]))
    return statistics.median(walls), statistics.median(cpus), max(rss), shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median)")
    parser.add_argument("--big-repeat", type=int, default=3, help="runs of the 600-volume cases")
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
    big, small = f"{args.volumes} volumes", "10 volumes"
    construct = ("import + NiftiMapsMasker(...)", "daskmasker", None, args.repeat)
    out = DATA / "extract-out.zarr"
    if args.construct_only:
        files = {"maps": str(DATA / "maps.nii.gz"), "mask": str(DATA / "mask.nii.gz")}
        cases = [construct]
    else:
        files = prepare({"big": args.volumes, "small": 10})
        cases = [
            construct,
            (f"whole process, {big} .nii.gz", "daskmasker", files["big"], args.big_repeat),
            (f"whole process, {small} .nii.gz", "daskmasker", files["small"], args.repeat),
            (
                "whole process, small image (30 × 36 × 30, 30 volumes, 8 maps)",
                "daskmasker",
                files["tiny"],
                args.repeat,
            ),
            (f"`daskmasker extract`, {big}", "daskmasker extract", files["big"], args.big_repeat),
            (f"`daskmasker extract`, {small}", "daskmasker extract", files["small"], args.repeat),
        ]
        warm = {"maps": files["maps"], "mask": files["mask"], "run": files["small"]}
        for tool in ("daskmasker", "nilearn", "daskmasker extract"):  # caches written, files read
            run_case(tool, warm, 1, out)
    nilearn: dict[str | None, tuple] = {}
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.1f} on {os.cpu_count()} cores; fresh processes, medians")
    print(
        "| case | daskmasker wall | CPU | peak RSS | nilearn wall | CPU | peak RSS "
        "| ratio (wall) | ratio (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, tool, run, repeat in cases:
        job = {"maps": files["maps"], "mask": files["mask"], "run": run}
        if run is not None and run == files.get("tiny"):
            job = {"maps": files["tiny_maps"], "mask": None, "run": run}
        ours = run_case(tool, job, repeat, out)
        if run not in nilearn:  # the CLI rows compare with the same nilearn script
            nilearn[run] = run_case("nilearn", job, repeat, out)
        theirs = nilearn[run]
        assert ours[3] == theirs[3], (ours[3], theirs[3])  # the same output shape
        print(
            f"| {label} | {ours[0]:.2f} s | {ours[1]:.2f} s | {ours[2]:.2f} GB "
            f"| {theirs[0]:.2f} s | {theirs[1]:.2f} s | {theirs[2]:.2f} GB "
            f"| {ours[0] / theirs[0]:.3f} | {ours[1] / theirs[1]:.3f} |",
            flush=True,
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
