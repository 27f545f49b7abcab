"""Connectivity of 1,000 runs: ``daskmasker.connectivity`` against nilearn's
``ConnectivityMeasure``, correlation and tangent, each in a fresh process (wall time of the
computation, whole-process wall time and peak RSS, children included).

The runs (seeded, correlated, 150-200 kept frames of 64 regions, float64) are written once to a
Zarr array (run, time, region), NaN past each run's frames, 100 runs a chunk: the layout of a
study store's signals.  nilearn gets each run's kept frames as numpy arrays read from it (the
read is timed apart); daskmasker opens it lazily as ``open_timeseries``' Dataset and computes.

    python benchmarks/bench_connectivity.py [--runs 1000] [--frames 200] [--regions 64]
        [--blas-threads 1]

``--blas-threads N`` sets ``OPENBLAS_NUM_THREADS`` (and OMP/MKL's) of both tools' processes:
on a busy 2-core machine OpenBLAS's default threads slow 64 x 64 eigen-problems down many times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from measure import run_job


def make_store(path: str, n_runs: int, n_frames: int, n_regions: int) -> None:
    import zarr

    rng = np.random.default_rng(0)
    frames = rng.integers(n_frames * 3 // 4, n_frames + 1, n_runs)
    signals = zarr.create_array(
        path,
        name="signals",
        shape=(n_runs, n_frames, n_regions),
        chunks=(100, n_frames, n_regions),
        dtype="f8",
        fill_value=np.nan,
        dimension_names=("run", "time", "region"),
    )
    mixing = rng.standard_normal((n_regions, n_regions))
    for start in range(0, n_runs, 100):
        block = np.full((min(100, n_runs - start), n_frames, n_regions), np.nan)
        for i in range(block.shape[0]):
            n = frames[start + i]
            noise = rng.standard_normal((n, n_regions))
            block[i, :n] = noise @ (mixing + 0.5 * rng.standard_normal(mixing.shape))
        signals[start : start + block.shape[0]] = block
    zarr.open_group(path).attrs["n_frames"] = frames.tolist()


def _open(path: str):
    import xarray as xr

    return xr.open_zarr(path, consolidated=False)


def worker(job: dict) -> dict:
    kind, path, out = job["kind"], job["store"], job["out"]
    if job["tool"] == "nilearn":
        import zarr
        from nilearn.connectome import ConnectivityMeasure

        start = time.perf_counter()
        group = zarr.open_group(path, mode="r")
        frames = group.attrs["n_frames"]
        block = group["signals"][:]
        runs = [block[i, :n] for i, n in enumerate(frames)]
        read = time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        result = ConnectivityMeasure(kind=kind).fit_transform(runs)
        compute, cpu = time.perf_counter() - start, time.process_time() - cpu
    else:
        import dask
        import xarray  # noqa: F401 - imported before the clock, as nilearn is
        import zarr

        import daskmasker
        from daskmasker.batch import connectivity  # noqa: F401

        if job.get("keep_bytes") is not None:
            dask.config.set({"daskmasker.connectivity.keep-bytes": job["keep_bytes"]})
        frames = zarr.open_group(path, mode="r").attrs["n_frames"]
        start, cpu = time.perf_counter(), time.process_time()
        ds = _open(path).assign_coords(n_frames=("run", np.array(frames)))
        lazy = daskmasker.connectivity(ds, kind=kind)
        read = 0.0
        result = lazy.values
        compute, cpu = time.perf_counter() - start, time.process_time() - cpu
    np.save(out, result)
    return {"read": read, "compute": compute, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--regions", type=int, default=64)
    parser.add_argument("--blas-threads", type=int, default=None)
    parser.add_argument("--worker", default=None)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    if args.blas_threads:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.blas_threads)  # the workers inherit it
    with tempfile.TemporaryDirectory() as tmp:
        store = f"{tmp}/signals.zarr"
        make_store(store, args.runs, args.frames, args.regions)
        print(
            f"{args.runs} runs, up to {args.frames} frames x {args.regions} regions, float64; "
            f"BLAS threads: {args.blas_threads or 'default'}; load {os.getloadavg()[0]:.1f}"
        )
        header = "| kind | tool | compute (CPU) | process wall | peak RSS | nilearn/daskmasker |"
        print(header + " max diff |\n|---|---|---|---|---|---|---|")
        nilearn = {}
        for kind, keep in (("correlation", None), ("tangent", None), ("tangent", 0)):
            tools = ("daskmasker",) if kind in nilearn else ("nilearn", "daskmasker")
            for tool in tools:
                out = f"{tmp}/{tool}-{kind}.npy"
                job = {"tool": tool, "kind": kind, "store": store, "out": out, "keep_bytes": keep}
                result, wall, rss = run_job(__file__, job)
                diff = float(np.abs(np.load(out) - np.load(f"{tmp}/nilearn-{kind}.npy")).max())
                if tool == "nilearn":
                    nilearn[kind] = (result["compute"], rss)
                    ratio = ""
                    name = "nilearn ConnectivityMeasure"
                else:
                    ratio = (
                        f"{nilearn[kind][0] / result['compute']:.2f}x time, "
                        f"{nilearn[kind][1] / rss:.2f}x RSS"
                    )
                    name = "daskmasker" + (
                        " (covariances recomputed per step)" if keep == 0 else ""
                    )
                read = f" (+ read {result['read']:.2f} s)" if result["read"] else ""
                print(
                    f"| {kind} | {name} | {result['compute']:.2f} s ({result['cpu']:.1f} s){read} "
                    f"| {wall:.2f} s "
                    f"| {rss:.2f} GB | {ratio} | {diff:.1e} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
