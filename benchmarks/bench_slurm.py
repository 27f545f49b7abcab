"""A batch through SLURM-started workers against a LocalCluster of the same workers, same machine.

A one-node SLURM cluster (Debian's slurm-wlm, started as tests/slurm does) and ``--runs`` runs of
40x48x40 voxels x ``--volumes`` volumes (.nii, a graph per run) with 6 maps.  Measured, each
``--repeat`` times, alternating (medians printed):

* local: ``run_batch`` into a fresh store on ``dask_client(workers=W)`` (a LocalCluster of W
  single-threaded processes, 4 GiB each; its start excluded);
* slurm: the same on ``cluster_client("slurm", workers=W, memory="4GiB")`` (W one-core SLURM
  jobs; waiting for all W workers excluded): the overhead is slurm / local - 1;
* first run: ``daskmasker extract --cluster slurm`` launched, until the store's first run is
  complete (``open_timeseries`` polled every 0.1 s), and until the command ends.

Peak memory: each worker process's peak RSS (``ru_maxrss``), the largest, and the client's.

    python benchmarks/bench_slurm.py --runs 8 --repeat 3
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).parents[1]
sys.path[:0] = [str(REPO / "tests")]

from helpers import make_data, make_maps  # noqa: E402
from slurm.onenode import running  # noqa: E402

SHAPE = (40, 48, 40)
MEMORY = "4GiB"  # each worker's memory limit, both ways
AFFINE = np.array([[1.0, 0, 0, -20], [0, 1, 0, -24], [0, 0, 1, -20], [0, 0, 0, 1]])


def write_data(root: Path, runs: int, volumes: int) -> tuple[list[str], str]:
    maps = make_maps(dtype=np.float64)
    maps_path = str(root / "maps.nii.gz")
    maps.to_filename(maps_path)
    paths = []
    for i in range(runs):
        paths.append(str(root / f"sub-{i:02d}_task-rest_bold.nii"))
        img = make_data(maps, volumes, seed=i, shape=SHAPE, affine=AFFINE)
        img.header.set_zooms((1.0, 1.0, 1.0, 2.0))
        img.to_filename(paths[-1])
    return paths, maps_path


def worker_peak_gb(client) -> float:
    peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return max(peaks.values()) / 2**20


def timed_batch(client, maps: str, runs: list[str], out: Path) -> float:
    from daskmasker import NiftiMapsMasker, run_batch

    shutil.rmtree(out, ignore_errors=True)
    masker = NiftiMapsMasker(maps, standardize="zscore_sample", detrend=True)
    start = time.perf_counter()
    result = run_batch(masker, runs, str(out), client=client)
    wall = time.perf_counter() - start
    assert len(result.done) == len(runs), result
    return wall


def first_run(maps: str, runs: list[str], out: Path, workers: int) -> tuple[float, float]:
    from daskmasker import open_timeseries

    shutil.rmtree(out, ignore_errors=True)
    command = ["daskmasker", "extract", *runs, "--maps", maps, "--out", str(out)]
    command += ["--standardize", "zscore_sample", "--detrend", "--cluster", "slurm"]
    command += ["--workers", str(workers), "--interface", "lo", "--no-progress", "--no-report"]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    first = None
    while proc.poll() is None:
        if first is None:
            try:
                if len(open_timeseries(str(out))["run"]) >= 1:
                    first = time.perf_counter() - start
            except Exception:
                pass
        time.sleep(0.1)
    assert proc.returncode == 0
    return first or float("nan"), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--volumes", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from daskmasker.runtime.client import dask_client
    from daskmasker.runtime.cluster import cluster_client

    root = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    try:
        runs, maps = write_data(root, args.runs, args.volumes)
        print(f"{args.runs} runs of {SHAPE} x {args.volumes} volumes, {args.workers} workers")
        times = {"local": [], "slurm": []}
        peaks = {"local": 0.0, "slurm": 0.0}
        with running():
            for _ in range(args.repeat):
                with dask_client(workers=args.workers, memory_limit=MEMORY) as client:
                    times["local"].append(timed_batch(client, maps, runs, root / "local.zarr"))
                    peaks["local"] = max(peaks["local"], worker_peak_gb(client))
                with cluster_client(
                    "slurm",
                    workers=args.workers,
                    memory=MEMORY,
                    interface="lo",
                    log_dir=str(root / "logs"),
                ) as client:
                    client.wait_for_workers(args.workers)
                    times["slurm"].append(timed_batch(client, maps, runs, root / "slurm.zarr"))
                    peaks["slurm"] = max(peaks["slurm"], worker_peak_gb(client))
            firsts = [first_run(maps, runs, root / "cli.zarr", args.workers)]
        local, slurm = (statistics.median(times[k]) for k in ("local", "slurm"))
        client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print("| path | batch wall (s) | runs/s | vs local | worker peak RSS (GB) |")
        print("|---|---|---|---|---|")
        for name, wall in (("LocalCluster", local), ("SLURM workers", slurm)):
            key = "local" if name == "LocalCluster" else "slurm"
            print(
                f"| {name} | {wall:.2f} | {args.runs / wall:.2f} | {wall / local:.3f} | "
                f"{peaks[key]:.2f} |"
            )
        print(f"all times: {times}")
        print(f"overhead of SLURM workers: {100 * (slurm / local - 1):+.1f} %")
        first, whole = firsts[0]
        print(f"extract --cluster slurm: first run complete after {first:.1f} s, all {whole:.1f} s")
        print(f"client (this process) peak RSS: {client_peak:.2f} GB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
