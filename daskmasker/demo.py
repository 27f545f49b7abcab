"""``daskmasker demo``: the main job end to end on generated data, on the embedded default.

Generates DiFuMo-like maps, a brain mask and a synthetic fMRI run whose latent network signals are
known, converts the run to Zarr, extracts the maps' time series through the lazy Dask graph,
measures how well they recover the latent signals, and writes the outputs (a batch Zarr store,
BIDS-style TSV, the HTML report).  Messages go to stdout, the progress of each step to stderr.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def recovery(signals: np.ndarray, latent: np.ndarray) -> np.ndarray:
    """Per map, the correlation of its extracted series with its latent signal."""
    s = (signals - signals.mean(0)) / signals.std(0)
    z = (latent - latent.mean(0)) / latent.std(0)
    return (s * z).mean(0)


def run_demo(
    out: str | Path,
    n_volumes: int = 120,
    n_maps: int = 64,
    seed: int = 0,
    client=None,
    progress: bool = True,
    verbose: bool = True,
) -> dict:
    """Run the demo into ``out``; returns what it wrote and measured.

    Parameters
    ----------
    out : path
        Folder to write into (created).
    n_volumes : int, default=120
        Volumes of the synthetic run (99×117×95 voxels each).
    n_maps : int, default=64
        Number of DiFuMo-like maps on the DiFuMo 2 mm grid.
    seed : int, default=0
    client : distributed.Client, optional
        Cluster to run on; None uses the local threaded scheduler.
    progress : bool, default=True
        Show the progress of the conversion and of the extraction on stderr, task by task.
    verbose : bool, default=True
        Print what was generated, measured and written.

    Returns
    -------
    dict
        Paths written and the recovery statistics.
    """
    import nibabel as nib

    from daskmasker import synthetic
    from daskmasker.batch.run import run_batch
    from daskmasker.io.convert import to_zarr
    from daskmasker.masker.estimator import NiftiMapsMasker
    from daskmasker.runtime.progress import task_progress

    out = Path(out)
    (out / "sub-01" / "func").mkdir(parents=True, exist_ok=True)
    say = print if verbose else lambda *_: None
    t0 = time.perf_counter()
    maps_path = out / "maps.nii.gz"
    mask_path = out / "mask.nii.gz"
    maps = synthetic.make_maps(n_maps=n_maps, seed=seed)
    maps.to_filename(maps_path)
    synthetic.make_brain_mask(synthetic.MNI_FSL_SHAPE, synthetic.MNI_FSL_AFFINE).to_filename(
        mask_path
    )
    bold = out / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz"
    written = synthetic.write_fmri(bold, maps, n_volumes, seed=seed)
    latent = np.asarray(written["latent"])
    confounds_path = written["confounds"]
    say(
        f"generated {n_maps} maps {maps.shape[:3]}, a {n_volumes}-volume run "
        f"{nib.load(bold).shape[:3]} and its confounds in {time.perf_counter() - t0:.1f} s"
    )

    t1 = time.perf_counter()
    with task_progress("convert", client, enabled=progress):
        store = to_zarr(str(bold), str(out / "sub-01_task-rest_bold.zarr"), overwrite=True)
    say(f"converted to Zarr: {store} in {time.perf_counter() - t1:.1f} s")

    t2 = time.perf_counter()
    masker = NiftiMapsMasker(
        str(maps_path),
        mask_img=str(mask_path),
        resampling_target="data",
        standardize="zscore_sample",
        detrend=True,
        t_r=2.0,
    )
    with task_progress("extract", client, enabled=progress):
        result = run_batch(
            masker,
            [store],
            str(out / "timeseries.zarr"),
            confounds=[str(confounds_path)],
            names=["sub-01_task-rest"],
            overwrite=True,
            tsv_dir=str(out / "derivatives"),
            client=client,
        )
    if result.failed:
        raise RuntimeError(f"extraction failed: {result.failed}")
    from daskmasker.batch.read import open_timeseries

    signals = open_timeseries(str(out / "timeseries.zarr"), "sub-01_task-rest")["signals"].values
    say(
        f"extracted {signals.shape[1]} time series × {signals.shape[0]} volumes "
        f"in {time.perf_counter() - t2:.1f} s"
    )
    r = recovery(signals, latent[:, masker.extraction_spec().kept])
    say(f"recovery of the latent signals: median r = {np.median(r):.3f}, min r = {r.min():.3f}")

    report_path = out / "report.html"
    try:
        report = masker.generate_report(displayed_maps=min(10, signals.shape[1]))
        report.save_as_html(str(report_path))
        wrote = str(report_path)
    except ImportError as exc:  # the plotting extra is not installed
        wrote = f"(no report: {exc})"
    say(
        f"wrote:\n  {out / 'timeseries.zarr'} "
        "(xarray: xr.open_zarr(path, group='sub-01_task-rest'))"
        f"\n  {out / 'derivatives'} (BIDS *_timeseries.tsv)\n  {wrote}"
    )
    return {
        "store": str(out / "timeseries.zarr"),
        "report": str(report_path),
        "recovery": r,
        "signals_shape": signals.shape,
    }
