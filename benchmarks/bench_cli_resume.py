"""A rerun of ``daskmasker extract`` on a complete store, as a whole process, beside the same
resume through the Python API (``run_batch`` in a fresh process).

A user who reruns the command after an interruption waits for all of it: imports, the checks
before extraction (every image's header, for the TR), the fit of the maps, the resume check.
The runs are tiny NIfTI images (8 x 8 x 8 voxels, 20 volumes, TR 2 s) written once under
``--work-dir``; the store is extracted once by the command (``--no-report``), then each
rerun is timed, medians of ``--repeat``.

    python benchmarks/bench_cli_resume.py --runs 1000 10000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

API = """
import sys
from daskmasker import NiftiMapsMasker, run_batch
imgs = sys.argv[3:]
masker = NiftiMapsMasker(sys.argv[1], standardize=None, t_r=2.0).fit(imgs[0])  # as the command
result = run_batch(masker, imgs, sys.argv[2])
assert not result.done and len(result.skipped) == len(imgs), result
"""


def images(root: Path, n: int) -> list[str]:
    """``n`` runs (written once) and the maps beside them."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    maps = root / "maps.nii.gz"
    if not maps.exists():
        values = np.clip(rng.normal(size=(8, 8, 8, 4)), 0, None).astype(np.float32)
        nib.Nifti1Image(values, np.eye(4)).to_filename(maps)
    paths = []
    for i in range(n):
        path = root / f"sub-{i:05d}" / "func" / f"sub-{i:05d}_task-rest_bold.nii.gz"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            data = rng.normal(size=(8, 8, 8, 20)).astype(np.float32)
            img = nib.Nifti1Image(data, np.eye(4))
            img.header.set_zooms((1.0, 1.0, 1.0, 2.0))
            img.header.set_xyzt_units("mm", "sec")
            img.to_filename(path)
        paths.append(str(path))
    return paths


def timed(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work-dir", default="benchmarks/data/cli_resume")
    args = parser.parse_args(argv)
    root = Path(args.work_dir)
    root.mkdir(parents=True, exist_ok=True)
    for n in args.runs:
        imgs = images(root, n)
        maps, store = str(root / "maps.nii.gz"), str(root / f"out{n}.zarr")
        cli = [sys.executable, "-m", "daskmasker.cli", "extract", *imgs, "--maps", maps]
        cli += ["--out", store, "--no-progress", "--no-report"]
        if not os.path.exists(store):
            start = time.perf_counter()
            subprocess.run(cli, check=True, capture_output=True)
            print(f"{n} runs extracted by the command in {time.perf_counter() - start:.1f} s")
        rerun = timed(cli, args.repeat)
        api = timed([sys.executable, "-c", API, maps, store, *imgs], args.repeat)
        print(f"{n} complete runs, whole process, medians of {args.repeat}:")
        print(f"  daskmasker extract (rerun)       {rerun:7.2f} s")
        print(f"  Python run_batch (rerun)         {api:7.2f} s")
        print(f"  command / Python                 {rerun / api:7.2f} x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
