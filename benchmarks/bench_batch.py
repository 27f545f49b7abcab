"""Many small runs in one batch: per-item overhead on 2 workers, resume checks, nilearn beside.

Data (generated once into ``--data-dir``): ``--runs`` runs of 10x12x10 voxels x 20 volumes
(.nii.gz) and 8 maps.  Measured, each ``--repeat`` times (medians printed):

* floor: the compute itself, with no framework: nibabel reads each run and NumPy solves the
  maps' least squares and cleans (detrend, z-score), in one process, divided by the workers;
* daskmasker: ``run_batch`` into a fresh store on a LocalCluster of ``--workers`` processes
  (cluster start excluded); per-item overhead = (wall - floor) / runs;
* resume: ``run_batch`` again on the complete store (every item skipped), local and on S3
  (moto on 127.0.0.1, the test suite's server; the store copied there);
* nilearn: ``NiftiMapsMasker.transform`` of each run in a loop, one process, on
  ``--nilearn-runs`` runs (per-item time scaled to all runs).

    python benchmarks/bench_batch.py --runs 1000 --repeat 3
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (10, 12, 10)
PARAMS = dict(standardize="zscore_sample", detrend=True)


def prepare(data_dir: Path, n_runs: int, n_volumes: int = 20) -> tuple[str, list[str]]:
    import nibabel as nib

    data_dir.mkdir(parents=True, exist_ok=True)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    rng = np.random.default_rng(0)
    maps_path = data_dir / "maps.nii.gz"
    if not maps_path.exists():
        maps = np.clip(rng.normal(size=(*SHAPE, 8)), 0, None).astype(np.float32)
        nib.Nifti1Image(maps, affine).to_filename(maps_path)
    paths = []
    for i in range(n_runs):
        path = data_dir / f"sub-{i:04d}" / "func" / f"sub-{i:04d}_task-rest_bold.nii.gz"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            data = (100 + rng.normal(size=(*SHAPE, n_volumes))).astype(np.float32)
            img = nib.Nifti1Image(data, affine)
            img.header.set_zooms((3.0, 3.0, 3.0, 2.0))
            img.to_filename(path)
        paths.append(str(path))
    return str(maps_path), paths


def floor(maps_path: str, paths: list[str], workers: int) -> float:
    """Seconds of plain nibabel + NumPy work for all runs, shared by ``workers``."""
    import nibabel as nib
    from scipy import signal

    maps = np.asarray(nib.load(maps_path).dataobj, dtype=np.float64).reshape(-1, 8)
    pinv = np.linalg.pinv(maps)
    start = time.perf_counter()
    for path in paths:
        data = np.asarray(nib.load(path).dataobj, dtype=np.float64).reshape(-1, 20)
        series = signal.detrend((pinv @ data).T, axis=0)
        (series - series.mean(0)) / series.std(0, ddof=1)
    return (time.perf_counter() - start) / workers


def daskmasker_batch(maps_path, paths, client, out, storage_options=None) -> tuple[float, object]:
    from daskmasker import NiftiMapsMasker, run_batch

    masker = NiftiMapsMasker(maps_path, **PARAMS).fit(paths[0])
    start = time.perf_counter()
    result = run_batch(masker, paths, out, client=client, storage_options=storage_options)
    return time.perf_counter() - start, result


def nilearn_loop(maps_path: str, paths: list[str]) -> float:
    import warnings

    from nilearn.maskers import NiftiMapsMasker

    masker = NiftiMapsMasker(maps_path, **PARAMS).fit(paths[0])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            masker.transform(path)
    return (time.perf_counter() - start) / len(paths)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nilearn-runs", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/daskmasker-bench-batch"))
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 resume check")
    args = parser.parse_args(argv)

    from daskmasker import dask_client

    maps_path, paths = prepare(args.data_dir, args.runs)
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    rows = {"floor": [], "wall": [], "resume": [], "resume_s3": [], "nilearn": []}
    try:
        with dask_client(workers=args.workers) as client:
            for rep in range(args.repeat):
                rows["floor"].append(floor(maps_path, paths, args.workers))
                out = str(work / f"run{rep}.zarr")
                wall, result = daskmasker_batch(maps_path, paths, client, out)
                assert len(result.done) == args.runs and not result.failed, result
                rows["wall"].append(wall)
                wall, result = daskmasker_batch(maps_path, paths, client, out)
                assert len(result.skipped) == args.runs, result
                rows["resume"].append(wall)
                print(f"repeat {rep}: batch {rows['wall'][-1]:.1f} s, resume {wall:.2f} s")
            if not args.no_s3:
                rows["resume_s3"] = resume_on_s3(maps_path, paths, client, out, args.repeat)
        for _ in range(args.repeat):
            rows["nilearn"].append(nilearn_loop(maps_path, paths[: args.nilearn_runs]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(rows, args)
    return 0


def resume_on_s3(maps_path, paths, client, local_store, repeat) -> list[float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import s3fs

    from s3server import s3_server, storage_options

    times = []
    with s3_server() as endpoint:
        opts = storage_options(endpoint)
        fs = s3fs.S3FileSystem(**opts)
        fs.mkdir("bench")
        fs.put(local_store, "bench/store.zarr", recursive=True)
        for _ in range(repeat):
            wall, result = daskmasker_batch(
                maps_path, paths, client, "s3://bench/store.zarr", storage_options=opts
            )
            assert len(result.skipped) == len(paths), result
            times.append(wall)
    return times


def report(rows: dict, args) -> None:
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    n = args.runs
    overhead = (med["wall"] - med["floor"]) / n
    nilearn_all = med["nilearn"] * n
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"\n{n} runs of {SHAPE}x20 voxels, {args.workers} workers, medians of {args.repeat}")
    print(f"{'measure':<44}{'value':>12}")
    print(f"{'compute floor (nibabel+NumPy) / workers':<44}{med['floor']:>10.2f} s")
    print(f"{'daskmasker run_batch wall':<44}{med['wall']:>10.2f} s")
    print(f"{'daskmasker per-item overhead':<44}{1000 * overhead:>9.1f} ms")
    print(f"{'daskmasker per item (wall / runs)':<44}{1000 * med['wall'] / n:>9.1f} ms")
    print(f"{'nilearn transform per item (1 process)':<44}{1000 * med['nilearn']:>9.1f} ms")
    print(f"{'nilearn, all runs (scaled)':<44}{nilearn_all:>10.2f} s")
    print(f"{'ratio nilearn / daskmasker (wall)':<44}{nilearn_all / med['wall']:>10.2f} x")
    print(f"{'resume check, all complete, local':<44}{med['resume']:>10.2f} s")
    if "resume_s3" in med:
        print(f"{'resume check, all complete, S3 (moto)':<44}{med['resume_s3']:>10.2f} s")
    print(f"{'peak RSS of this (client) process':<44}{peak:>10.2f} GB")


if __name__ == "__main__":
    sys.exit(main())
