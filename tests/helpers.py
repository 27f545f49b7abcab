"""Test data builders: small images on grids that relate the way real ones do.

The maps grid, the data grid and the mask grid differ by whole-voxel shifts and an x flip (as the
DiFuMo 2 mm, nilearn MNI 2 mm and FSL MNI 2 mm grids do), and an "oblique" data grid with another
voxel size exercises the general resampling path.
"""

from __future__ import annotations

import tracemalloc

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

MAPS_SHAPE = (14, 16, 12)
MAPS_AFFINE = np.array([[3.0, 0, 0, -21], [0, 3, 0, -24], [0, 0, 3, -15], [0, 0, 0, 1]])
DATA_SHAPE = (12, 15, 11)
DATA_AFFINE = np.array([[3.0, 0, 0, -18], [0, 3, 0, -21], [0, 0, 3, -12], [0, 0, 0, 1]])
MASK_SHAPE = (13, 15, 11)
MASK_AFFINE = np.array([[-3.0, 0, 0, 18], [0, 3, 0, -21], [0, 0, 3, -12], [0, 0, 0, 1]])
COARSE_SHAPE = (9, 11, 8)
COARSE_AFFINE = np.array([[4.0, 0, 0, -18], [0, 4, 0, -21], [0, 0, 4, -12], [0, 0, 0, 1]])


def world_grid(shape, affine):
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def make_maps(
    n_maps=6, seed=0, dtype=np.float32, negative=False, shape=MAPS_SHAPE, affine=MAPS_AFFINE
):
    """Smooth, overlapping, mostly non-negative maps (a DiFuMo in miniature)."""
    rng = np.random.default_rng(seed)
    xyz = world_grid(shape, affine)
    maps = np.zeros((*shape, n_maps))
    for k in range(n_maps):
        centre = rng.uniform(-9, 9, size=3)
        width = rng.uniform(4, 8)
        blob = np.exp(-((xyz - centre) ** 2).sum(-1) / (2 * width**2))
        blob[blob < 0.05] = 0
        maps[..., k] = blob
    if negative:
        maps[..., 0] -= 0.3 * maps[..., 1]
    return nib.Nifti1Image(maps.astype(dtype), affine)


def make_mask(shape=MASK_SHAPE, affine=MASK_AFFINE, radius=13.0, centre=(0.0, 0.0, 0.0)):
    """A ball-shaped brain mask (uint8)."""
    xyz = world_grid(shape, affine)
    inside = ((xyz - np.asarray(centre)) ** 2).sum(-1) < radius**2
    return nib.Nifti1Image(inside.astype(np.uint8), affine)


def make_data(
    maps_img, n_scans=40, seed=1, dtype=np.float32, shape=DATA_SHAPE, affine=DATA_AFFINE, scale=None
):
    """fMRI-like 4D data: baseline + latent signals through the maps + drift + noise."""
    rng = np.random.default_rng(seed)
    xyz = world_grid(shape, affine)
    maps_aff = maps_img.affine
    ijk = (xyz - maps_aff[:3, 3]) @ np.linalg.inv(maps_aff[:3, :3]).T
    maps = np.stack(
        [
            ndimage.map_coordinates(
                np.asarray(maps_img.dataobj)[..., k], ijk.reshape(-1, 3).T, order=1
            ).reshape(shape)
            for k in range(maps_img.shape[3])
        ],
        -1,
    )
    t = np.arange(n_scans)
    latent = ndimage.gaussian_filter1d(rng.normal(size=(n_scans, maps.shape[-1])), 2, axis=0)
    baseline = 100 + 20 * np.exp(-(xyz**2).sum(-1) / 400)
    data = baseline[..., None] + (maps @ latent.T) * 10
    data += 0.02 * t * rng.normal(size=shape)[..., None]
    data += rng.normal(scale=0.5, size=data.shape)
    if scale is not None:
        data = data / scale
    if np.dtype(dtype).kind in "iu":
        data = np.round(data)
    return nib.Nifti1Image(data.astype(dtype), affine)


def stop_processes(procs) -> None:
    """Terminate test subprocesses (schedulers, workers), killing any that hang."""
    import subprocess

    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


BATCH_T_R = 2.0


def write_run(path, maps, n_scans: int, seed: int) -> None:
    """A run whose header holds TR = 2 s."""
    img = make_data(maps, n_scans=n_scans, seed=seed)
    img.header.set_zooms((*img.header.get_zooms()[:3], BATCH_T_R))
    img.header.set_xyzt_units("mm", "sec")
    img.to_filename(path)


