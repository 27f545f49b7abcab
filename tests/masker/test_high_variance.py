"""High-variance confounds from images given as files (.nii, .nii.gz, Zarr): nilearn's numbers.

The confounds graph reads the image twice (variances, then the selected voxels) through copies
of the image's read tasks; with a file's hand-built read tasks, Dask's ``clone``/``bind`` made a
graph that Dask could not optimize ("Cannot fuse tasks with multiple outputs").
"""

from __future__ import annotations

import numpy as np
import pytest
from nilearn.maskers import NiftiMapsMasker as NilearnMasker

from daskmasker import NiftiMapsMasker, open_nifti, to_zarr

from helpers import make_data, make_maps, make_mask

# float64 data: the differences (6.6e-13 measured) are rounding in the eigenvectors and solves
TOL = 1e-11


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("hv")
    maps = make_maps(dtype=np.float64)
    data = make_data(maps, n_scans=50, dtype=np.float64)
    paths = {"maps": str(root / "maps.nii.gz"), "mask": str(root / "mask.nii.gz")}
    maps.to_filename(paths["maps"])
    make_mask().to_filename(paths["mask"])
    for suffix in (".nii", ".nii.gz"):
        paths[suffix] = str(root / f"run{suffix}")
        data.to_filename(paths[suffix])
    paths[".zarr"] = to_zarr(paths[".nii"], str(root / "run.zarr"), chunks=7)
    return paths


@pytest.mark.parametrize("kind", [".nii", ".nii.gz", ".zarr", ".nii.gz chunks of 8"])
@pytest.mark.parametrize("confounds", [False, True])
def test_high_variance_confounds_of_files_match_nilearn(files, kind, confounds):
    params = dict(
        maps_img=files["maps"],
        mask_img=files["mask"],
        high_variance_confounds=True,
        standardize="zscore_sample",
        detrend=True,
    )
    extra = np.random.default_rng(3).normal(size=(50, 2)) if confounds else None
    expected = NilearnMasker(**params).fit_transform(files[".nii"], confounds=extra)
    img = open_nifti(files[".nii.gz"], chunks=8) if " " in kind else files[kind]
    got = NiftiMapsMasker(**params).fit_transform(img, confounds=extra)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert error < TOL, f"relative error {error:.1e}"


def test_the_passes_over_a_gz_inflate_it_once_each(files, monkeypatch):
    """The extraction and the two passes of the high-variance confounds are three chains of
    reads of one .nii.gz; computed by two threads they interleave.  Each has a decompressor of
    its own, so the file is inflated from its start once per chain (one decompressor for all
    restarted at every switch: a 600-volume run took 152 s instead of 15)."""
    import dask

    from daskmasker.io import gzip_cursors

    starts = []
    original = gzip_cursors.GzipCursor._restart
    monkeypatch.setattr(
        gzip_cursors.GzipCursor, "_restart", lambda self: starts.append(self.url) or original(self)
    )
    monkeypatch.setattr(gzip_cursors, "_CURSORS", {})
    params = dict(maps_img=files["maps"], high_variance_confounds=True, detrend=True)
    with dask.config.set(scheduler="threads", num_workers=2):
        got = NiftiMapsMasker(**params).fit_transform(open_nifti(files[".nii.gz"], chunks=2))
    np.testing.assert_allclose(got, NiftiMapsMasker(**params).fit_transform(files[".nii"]))
    run_starts = [url for url in starts if url.endswith("run.nii.gz")]
    assert 3 <= len(run_starts) <= 4  # three chains of 25 chunks of 2 volumes
