"""Scale in maps and in images (issue 16): daskmasker vs nilearn side by side, peak RSS and ratios.

* one atlas of K small DiFuMo-like maps (64 and 1024) on the DiFuMo grid, a T-volume float32
  ``.nii.gz`` on nilearn's MNI grid (``resampling_target='data'``, ``standardize='zscore_sample'``,
  6 confounds, the FSL MNI mask): fit, transform, peak RSS, the ISA-L gunzip floors of the run
  and of the atlas, and the largest difference from nilearn's signals; then the same atlas
  converted once into a Zarr maps store (``daskmasker convert --maps``) as the maps input;
* several atlases in one pass (64+128+256+512+1024 maps, ``masker.many.extract_many``)
  against the 1024-map atlas alone;
* N 3D ``.nii.gz`` files as one series (nilearn issue 1754).

Each measurement runs in a fresh subprocess (:mod:`measure` polls its RSS); times are medians of
``--repeat`` runs (nilearn's slow runs ``--nilearn-repeat`` times).  Data are generated once into
``--data-dir`` (:mod:`scale_data`).

    python benchmarks/bench_scale.py --repeat 3 --nilearn-repeat 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from bench_masker import gunzip_floor, inflate_seconds
from measure import run_job

PARAMS = dict(resampling_target="data", standardize="zscore_sample")
ATLASES = [64, 128, 256, 512, 1024]


def worker(spec: dict) -> None:
    """Run one job in this process; print its timings as JSON."""
    import pandas as pd

    confounds = spec.get("confounds")
    confounds = pd.read_csv(confounds, sep="\t").to_numpy() if confounds else None
    out: dict = {}
    if spec["job"] == "many":
        from daskmasker.masker.many import fit_many, transform_many
    elif spec.get("tool") == "nilearn":
        from nilearn.maskers import NiftiMapsMasker
    else:
        from daskmasker import NiftiMapsMasker
    start = time.perf_counter()  # the libraries imported: fit and transform only
    if spec["job"] == "convert":  # the atlas into a maps store, once
        from daskmasker import to_zarr

        to_zarr(spec["maps"], spec["store"], maps=True, overwrite=True)
        print("RESULT " + json.dumps({"fit": time.perf_counter() - start, "transform": 0.0}))
        return
    if spec["job"] == "many":
        maskers = fit_many(spec["maps"], spec["img"], mask_img=spec["mask"], **PARAMS)
        out["fit"] = time.perf_counter() - start
        if isinstance(spec["img"], list):  # several runs: one table of confounds each
            confounds = [confounds] * len(spec["img"])
        signals = transform_many(maskers, spec["img"], confounds=confounds)
        out["shapes"] = [list(np.shape(s)) for s in signals]
    else:
        masker = NiftiMapsMasker(spec["maps"], mask_img=spec["mask"], **PARAMS)
        masker.fit(spec["img"])
        out["fit"] = time.perf_counter() - start
        signals = masker.transform(spec["img"], confounds=confounds)
        out["shapes"] = [list(signals.shape)]
        if spec.get("save"):
            np.save(spec["save"], signals)
    out["transform"] = time.perf_counter() - start - out["fit"]
    out["wall"] = time.perf_counter() - start
    print("RESULT " + json.dumps(out))


def measure(spec: dict) -> dict:
    """A job in a subprocess: its timings, wall time and peak RSS (GB)."""
    result, wall, rss = run_job(__file__, spec)
    return {**result, "process": wall, "rss": rss}


def medians(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in ("fit", "transform", "rss")}


def single_atlas(files: dict, k: int, repeat: int, nilearn_repeat: int, out_dir: Path) -> None:
    base = {
        "job": "single",
        "maps": files["maps"][k],
        "mask": files["mask"],
        "img": files["run"],
        "confounds": files["confounds"],
    }
    runs = {"daskmasker": [], "nilearn": [], "store": []}
    store = str(out_dir.parent / f"maps-{k}.zarr")
    converted = measure({"job": "convert", "maps": files["maps"][k], "store": store})
    floors, isal_floors = [], []
    for i in range(max(repeat, nilearn_repeat)):  # interleaved: a slow spell hits all
        floors.append(gunzip_floor(files["run"]))
        isal_floors.append(inflate_seconds(files["run"], "isal"))
        if i < repeat:
            save = str(out_dir / f"daskmasker-{k}.npy")
            runs["daskmasker"].append(measure({**base, "tool": "daskmasker", "save": save}))
            save = str(out_dir / f"store-{k}.npy")
            runs["store"].append(
                measure({**base, "maps": store, "tool": "daskmasker", "save": save})
            )
        if i < nilearn_repeat:
            save = str(out_dir / f"nilearn-{k}.npy")
            runs["nilearn"].append(measure({**base, "tool": "nilearn", "save": save}))
    d, n = medians(runs["daskmasker"]), medians(runs["nilearn"]) if runs["nilearn"] else None
    floor, isal_floor = statistics.median(floors), statistics.median(isal_floors)
    maps_floor = gunzip_floor(files["maps"][k])
    line = (
        f"| {k} | {d['fit']:.2f} s (maps gunzip {maps_floor:.2f} s) | {d['transform']:.2f} s "
        f"({d['transform'] / floor:.2f}x the run's gunzip {floor:.2f} s; "
        f"{d['transform'] / isal_floor:.2f}x ISA-L's {isal_floor:.2f} s) | {d['rss']:.2f} GB |"
    )
    if n:
        ours, ref = np.load(out_dir / f"daskmasker-{k}.npy"), np.load(out_dir / f"nilearn-{k}.npy")
        error = np.abs(ours - ref).max() / np.abs(ref).max()
        line += (
            f" {n['fit']:.1f} s | {n['transform']:.1f} s | {n['rss']:.2f} GB |"
            f" {n['fit'] / d['fit']:.1f}x / {n['transform'] / d['transform']:.1f}x /"
            f" {n['rss'] / d['rss']:.1f}x | {error:.1e} |"
        )
    print(line, flush=True)
    z = medians(runs["store"])
    same = np.array_equal(
        np.load(out_dir / f"store-{k}.npy"), np.load(out_dir / f"daskmasker-{k}.npy")
    )
    print(
        f"| {k}, maps store | {z['fit']:.2f} s (converted once in {converted['fit']:.1f} s) | "
        f"{z['transform']:.2f} s ({z['transform'] / floor:.2f}x) | {z['rss']:.2f} GB |"
        + (
            f" | | | {n['fit'] / z['fit']:.0f}x / {n['transform'] / z['transform']:.1f}x / "
            f"{n['rss'] / z['rss']:.1f}x |"
            if n
            else ""
        )
        + f" {'same signals as the .nii.gz atlas' if same else 'SIGNALS DIFFER'} |",
        flush=True,
    )
    for name in ("daskmasker", "store"):
        runs_text = ", ".join(f"{r['fit']:.2f}+{r['transform']:.2f}" for r in runs[name])
        print(f"  {name} runs (fit+transform, s): {runs_text}", flush=True)


def many_atlases(files: dict, repeat: int, runs: int) -> None:
    """The five atlases against the 1024 alone, for one run or ``runs`` runs (a batch: the
    atlases are fitted once, each run is read once)."""
    img = files["run"]
    if runs > 1:  # distinct paths (one path given twice would be one Dask task, read once)
        img = []
        for i in range(runs):
            link = Path(files["run"]).with_name(f"run-copy{i}_bold.nii.gz")
            if not link.exists():
                link.symlink_to(Path(files["run"]).name)
            img.append(str(link))
    base = {"mask": files["mask"], "img": img, "confounds": files["confounds"], "job": "many"}
    one, many = [], []
    for _ in range(repeat):
        one.append(measure({**base, "maps": [files["maps"][1024]]}))
        many.append(measure({**base, "maps": [files["maps"][k] for k in ATLASES]}))
    o, m = medians(one), medians(many)
    total_o, total_m = o["fit"] + o["transform"], m["fit"] + m["transform"]
    label = "" if runs == 1 else f", {runs} runs"
    print(
        f"| 1024 alone{label} | {o['fit']:.2f} s | {o['transform']:.2f} s | {total_o:.2f} s | "
        f"{o['rss']:.2f} GB |\n| {'+'.join(map(str, ATLASES))}{label} | {m['fit']:.2f} s | "
        f"{m['transform']:.2f} s | {total_m:.2f} s ({total_m / total_o:.2f}x; transform "
        f"{m['transform'] / o['transform']:.2f}x) | {m['rss']:.2f} GB |",
        flush=True,
    )


def series_3d(files: dict, counts: list[int], nilearn_max: int, repeat: int) -> None:
    for n in counts:
        base = {
            "job": "single",
            "maps": files["maps"][64],
            "mask": files["mask"],
            "img": files["series"][:n],
            "confounds": None,
        }
        d = medians([measure({**base, "tool": "daskmasker"}) for _ in range(repeat)])
        line = f"| {n} | {d['fit'] + d['transform']:.1f} s | {d['rss']:.2f} GB |"
        if n <= nilearn_max:
            nl = medians([measure({**base, "tool": "nilearn"})])
            line += f" {nl['fit'] + nl['transform']:.1f} s | {nl['rss']:.2f} GB |"
        else:
            line += " not run (the whole series in memory) | |"
        print(line, flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/scale-bench"))
    parser.add_argument("--volumes", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nilearn-repeat", type=int, default=1)
    parser.add_argument("--parts", nargs="+", default=["maps", "many", "series"])
    parser.add_argument("--ks", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--series", type=int, nargs="+", default=[600, 2000])
    parser.add_argument("--series-nilearn-max", type=int, default=600)
    parser.add_argument(
        "--many-runs", type=int, nargs="+", default=[1, 4], help="runs per pass of several atlases"
    )
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    import scale_data

    files = scale_data.prepare(args.data_dir, ATLASES, args.volumes)
    files["confounds"] = str(args.data_dir / f"run-{args.volumes}_desc-confounds_timeseries.tsv")
    out_dir = args.data_dir / "signals"
    out_dir.mkdir(exist_ok=True)
    if "maps" in args.parts:
        print(
            f"one atlas, T={args.volumes} .nii.gz; daskmasker medians of {args.repeat}, nilearn "
            f"of {args.nilearn_repeat}\n| K | daskmasker fit | transform | peak RSS | nilearn fit "
            "| transform | peak RSS | nilearn/daskmasker fit / transform / RSS | max diff |\n"
            "|---|---|---|---|---|---|---|---|---|"
        )
        for k in args.ks:
            single_atlas(files, k, args.repeat, args.nilearn_repeat, out_dir)
    if "many" in args.parts:
        print(
            f"several atlases in one pass, medians of {args.repeat}\n| atlases | fit | "
            "transform | total | peak RSS |\n|---|---|---|---|---|"
        )
        for runs in args.many_runs:
            many_atlases(files, args.repeat, runs)
    if "series" in args.parts:
        run = args.data_dir / "run-100_bold.nii.gz"
        if not run.exists():
            from daskmasker import synthetic

            synthetic.write_fmri(run, synthetic.make_maps(n_maps=64, seed=0), 100, seed=1)
        files["series"] = scale_data.write_3d_series(
            str(run), args.data_dir / "series3d", max(args.series)
        )
        print(
            "3D .nii.gz files as one series (64 small maps)\n| images | daskmasker | peak RSS | "
            "nilearn | peak RSS |\n|---|---|---|---|---|"
        )
        series_3d(files, args.series, args.series_nilearn_max, args.repeat)


if __name__ == "__main__":
    main()
