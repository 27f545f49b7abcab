"""Outputs ready for exploration: plain ``xr.open_zarr`` on an image store warns nothing and
shows CF-style ``long_name``/``units``/``description`` on every variable; the masker's xarray
output carries them too, with time in seconds."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
import xarray as xr

from daskmasker import NiftiMapsMasker, to_zarr

from helpers import make_data, make_maps, make_mask

CF = ("long_name", "units", "description")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    maps = make_maps(dtype=np.float32)
    run = make_data(maps, n_scans=12, seed=0, dtype=np.float32)
    run.header.set_xyzt_units("mm", "sec")
    run.header.set_zooms((*run.header.get_zooms()[:3], 2.0))
    paths = {"maps": root / "maps.nii.gz", "run": root / "run.nii.gz", "mask": root / "mask.nii"}
    maps.to_filename(paths["maps"])
    nib.Nifti1Image(np.asarray(run.dataobj), run.affine, run.header).to_filename(paths["run"])
    make_mask().to_filename(paths["mask"])
    return {
        "run": to_zarr(str(paths["run"]), str(root / "run.zarr")),
        "maps": to_zarr(str(paths["maps"]), str(root / "maps.zarr"), maps=True),
        "mask": to_zarr(str(paths["mask"]), str(root / "mask.zarr")),
        "files": paths,
    }


@pytest.mark.parametrize("kind", ["run", "maps", "mask"])
def test_plain_open_zarr_warns_nothing_and_describes_every_variable(stores, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(stores[kind])
    assert "image" in ds.data_vars  # negative control: the store is what we think
    for name, variable in ds.variables.items():
        missing = [key for key in CF if not variable.attrs.get(key)]
        assert not missing, f"{kind}: {name} lacks {missing}"
    for dim in ds["image"].dims:
        assert dim in ds.coords, f"{kind}: image dim {dim} has no coordinate"
    assert ds["x"].attrs["units"] == "mm"
    if kind == "run":
        np.testing.assert_allclose(ds["t"].values, np.arange(12) * 2.0)
        assert ds["t"].attrs["units"] == "s"


def test_masker_xarray_output_is_described_with_time_in_seconds(stores):
    masker = NiftiMapsMasker(str(stores["files"]["maps"]), standardize="zscore_sample")
    signals = masker.set_output(transform="xarray").fit_transform(str(stores["files"]["run"]))
    assert signals.dims == ("time", "region")
    for name, variable in [("signals", signals.variable), *signals.coords.items()]:
        attrs = variable.attrs
        assert all(attrs.get(key) for key in CF), (name, attrs)
    np.testing.assert_allclose(signals["time"].values, np.arange(12) * 2.0)
    assert signals["time"].attrs["units"] == "s" and signals.attrs["units"] == "1"
    psc = NiftiMapsMasker(str(stores["files"]["maps"]), standardize="psc")
    assert psc.set_output(transform="xarray").fit_transform(stores["run"]).attrs["units"] == "%"
