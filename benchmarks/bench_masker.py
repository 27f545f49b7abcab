"""daskmasker vs nilearn, side by side in one run: wall time, peak RSS and their ratios.

Data are generated (seeded) on first use into ``--data-dir``: 64 DiFuMo-like maps on the DiFuMo
2 mm grid, the FSL MNI 2 mm mask, and float32 runs on nilearn's 99×117×95 MNI grid with 6 confounds,
as .nii.gz, .nii and Zarr.  Each measurement runs in a fresh subprocess (peak RSS is that process's
``ru_maxrss``); the table reports medians over ``--repeat`` runs.  The masker parameters are the
seed report's (``resampling_target='data'``, ``standardize='zscore_sample'``) plus the confounds.

    python benchmarks/bench_masker.py --volumes 200 600 1200 --repeat 3
    python benchmarks/bench_masker.py --volumes 600 --batch 4      # batch throughput too
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

from measure import run_job, run_measured

PARAMS = dict(resampling_target="data", standardize="zscore_sample")


def prepare(
    data_dir: Path,
    volumes: int,
    subject: int = 0,
    background: str = "masked",
    formats=("nii.gz", "nii", "zarr"),
) -> dict:
    """Generate (once) the maps, mask and one run in each of ``formats`` (.nii.gz always)."""
    from daskmasker import synthetic
    from daskmasker.io.convert import to_zarr

    data_dir.mkdir(parents=True, exist_ok=True)
    maps_path = data_dir / "maps.nii.gz"
    mask_path = data_dir / "mask.nii.gz"
    if not maps_path.exists():
        synthetic.make_maps(n_maps=64, seed=0).to_filename(maps_path)
    if not mask_path.exists():
        synthetic.make_brain_mask(synthetic.MNI_FSL_SHAPE, synthetic.MNI_FSL_AFFINE).to_filename(
            mask_path
        )
    import nibabel as nib

    stem = data_dir / f"sub-{subject:02d}_vols-{volumes}"
    gz = Path(f"{stem}_bold.nii.gz")
    if not gz.exists():
        synthetic.write_fmri(gz, nib.load(maps_path), volumes, seed=subject, background=background)
    nii = Path(f"{stem}_bold.nii")
    if "nii" in formats and not nii.exists():
        from daskmasker import open_nifti, to_nifti

        to_nifti(open_nifti(str(gz)), str(nii))
    zarr_path = Path(f"{stem}_bold.zarr")
    if "zarr" in formats and not zarr_path.exists():
        to_zarr(str(gz), str(zarr_path))
    confounds = sorted(data_dir.glob(f"sub-{subject:02d}_vols-{volumes}_*confounds*.tsv"))
    return {
        "maps": str(maps_path),
        "mask": str(mask_path),
        "nii.gz": str(gz),
        "nii": str(nii),
        "zarr": str(zarr_path),
        "confounds": str(confounds[0]) if confounds else None,
    }


def _load_confounds(path):
    import numpy as np
    import pandas as pd

    return None if path is None else pd.read_csv(path, sep="\t").to_numpy(dtype=np.float64)


def worker(args: argparse.Namespace) -> None:
    """Run one job in this process and print its timings as JSON."""
    spec = json.loads(args.job)
    confounds = _load_confounds(spec.get("confounds"))
    if spec["tool"] == "nilearn":
        from nilearn.maskers import MultiNiftiMapsMasker, NiftiMapsMasker
    else:
        from daskmasker import MultiNiftiMapsMasker, NiftiMapsMasker
    timings = {}
    if spec.get("batch"):
        # throughput: warm-up images first, one per worker process (imports, the maps shared
        # with the workers, nilearn's joblib workers started, each process's first memory),
        # then the batch is timed
        imgs = spec["imgs"]
        confs = [confounds] * len(imgs)
        with contextlib.ExitStack() as stack:
            if spec["tool"] == "daskmasker" and spec.get("workers"):
                from daskmasker import dask_client

                stack.enter_context(dask_client(workers=spec["workers"]))
                masker = MultiNiftiMapsMasker(spec["maps"], mask_img=spec["mask"], **PARAMS)
            else:
                masker = MultiNiftiMapsMasker(
                    spec["maps"], mask_img=spec["mask"], n_jobs=spec.get("n_jobs", 1), **PARAMS
                )
            warm = time.perf_counter()
            warm_n = max(1, int(spec.get("workers") or spec.get("n_jobs") or 1))
            masker.fit(imgs[0])
            masker.transform(imgs[:warm_n], confounds=confs[:warm_n])
            timings["warm_up"] = time.perf_counter() - warm
            start = time.perf_counter()
            masker.transform(imgs, confounds=confs)
            # timed before the cluster closes: its shutdown (~0.25 s) is not batch throughput
            timings["wall"] = time.perf_counter() - start
    else:
        # timed from here: fit + transform, the libraries already imported (their import is in
        # the process time, reported separately)
        start = time.perf_counter()
        masker = NiftiMapsMasker(spec["maps"], mask_img=spec["mask"], **PARAMS)
        masker.fit(spec["img"])
        timings["fit"] = time.perf_counter() - start
        signals = masker.transform(spec["img"], confounds=confounds)
        timings["shape"] = list(signals.shape)
        if spec.get("refit"):
            again = time.perf_counter()
            NiftiMapsMasker(spec["maps"], mask_img=spec["mask"], **PARAMS).fit(spec["img"])
            timings["second_fit"] = time.perf_counter() - again
        timings["wall"] = time.perf_counter() - start
    print("RESULT " + json.dumps(timings))


def measure(job: dict) -> dict:
    """Run a job in a subprocess; wall time, its peak RSS and its own timings."""
    result, wall, rss = run_job(__file__, job)
    result["process_wall"] = wall
    result["peak_rss_gb"] = rss
    return result


def gunzip_floor(path: str) -> float:
    """Seconds to inflate a .nii.gz, discarding the bytes (the reading floor): the faster of
    ISA-L and zlib-ng (:func:`inflate_seconds`).

    (Until 2026-12-06 this read ISA-L alone in 32 MiB blocks: reads of 32 MiB and more run
    2.5x slower than smaller ones, each a fresh mmap-ed buffer faulted in, so the floors quoted
    before were high: the 600-volume run's 2.78 s is ~2.0 s with ISA-L, 1.73 s with zlib-ng.)
    """
    return min(inflate_seconds(path, "isal"), inflate_seconds(path, "zlib-ng"))


def inflate_seconds(path: str, inflater: str) -> float:
    """Seconds for ``inflater`` ("isal" or "zlib-ng") to inflate a .nii.gz, 8 MiB a read."""
    if inflater == "isal":
        from isal import igzip as module
    else:
        from zlib_ng import gzip_ng as module
    start = time.perf_counter()
    with module.open(path, "rb") as f:
        while f.read(8 * 2**20):
            pass
    return time.perf_counter() - start


def parallel_ceiling(paths: list[str]) -> float:
    """The machine's own speed-up for this batch's floor: the best inflater (:func:`gunzip_floor`)
    on every file in one process, then in two processes at once (no Dask, no coordination)."""
    import multiprocessing

    start = time.perf_counter()
    for path in paths:
        gunzip_floor(path)
    one = time.perf_counter() - start
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(gunzip_floor, paths[:2])  # the processes started and warm
        start = time.perf_counter()
        pool.map(gunzip_floor, paths, chunksize=1)
        two = time.perf_counter() - start
    return one / two


def _share(args) -> float:
    """One process's share of a batch, extracted with Dask's synchronous scheduler (no cluster):
    seconds after a warm-up image, once every process is ready."""
    spec, paths, barrier = args
    import dask

    from daskmasker import NiftiMapsMasker

    confounds = _load_confounds(spec["confounds"])
    with dask.config.set(scheduler="synchronous"):
        masker = NiftiMapsMasker(spec["maps"], mask_img=spec["mask"], **PARAMS).fit(paths[0])
        masker.transform(paths[0], confounds=confounds)
        barrier.wait()
        start = time.perf_counter()
        for path in paths:
            masker.transform(path, confounds=confounds)
        return time.perf_counter() - start


def independent_ceiling(spec: dict) -> float:
    """daskmasker's own speed-up with no Dask cluster to coordinate: the batch in one process,
    then split over two processes running at once."""
    import multiprocessing

    paths = spec["imgs"]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        with context.Pool(1) as pool:
            one = pool.map(_share, [(spec, paths, manager.Barrier(1))])[0]
        barrier = manager.Barrier(2)
        with context.Pool(2) as pool:  # each process blocks at the barrier: one share each
            two = max(pool.map(_share, [(spec, paths[::2], barrier), (spec, paths[1::2], barrier)]))
    return one / two


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", dest="job", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--volumes", type=int, nargs="+", default=[200, 600, 1200])
    parser.add_argument("--formats", nargs="+", default=["nii.gz", "nii", "zarr"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--tools",
        nargs="+",
        default=["daskmasker", "nilearn"],
        help="daskmasker alone for runs larger than RAM (nilearn loads the whole image)",
    )
    parser.add_argument("--batch", type=int, default=0, help="subjects in the batch comparison")
    parser.add_argument("--batch-volumes", type=int, default=200, help="volumes per batch subject")
    parser.add_argument("--batch-only", action="store_true", help="skip the single-run table")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/daskmasker-bench"))
    parser.add_argument(
        "--background",
        choices=["masked", "noise"],
        default="masked",
        help="HCP-style brain-masked runs, or fMRIPrep-style noisy background (see synthetic)",
    )
    args = parser.parse_args(argv)
    root = args.data_dir / args.background
    if args.job:
        worker(args)
        return
    if args.prepare:
        prepare(root, args.prepare, background=args.background, formats=args.formats)
        return
    if args.batch_only:
        args.volumes = []
    print(f"runs: {args.background} background; times are medians of {args.repeat}")
    print(
        "| volumes | format | daskmasker fit+transform (process) | peak RSS "
        "| nilearn fit+transform (process) | peak RSS | ratio | 2nd fit |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for volumes in args.volumes:
        run_measured(
            [
                sys.executable,
                __file__,
                "--prepare",
                str(volumes),
                "--data-dir",
                str(args.data_dir),
                "--background",
                args.background,
                "--formats",
                *args.formats,
            ]
        )
        files = prepare(root, volumes, background=args.background, formats=args.formats)
        results = {}
        for fmt in args.formats:
            tools = [t for t in args.tools if t == "daskmasker" or fmt != "zarr"]
            res = {}
            for tool in tools:
                runs = [
                    measure(
                        {
                            "tool": tool,
                            "img": files[fmt],
                            "maps": files["maps"],
                            "mask": files["mask"],
                            "confounds": files["confounds"],
                            "refit": tool == "daskmasker",
                        }
                    )
                    for _ in range(args.repeat)
                ]
                res[tool] = {
                    key: statistics.median(r.get(name, float("nan")) for r in runs)
                    for key, name in (
                        ("wall", "wall"),
                        ("fit", "fit"),
                        ("process", "process_wall"),
                        ("rss", "peak_rss_gb"),
                        ("second_fit", "second_fit"),
                    )
                }
            results[fmt] = res
            # Zarr is compared with nilearn reading the uncompressed .nii (the target)
            reference = res.get("nilearn") or results.get("nii", {}).get("nilearn")
            _print_row(volumes, fmt, res["daskmasker"], reference, "nilearn" in res)
        if "nii.gz" in args.formats:
            floor = statistics.median(gunzip_floor(files["nii.gz"]) for _ in range(args.repeat))
            line = f"|  {volumes} | gunzip alone (ISA-L or zlib-ng) | {floor:.2f} s | | | | | |"
            print(line, flush=True)
    if args.batch:
        _batch(args, prepare(root, args.batch_volumes, background=args.background), root)


def _print_row(volumes, fmt, d, n, own_reference) -> None:
    line = f"| {volumes} | {fmt} | {d['wall']:.2f} s ({d['process']:.1f} s) | {d['rss']:.2f} GB |"
    if n is None:
        line += " — | — | — |"
    elif own_reference:
        line += f" {n['wall']:.2f} s ({n['process']:.1f} s) | {n['rss']:.2f} GB |"
        line += f" {d['wall'] / n['wall']:.3f} |"
    else:
        line += f" (.nii) | | {d['wall'] / n['wall']:.3f} vs .nii |"
    print(line + f" {d['second_fit']:.2f} s |", flush=True)


def _batch(args, files, root) -> None:
    volumes = args.batch_volumes
    imgs = [
        prepare(root, volumes, subject=s, background=args.background)["nii.gz"]
        for s in range(args.batch)
    ]
    base = {
        "maps": files["maps"],
        "mask": files["mask"],
        "imgs": imgs,
        "batch": True,
        "confounds": files["confounds"],
    }

    jobs = {
        "one": {**base, "tool": "daskmasker", "workers": 1},
        "two": {**base, "tool": "daskmasker", "workers": 2},
        "nilearn": {**base, "tool": "nilearn", "n_jobs": 2},
    }
    # interleaved (1 worker, 2 workers, nilearn, then again): a slow spell of the machine
    # falls on every configuration alike instead of on one of them
    runs = {label: [] for label in jobs}
    for _ in range(args.repeat):
        for label, job in jobs.items():
            runs[label].append(measure(job))
    one, two, nl = (
        {
            key: statistics.median(r[key] for r in runs[label])
            for key in ("wall", "process_wall", "peak_rss_gb", "warm_up")
        }
        for label in jobs
    )
    print(
        f"batch of {len(imgs)} × {volumes} volumes (.nii.gz), after warm-up images "
        f"(daskmasker {one['warm_up']:.1f} s / {two['warm_up']:.1f} s, nilearn "
        f"{nl['warm_up']:.1f} s; process time in brackets): daskmasker 1 worker "
        f"{one['wall']:.1f} s "
        f"({one['process_wall']:.1f} s), 2 workers {two['wall']:.1f} s "
        f"({two['process_wall']:.1f} s): speed-up {one['wall'] / two['wall']:.2f}×; "
        f"nilearn n_jobs=2 {nl['wall']:.1f} s ({nl['process_wall']:.1f} s): ratio "
        f"{two['wall'] / nl['wall']:.2f}; peak RSS (all processes) {two['peak_rss_gb']:.2f} GB "
        f"vs {nl['peak_rss_gb']:.2f} GB"
    )
    ceiling = statistics.median(parallel_ceiling(imgs) for _ in range(args.repeat))
    alone = statistics.median(independent_ceiling(base) for _ in range(args.repeat))
    print(
        f"  ceilings without a cluster: the best inflater on the same {len(imgs)} files in 2 "
        f"processes at once is {ceiling:.2f}× faster than in one; daskmasker (synchronous "
        f"scheduler) in 2 independent processes, {alone:.2f}×"
    )
    walls = {
        label: " ".join(f"{r['wall']:.2f}" for r in results) for label, results in runs.items()
    }
    print(
        f"  runs (s): 1 worker {walls['one']}; 2 workers {walls['two']}; nilearn {walls['nilearn']}"
    )


if __name__ == "__main__":
    main()
