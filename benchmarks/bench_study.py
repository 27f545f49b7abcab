"""A study as one dataset: opening and loading a batch store against pandas over BIDS TSVs,
``info`` and the resume check, at 1,000 and 10,000 runs, locally and on S3.

The stores are written by daskmasker's store writer directly from synthetic arrays (runs of
``--volumes`` volumes x ``--maps`` regions, float32 signals, float64 raw signals, t_r 2 s,
subjects x two tasks), because extracting 10,000 images would take most of an hour here: each
run's Dataset is built by ``Recorder.dataset`` (so its fingerprint is genuine: the "images" are
small files hashed by content, the maps a real image), packed and written as ``write_run``
does and gathered with ``finish``, as ``run_batch`` does; each run's TSV (a header of region
names, one row per volume, as ``--bids-dir`` writes) is written by ``np.savetxt`` (9
significant digits: float32 exactly), faster than the BIDS writer; the reading side, measured,
is the same.  Measured, medians of
``--repeat``:

* open: ``open_timeseries(store)`` (lazy); load: open + every run's signals as one array;
* pandas: ``pd.read_csv(tsv, sep="\\t")`` of every run's TSV (what a notebook does today);
* the same on S3 (a ``moto_server`` process on 127.0.0.1; store and TSVs uploaded; pandas over
  the first ``--s3-pandas-runs`` TSVs, its time scaled to all runs for the ratio);
* ``store_info`` and ``daskmasker info STORE`` as a whole process; the resume check:
  ``run_batch`` on the complete store (every run skipped: one listing, the index, a stat of
  each input).

    python benchmarks/bench_study.py --runs 1000 10000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

T_R = 2.0
TASKS = ("rest", "nback")


def build(root: Path, n_runs: int, n_volumes: int, n_maps: int) -> dict:
    """A store of ``n_runs`` synthetic runs, their TSVs and their "images"; returns paths."""
    import nibabel as nib

    from daskmasker import NiftiMapsMasker
    from daskmasker.batch.index import entry_of
    from daskmasker.batch.items import make_items
    from daskmasker.batch.pack import pack_arrays
    from daskmasker.batch.record import Recorder
    from daskmasker.batch.run import finish
    from daskmasker.batch.store import open_output, pack_path, put_atomic

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    maps = np.clip(rng.normal(size=(4, 4, 4, n_maps)), 0, None).astype(np.float32)
    nib.Nifti1Image(maps, np.eye(4)).to_filename(root / "maps.nii.gz")
    masker = NiftiMapsMasker(str(root / "maps.nii.gz"), standardize="zscore_sample").fit()
    images = []
    for i in range(n_runs):
        sub, task = f"{i // len(TASKS):05d}", TASKS[i % len(TASKS)]
        path = root / "bids" / f"sub-{sub}" / "func" / f"sub-{sub}_task-{task}_bold.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"image {i}".encode())  # hashed by content: any bytes do
        images.append(str(path))
    items = make_items(images)
    recorder = Recorder(masker.extraction_spec()).prepare()
    names = list(recorder.region_names)
    header = "\t".join(names)
    store = str(root / "study.zarr")
    location = open_output(store, recorder.params, True, None)
    meta = {
        "frame": np.arange(n_volumes),
        "region": np.arange(n_maps),
        "encoding": {"header_t_r": T_R, "dtypes": {"source": "float32", "pipeline": "float64"}},
    }
    index, tsvs = {}, {}
    template = None
    for item in items:
        raw = rng.normal(size=(n_volumes, n_maps))
        signals = ((raw - raw.mean(0)) / raw.std(0, ddof=1)).astype(np.float32)
        if template is None:  # the first run's attributes as Recorder.dataset makes them
            template = dict(recorder.dataset(item, meta, signals, raw, None).attrs)
        fp = recorder.fingerprint(item)  # genuine: the resume check compares it
        attrs = {
            **template,
            "source": item.image,
            "fingerprint": fp,
            "checksum": f"sha256:{fp['image']['sha256']}",
        }
        arrays = {
            "signals": signals,
            "raw_signals": raw,
            "frame": meta["frame"],
            "region": meta["region"],
            "region_name": names,
        }
        put_atomic(location.fs, pack_path(location, item.name), pack_arrays(arrays, attrs))
        index[item.name] = entry_of(fp)
        sub = item.name.split("_")[0]
        tsv = root / "derivatives" / sub / "func" / f"{item.name}_atlas-synthetic_timeseries.tsv"
        if not tsv.parent.exists():
            tsv.parent.mkdir(parents=True)
        np.savetxt(tsv, signals, fmt="%.9g", delimiter="\t", header=header, comments="")
        tsvs[item.name] = str(tsv)
    t0 = time.perf_counter()
    finish(location, index)
    return {
        "store": store,
        "tsvs": [tsvs[n] for n in sorted(tsvs)],  # in the store's run order
        "images": images,
        "masker": masker,
        "gather": time.perf_counter() - t0,
    }


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def open_and_load(store: str, storage_options=None) -> np.ndarray:
    from daskmasker import open_timeseries

    return open_timeseries(store, storage_options=storage_options)["signals"].values


def read_tsvs(tsvs: list[str], storage_options=None) -> list:
    import pandas as pd

    return [pd.read_csv(t, sep="\t", storage_options=storage_options) for t in tsvs]


def count_objects(store: str) -> tuple[int, float]:
    files = [os.path.join(d, f) for d, _, fs in os.walk(store) for f in fs]
    return len(files), sum(os.path.getsize(f) for f in files) / 1e6


def local_rows(data: dict, repeat: int) -> dict:
    from daskmasker import open_timeseries, run_batch
    from daskmasker.batch.read import store_info

    store, tsvs = data["store"], data["tsvs"]
    signals = open_and_load(store)
    frames = read_tsvs(tsvs)
    table = np.stack([f.to_numpy() for f in frames]).astype(np.float32)
    assert np.array_equal(table, signals)  # the same numbers
    rows = {
        "open": timed(lambda: open_timeseries(store), repeat),
        "open + load": timed(lambda: open_and_load(store), repeat),
        "pandas read_csv of the TSVs": timed(lambda: read_tsvs(tsvs), repeat),
        "store_info": timed(lambda: store_info(store), repeat),
    }
    env = {**os.environ}
    rows["daskmasker info (whole process)"] = timed(
        lambda: subprocess.run(
            [sys.executable, "-m", "daskmasker.cli", "info", store],
            check=True,
            capture_output=True,
            env=env,
        ),
        repeat,
    )

    def resume():
        result = run_batch(data["masker"], data["images"], store)
        assert len(result.skipped) == len(data["images"]) and not result.done, result

    rows["resume check (run_batch, all complete)"] = timed(resume, repeat)
    rows["objects, MB"] = count_objects(store)
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_rows(data: dict, repeat: int, endpoint: str, bucket: str, pandas_runs: int) -> dict:
    """Open, open + load, and pandas over the first ``pandas_runs`` TSVs (all when 0) on S3."""
    import s3fs

    from daskmasker import open_timeseries

    opts = {"key": "testing", "secret": "testing", "endpoint_url": endpoint}
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir(bucket)
    fs.put(data["store"], f"{bucket}/study.zarr", recursive=True)
    root = str(Path(data["store"]).parent)
    tsvs = data["tsvs"][:pandas_runs] if pandas_runs else data["tsvs"]
    urls = [f"s3://{bucket}/{t[len(root) + 1 :]}" for t in tsvs]
    fs.put(list(tsvs), [u.removeprefix("s3://") for u in urls])
    store = f"s3://{bucket}/study.zarr"
    return {
        "open": timed(lambda: open_timeseries(store, storage_options=opts), repeat),
        "open + load": timed(lambda: open_and_load(store, opts), repeat),
        f"pandas read_csv of {len(urls)} TSVs": timed(lambda: read_tsvs(urls, opts), repeat),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--s3-runs", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument(
        "--s3-pandas-runs",
        type=int,
        default=0,
        help="pandas reads this many TSVs on S3 (0: all); 10,000 on moto take minutes",
    )
    parser.add_argument("--volumes", type=int, default=60)
    parser.add_argument("--maps", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work-dir", default=None)
    args = parser.parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_study_"))
    port = free_port()
    server = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        time.sleep(2)
        for n in args.runs:
            start = time.perf_counter()
            data = build(work / f"runs{n}", n, args.volumes, args.maps)
            built = time.perf_counter() - start
            print(
                f"\n{n} runs x {args.volumes} volumes x {args.maps} regions "
                f"(store and TSVs written in {built:.1f} s, of which gathering "
                f"{data['gather']:.2f} s); medians of {args.repeat}"
            )
            rows = local_rows(data, args.repeat)
            objects, mb = rows.pop("objects, MB")
            print(f"store: {objects} objects, {mb:.1f} MB")
            for name, value in rows.items():
                print(f"  local  {name:<42}{value:>9.3f} s")
            ratio = rows["pandas read_csv of the TSVs"] / rows["open + load"]
            print(f"  local  pandas / (open + load){'':<14}{ratio:>9.1f} x")
            if n in args.s3_runs:
                subset = min(n, args.s3_pandas_runs or n)
                s3 = s3_rows(data, args.repeat, endpoint, f"bench{n}", subset)
                for name, value in s3.items():
                    print(f"  S3     {name:<42}{value:>9.3f} s")
                pandas = s3[f"pandas read_csv of {subset} TSVs"] * n / subset
                how = "" if subset == n else f" (pandas scaled from {subset} runs)"
                ratio = pandas / s3["open + load"]
                print(f"  S3     pandas / (open + load){how:<14}{ratio:>9.1f} x")
            shutil.rmtree(work / f"runs{n}", ignore_errors=True)
    finally:
        server.terminate()
        server.wait()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"\npeak RSS of this process: {peak:.2f} GB (the moto server is another process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
