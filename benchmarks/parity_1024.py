"""A 1024-map parity run: daskmasker's sparse path against nilearn 0.14.1, both in float64.

On the DiFuMo 2 mm grid nilearn needs ~18 GB for 1024 maps in float32 and would need twice that
in float64, more than this machine has; its float32 result is off by up to ~1e-4 by itself
(``bench_scale.py``'s "max diff").  So this run puts 1024 DiFuMo-like maps on a 3 mm grid
(70x82x70, ~350 voxels a map), gives both tools the same float64 run (100 volumes on a grid
shifted by whole voxels, a brain mask, detrending, z-scoring, 4 confounds) and compares the
signals in float64, where the tolerance of the tests (1e-11 relative) applies.  Each tool runs
in a fresh process (peak RSS polled).

    python benchmarks/parity_1024.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from measure import run_job

GRID_AFFINE = np.array([[3.0, 0, 0, -96], [0, 3, 0, -132], [0, 0, 3, -78], [0, 0, 0, 1]])
GRID_SHAPE = (70, 82, 70)
DATA_AFFINE = GRID_AFFINE.copy()
DATA_AFFINE[:3, 3] += 6.0  # two voxels: resampling_target='data' moves the maps by whole voxels
DATA_SHAPE = (66, 78, 66)
TOL = 1e-11


def prepare(data_dir: Path, n_maps: int, volumes: int) -> dict:
    """The atlas, mask, run and confounds (generated once, seeded)."""
    import nibabel as nib
    import scale_data
    from scipy import ndimage

    from daskmasker import synthetic

    data_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "maps": data_dir / f"maps-{n_maps}-3mm.nii.gz",
        "img": data_dir / f"run-{volumes}-3mm-f64.nii.gz",
        "mask": data_dir / "mask-3mm.nii.gz",
        "confounds": data_dir / f"confounds-{volumes}.npy",
    }
    if not files["maps"].exists():
        scale_data.write_small_maps(
            files["maps"], n_maps, seed=n_maps, shape=GRID_SHAPE, affine=GRID_AFFINE
        )
    if not all(files[k].exists() for k in ("img", "mask", "confounds")):  # one seeded draw
        rng = np.random.default_rng(0)
        inside = synthetic.brain_inside(synthetic._world(DATA_SHAPE, DATA_AFFINE))
        noise = rng.standard_normal((*DATA_SHAPE, volumes))
        smooth = ndimage.gaussian_filter(noise, sigma=(1, 1, 1, 0))
        data = (100.0 + 5.0 * smooth) * inside[..., None]
        nib.Nifti1Image(data, DATA_AFFINE).to_filename(files["img"])
        nib.Nifti1Image(inside.astype(np.uint8), DATA_AFFINE).to_filename(files["mask"])
        np.save(files["confounds"], rng.standard_normal((volumes, 4)))
    return {k: str(v) for k, v in files.items()}


def worker(spec: dict) -> None:
    if spec["tool"] == "nilearn":
        from nilearn.maskers import NiftiMapsMasker
    else:
        from daskmasker import NiftiMapsMasker
    start = time.perf_counter()
    masker = NiftiMapsMasker(
        spec["maps"],
        mask_img=spec["mask"],
        resampling_target="data",
        detrend=True,
        standardize="zscore_sample",
    )
    signals = masker.fit_transform(spec["img"], confounds=np.load(spec["confounds"]))
    np.save(spec["save"], signals)
    print(
        "RESULT " + json.dumps({"time": time.perf_counter() - start, "dtype": str(signals.dtype)})
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/parity-1024"))
    parser.add_argument("--maps", type=int, default=1024)
    parser.add_argument("--volumes", type=int, default=100)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    files = prepare(args.data_dir, args.maps, args.volumes)
    out = {}
    for tool in ("daskmasker", "nilearn"):
        save = str(args.data_dir / f"{tool}.npy")
        result, _, rss = run_job(__file__, {**files, "tool": tool, "save": save})
        out[tool] = (np.load(save), result["time"], rss, result["dtype"])
    ours, ref = out["daskmasker"][0], out["nilearn"][0]
    error = float(np.abs(ours - ref).max() / np.abs(ref).max())
    print(
        f"{args.maps} maps on a 3 mm grid, {args.volumes} float64 volumes; signals {ref.shape} "
        f"({out['nilearn'][3]} / {out['daskmasker'][3]})\n"
        "| tool | fit + transform | peak RSS |\n|---|---|---|\n"
        + "".join(f"| {t} | {out[t][1]:.1f} s | {out[t][2]:.2f} GB |\n" for t in out)
        + f"max |daskmasker - nilearn| / max |nilearn| = {error:.1e} "
        f"({'within' if error <= TOL else 'ABOVE'} the tests' {TOL:.0e})"
    )


if __name__ == "__main__":
    main()