def write_confounds(path, n_scans: int, seed: int) -> None:
    """An fMRIPrep-like confounds TSV with a header of column names."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.normal(size=(n_scans, 3)), columns=["csf", "white_matter", "fd"])
    table.to_csv(path, sep="\t", index=False)


def write_maps_and_mask(root) -> dict:
    """Six float64 maps and the ball mask written into ``root``: ``{"maps": path, "mask": path}``
    (and the maps image itself under ``"maps_img"``)."""
    maps = make_maps(dtype=np.float64)
    paths = {"maps": str(root / "maps.nii.gz"), "mask": str(root / "mask.nii.gz")}
    maps.to_filename(paths["maps"])
    make_mask().to_filename(paths["mask"])
    return {**paths, "maps_img": maps}


def write_study(root) -> dict:
    """Maps, a mask and two runs (40 and 45 volumes) with their confounds, as files in ``root``."""
    maps = make_maps(dtype=np.float64)
    maps.to_filename(root / "maps.nii.gz")
    make_mask().to_filename(root / "mask.nii.gz")
    runs = []
    for sub, n_scans in ((1, 40), (2, 45)):
        func = root / f"sub-0{sub}" / "func"
        func.mkdir(parents=True)
        img = func / f"sub-0{sub}_task-rest_bold.nii.gz"
        conf = func / f"sub-0{sub}_task-rest_desc-confounds_timeseries.tsv"
        write_run(img, maps, n_scans, seed=sub)
        write_confounds(conf, n_scans, seed=10 + sub)
        runs.append(
            {"img": str(img), "conf": str(conf), "n": n_scans, "name": f"sub-0{sub}_task-rest"}
        )
    return {
        "root": root,
        "maps_img": maps,
        "maps": str(root / "maps.nii.gz"),
        "mask": str(root / "mask.nii.gz"),
        "runs": runs,
    }


def traced_peak(compute):
    """``compute()``'s result and the peak of Python's traced allocations while it ran (bytes)."""
    tracemalloc.start()
    try:
        out = compute()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def correlated_runs(lengths, n_regions: int, seed: int = 0) -> list[np.ndarray]:
    """Runs of correlated region signals (frames × regions), one per length, with offsets."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((n_regions, n_regions))
    return [
        rng.standard_normal((n, n_regions)) @ (mixing + 0.3 * rng.standard_normal(mixing.shape))
        + rng.standard_normal(n_regions) * 5
        for n in lengths
    ]


def timeseries_dataset(runs, entities=None, t_r: float = 2.0, chunks: int = 1, names=None):
    """A Dataset shaped as ``daskmasker.open_timeseries(store)`` returns a study's runs:
    ``signals`` (run, time, region), lazy, each run's frames first and NaN after them;
    run-axis coordinates ``n_frames``, ``t_r`` and BIDS entities (``subject``, ``task``...,
    empty strings when absent); ``region_name`` on the region axis."""
    import dask.array as da
    import xarray as xr

    n_time = max(len(r) for r in runs)
    n_regions = runs[0].shape[1]
    padded = np.full((len(runs), n_time, n_regions), np.nan)
    for i, run in enumerate(runs):
        padded[i, : len(run)] = run
    entities = entities or [{"subject": f"{i:02d}", "task": "rest"} for i in range(len(runs))]
    keys = sorted({k for e in entities for k in e})
    names = names or [
        "_".join(f"{k[:3]}-{e[k]}" for k in keys if e.get(k)) or f"run{i}"
        for i, e in enumerate(entities)
    ]
    coords = {
        "run": names,
        "n_frames": ("run", np.array([len(r) for r in runs])),
        "t_r": ("run", np.full(len(runs), t_r)),
        "time": ("time", np.arange(n_time) * t_r, {"units": "s"}),
        "region": np.arange(n_regions),
        "region_name": ("region", [f"region {j}" for j in range(n_regions)]),
        **{k: ("run", [e.get(k, "") for e in entities]) for k in keys},
    }
    signals = da.from_array(padded, chunks=(chunks, -1, -1))
    return xr.Dataset({"signals": (("run", "time", "region"), signals)}, coords=coords)


def bids_validator_issues(root, tmp_path) -> list[dict]:
    """The issues the BIDS validator (bids-validator-deno, in the test extra) finds in ``root``.

    Its schema has no rule for functional ``*_timeseries.tsv`` derivatives yet (BEP012;
    fMRIPrep's ``desc-confounds_timeseries.tsv`` are NOT_INCLUDED alike): that code is ignored
    for them, everything else is reported.
    """
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    config = Path(tmp_path) / "validator.json"
    config.write_text(
        json.dumps({"ignore": [{"code": "NOT_INCLUDED", "location": "**/*_timeseries.*"}]})
    )
    exe = shutil.which("bids-validator-deno", path=f"{Path(sys.executable).parent}:{os.defpath}")
    assert exe, "bids-validator-deno is in the test extra"
    run = subprocess.run(
        [exe, str(root), "--format", "json", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(run.stdout)["issues"]["issues"]
