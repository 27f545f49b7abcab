"""A small BIDS-like study on disk for the batch-store tests: files that can be changed."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_maps, make_mask, write_confounds, write_run


@pytest.fixture
def study(tmp_path):
    """Maps, a mask and two runs (40 and 45 volumes) with their confounds, as files."""
    maps = make_maps(dtype=np.float64)
    maps.to_filename(tmp_path / "maps.nii.gz")
    make_mask().to_filename(tmp_path / "mask.nii.gz")
    runs = []
    for sub, n_scans in ((1, 40), (2, 45)):
        func = tmp_path / f"sub-0{sub}" / "func"
        func.mkdir(parents=True)
        img = func / f"sub-0{sub}_task-rest_bold.nii.gz"
        conf = func / f"sub-0{sub}_task-rest_desc-confounds_timeseries.tsv"
        write_run(img, maps, n_scans, seed=sub)
        write_confounds(conf, n_scans, seed=10 + sub)
        runs.append(
            {"img": str(img), "conf": str(conf), "n": n_scans, "name": f"sub-0{sub}_task-rest"}
        )
    return {
        "root": tmp_path,
        "maps_img": maps,
        "maps": str(tmp_path / "maps.nii.gz"),
        "mask": str(tmp_path / "mask.nii.gz"),
        "runs": runs,
    }
