"""Transient storage failures are retried; permanent ones are not; nothing is left half-done."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fsspec import register_implementation
from fsspec.implementations.local import LocalFileSystem

from daskmasker import NiftiMapsMasker, open_nifti, run_batch

from helpers import make_data, make_maps


class FlakyFileSystem(LocalFileSystem):
    """A local file system whose first ``failures`` opens drop the connection."""

    protocol = "flaky"
    failures = 0
    opens = 0

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).replace("flaky://", ""))

    def _open(self, path, mode="rb", **kwargs):
        type(self).opens += 1
        if type(self).failures > 0:
            type(self).failures -= 1
            raise ConnectionError("connection reset by peer (injected)")
        return super()._open(path, mode=mode, **kwargs)


register_implementation("flaky", FlakyFileSystem, clobber=True)


@pytest.fixture
def run(tmp_path):
    maps = make_maps(dtype=np.float64)
    path = tmp_path / "sub-01_task-rest_bold.nii"
    make_data(maps, n_scans=20).to_filename(path)
    maps.to_filename(tmp_path / "maps.nii.gz")
    FlakyFileSystem.failures = 0
    return {"path": path, "maps": str(tmp_path / "maps.nii.gz")}


def test_transient_failures_are_retried(run):
    expected = open_nifti(run["path"]).values
    FlakyFileSystem.failures = 2
    img = open_nifti(f"flaky://{run['path']}")
    FlakyFileSystem.failures = 2
    np.testing.assert_array_equal(img.values, expected)
    assert FlakyFileSystem.failures == 0


def test_persistent_failures_give_a_clear_error(run):
    FlakyFileSystem.failures = 100
    with pytest.raises(OSError, match=r"sub-01_task-rest_bold.nii.*4 attempts"):
        open_nifti(f"flaky://{run['path']}")


def test_missing_files_are_not_retried(run):
    FlakyFileSystem.opens = 0
    with pytest.raises(FileNotFoundError):
        open_nifti(f"flaky://{run['path']}.missing")
    assert FlakyFileSystem.opens <= 1


def test_batch_reading_through_a_flaky_connection(run, tmp_path):
    out = str(tmp_path / "out.zarr")
    masker = NiftiMapsMasker(run["maps"])
    FlakyFileSystem.failures = 1
    result = run_batch(masker, [f"flaky://{run['path']}"], out)
    assert result.done == ["sub-01_task-rest"] and not result.failed
    ds = xr.open_zarr(tmp_path / "out.zarr", group="sub-01_task-rest", consolidated=False)
    np.testing.assert_allclose(ds["signals"].values, masker.transform(str(run["path"])))
