"""NIfTI → Zarr conversion: wall time and peak RSS against nibabel's full load and the gunzip floor.

Each measurement runs in a fresh subprocess (peak RSS = its ``ru_maxrss``); medians over
``--repeat`` runs.  The run is generated (seeded) with ``daskmasker.synthetic.write_fmri``.

    python benchmarks/bench_convert.py --volumes 600 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from measure import run_measured

JOBS = {
    "daskmasker to_zarr": (
        "from daskmasker import to_zarr; import sys; "
        "to_zarr(sys.argv[1], sys.argv[2], overwrite=True)"
    ),
    "nibabel full load": (
        "import nibabel as nib, numpy as np, sys; np.asanyarray(nib.load(sys.argv[1]).dataobj)"
    ),
    "gunzip, zlib (floor)": (
        "import gzip, sys\nwith gzip.open(sys.argv[1]) as f:\n    while f.read(1 << 26): pass"
    ),
    "gunzip, ISA-L (floor)": (
        "import isal.igzip as g, sys\n"
        "with g.open(sys.argv[1]) as f:\n    while f.read(1 << 26): pass"
    ),
}


def run(code: str, *args: str) -> tuple[float, float]:
    wall, rss, _ = run_measured([sys.executable, "-c", code, *args])
    return wall, rss


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/daskmasker-bench"))
    args = parser.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    src = args.data_dir / f"sub-00_vols-{args.volumes}_bold.nii.gz"
    if not src.exists():  # generated in a subprocess, so this process stays small
        run_measured(
            [
                sys.executable,
                str(Path(__file__).with_name("bench_masker.py")),
                "--prepare",
                str(args.volumes),
                "--data-dir",
                str(args.data_dir),
            ]
        )
    raw_gb = 99 * 117 * 95 * args.volumes * 4 / 1e9
    print(f"{src.name}: {raw_gb:.2f} GB of float32 voxels, {src.stat().st_size / 1e9:.2f} GB gz")
    print("| step | wall (median) | peak RSS | GB/s of voxels |")
    print("|---|---|---|---|")
    for name, code in JOBS.items():
        runs = [
            run(code, str(src), str(args.data_dir / "converted.zarr")) for _ in range(args.repeat)
        ]
        wall = statistics.median(r[0] for r in runs)
        rss = statistics.median(r[1] for r in runs)
        print(f"| {name} | {wall:.2f} s | {rss:.2f} GB | {raw_gb / wall:.2f} |", flush=True)


if __name__ == "__main__":
    main()
