"""A synthetic fMRIPrep derivatives tree, generated deterministically from a seed.

:func:`make_fmriprep_dataset` writes fMRIPrep's file names, JSON sidecars, brain masks and
``desc-confounds_timeseries`` tables (:func:`fmriprep_confounds`: fMRIPrep's columns, their
expansions and the CompCor, outlier and ICA-AROMA regressors) around runs made by
:mod:`daskmasker.synthetic`: what the ``bids`` command and nilearn's
``load_confounds_strategy`` read, without a real fMRIPrep output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, DTypeLike

from daskmasker.synthetic import brain_inside, make_fmri, make_maps, world_coordinates

FMRIPREP_SPACE = "MNI152NLin2009cAsym"
AROMA_SPACE = "MNI152NLin6Asym"  # fMRIPrep writes ICA-AROMA's denoised runs in this space
SMALL_SHAPE = (20, 24, 20)
SMALL_AFFINE = np.array([[8.0, 0, 0, -80], [0, 8, 0, -112], [0, 0, 8, -70], [0, 0, 0, 1]])


def _with_expansions(name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    """fMRIPrep's four versions of a regressor: it, ``_derivative1`` (first row n/a),
    ``_power2`` and ``_derivative1_power2``."""
    derivative = np.r_[np.nan, np.diff(values)]
    return {
        name: values,
        f"{name}_derivative1": derivative,
        f"{name}_power2": values**2,
        f"{name}_derivative1_power2": derivative**2,
    }


def fmriprep_confounds(
    motion: np.ndarray, t_r: float, seed: int, n_compcor: int = 6
) -> tuple[pd.DataFrame, dict]:
    """An fMRIPrep ``desc-confounds_timeseries`` table and its JSON, with fMRIPrep's columns.

    Motion (``trans_*``, ``rot_*``) and the tissue signals (``global_signal``, ``csf``,
    ``white_matter``, ``csf_wm``) with their derivatives and powers; ``a_comp_cor_XX`` (combined,
    CSF and WM masks), ``t_comp_cor_XX``, ``c_comp_cor_XX``, ``w_comp_cor_XX`` described in the
    JSON (``Method``, ``Mask``, ``VarianceExplained``, ``Retained``...);
    ``framewise_displacement``, ``std_dvars``, ``dvars``, ``rmsd`` (first row n/a);
    ``cosine_XX`` (128 s high-pass basis); ``non_steady_state_outlier_00``;
    ``motion_outlier_XX`` (one per volume with FD > 0.5 mm or std DVARS > 1.5, as fMRIPrep
    flags them); ``aroma_motion_XX``.  Two volumes are made outliers on purpose, so scrubbing
    has something to remove.
    """
    rng = np.random.default_rng(seed)
    n = motion.shape[0]
    motion = motion * np.array([1, 1, 1, 0.01, 0.01, 0.01])  # rotations in radians
    columns: dict[str, Any] = {}
    names = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
    for name in ("global_signal", "csf", "white_matter", "csf_wm"):
        columns.update(_with_expansions(name, 500 + np.cumsum(rng.standard_normal(n))))
    for i, name in enumerate(names):
        columns.update(_with_expansions(name, motion[:, i]))
    meta: dict = {}
    components = {
        "a": [("combined", n_compcor), ("CSF", 3), ("WM", 3)],
        "t": [("combined", 4)],
        "c": [("CSF", 3)],
        "w": [("WM", 3)],
    }
    for prefix, masks in components.items():
        k = 0
        for mask, count in masks:
            explained = np.sort(rng.uniform(0.01, 0.2, count))[::-1]
            for j in range(count):
                name = f"{prefix}_comp_cor_{k:02d}"
                columns[name] = rng.standard_normal(n)
                meta[name] = {
                    "CumulativeVarianceExplained": float(explained[: j + 1].sum()),
                    "Mask": mask,
                    "Method": "tCompCor" if prefix == "t" else "aCompCor",
                    "Retained": True,
                    "SingularValue": float(30 * explained[j]),
                    "VarianceExplained": float(explained[j]),
                }
                k += 1
        meta[f"dropped_{prefix}"] = {"Mask": masks[0][0], "Method": "aCompCor", "Retained": False}
    fd = np.abs(np.diff(motion[:, :3], axis=0)).sum(1) + 50 * np.abs(
        np.diff(motion[:, 3:], axis=0)
    ).sum(1)
    fd = np.r_[np.nan, fd]
    std_dvars = np.r_[np.nan, 1 + 0.1 * rng.standard_normal(n - 1)]
    fd[n // 3] = 0.9  # a motion spike
    std_dvars[2 * n // 3] = 2.5  # a DVARS spike
    columns["framewise_displacement"] = fd
    columns["std_dvars"] = std_dvars
    columns["dvars"] = std_dvars * 20
    columns["rmsd"] = np.r_[np.nan, np.abs(rng.standard_normal(n - 1)) * 0.05]
    n_cosine = max(1, int(np.floor(2 * n * t_r / 128)))
    t = np.arange(n)
    for k in range(1, n_cosine + 1):
        columns[f"cosine_{k - 1:02d}"] = np.sqrt(2 / n) * np.cos(np.pi * (2 * t + 1) * k / (2 * n))
    columns["non_steady_state_outlier_00"] = (t == 0).astype(float)
    flagged = np.flatnonzero((np.nan_to_num(fd) > 0.5) | (np.nan_to_num(std_dvars) > 1.5))
    for j, volume in enumerate(flagged):
        columns[f"motion_outlier_{j:02d}"] = (t == volume).astype(float)
    for j in range(4):
        columns[f"aroma_motion_{j:02d}"] = rng.standard_normal(n)
    return pd.DataFrame(columns), meta


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2))


def make_fmriprep_dataset(
    root: str | os.PathLike[str],
    subjects: tuple[str, ...] = ("01", "02"),
    sessions: tuple[str, ...] = ("1", "2"),
    runs: tuple[str, ...] = ("1",),
    task: str = "rest",
    n_volumes: int = 40,
    maps_img: nib.Nifti1Image | None = None,
    shape: tuple[int, int, int] = SMALL_SHAPE,
    affine: ArrayLike = SMALL_AFFINE,
    t_r: float = 2.0,
    aroma: bool = True,
    seed: int = 0,
    dtype: DTypeLike = np.float64,
) -> list[dict]:
    """An fMRIPrep derivatives tree with fMRIPrep's file names, sidecars and confounds.

    For each subject, session and run (``sub-01/ses-1/func/sub-01_ses-1_task-rest_run-1_``...):
    ``space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz`` and its JSON (``RepetitionTime``,
    ``SkullStripped``, ``TaskName``), ``space-..._desc-brain_mask.nii.gz`` (+ JSON),
    ``desc-confounds_timeseries.tsv`` and ``.json`` (:func:`fmriprep_confounds`); with
    ``aroma``, also ``space-MNI152NLin6Asym_desc-smoothAROMAnonaggr_bold.nii.gz`` and its brain
    mask (same synthetic grid, another space label).  Each run's brain mask is the brain
    ellipsoid, shrunk a little per run (so map coverage differs between runs); the tree's
    ``dataset_description.json`` says fMRIPrep generated it.

    Returns
    -------
    list of dict
        One per run: ``bold``, ``mask``, ``confounds``, ``aroma_bold``, ``aroma_mask``,
        ``entities`` and ``t_r``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_json(
        root / "dataset_description.json",
        {
            "Name": "fMRIPrep - synthetic",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "fMRIPrep", "Version": "23.2.1"}],
        },
    )
    maps_img = maps_img if maps_img is not None else make_maps(8, shape, affine, seed=seed)
    xyz = world_coordinates(shape, affine)
    records = []
    counter = 0
    for sub in subjects:
        for ses in sessions:
            for run in runs:
                counter += 1
                func = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "func"
                func.mkdir(parents=True, exist_ok=True)
                parts = [f"sub-{sub}", f"ses-{ses}" if ses else "", f"task-{task}"]
                parts.append(f"run-{run}" if run else "")
                prefix = "_".join(p for p in parts if p)
                img, motion_df, _ = make_fmri(
                    maps_img, n_volumes, shape, affine, t_r, seed + counter, background="noise"
                )
                data = np.asarray(img.dataobj, dtype=dtype)
                mask = brain_inside(xyz, scale=1.0 - 0.04 * (counter % 4)).astype(np.uint8)
                record = {
                    "entities": {"sub": sub, "ses": ses, "task": task, "run": run},
                    "t_r": t_r,
                }
                spaces = [(FMRIPREP_SPACE, "preproc", "bold", "mask")]
                if aroma:
                    spaces.append((AROMA_SPACE, "smoothAROMAnonaggr", "aroma_bold", "aroma_mask"))
                for space, desc, bold_key, mask_key in spaces:
                    bold = func / f"{prefix}_space-{space}_desc-{desc}_bold.nii.gz"
                    out = nib.Nifti1Image(data, np.asarray(affine, float))
                    out.header.set_xyzt_units("mm", "sec")
                    out.header["pixdim"][4] = t_r
                    out.to_filename(bold)
                    sidecar = {"RepetitionTime": t_r, "SkullStripped": False, "TaskName": task}
                    _write_json(bold.with_name(bold.name.replace(".nii.gz", ".json")), sidecar)
                    brain = func / f"{prefix}_space-{space}_desc-brain_mask.nii.gz"
                    nib.Nifti1Image(mask, np.asarray(affine, float)).to_filename(brain)
                    _write_json(
                        brain.with_name(brain.name.replace(".nii.gz", ".json")),
                        {"Type": "Brain", "RawSources": [bold.name]},
                    )
                    record[bold_key], record[mask_key] = bold, brain
                table, meta = fmriprep_confounds(motion_df.to_numpy(), t_r, seed + counter)
                tsv = func / f"{prefix}_desc-confounds_timeseries.tsv"
                table.to_csv(tsv, sep="\t", index=False, na_rep="n/a")
                _write_json(tsv.with_suffix(".json"), meta)
                record["confounds"] = tsv
                records.append(record)
    return records
