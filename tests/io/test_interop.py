"""Image stores and files read by third-party tools: plain xarray, the ``nifti`` engine, the
NIfTI-Zarr reference implementation (``nifti-zarr``/``niizarr``) and the OME-Zarr 0.5 validator
(``ome-zarr-models``)."""

from __future__ import annotations

import dask
import dask.array as da
import nibabel as nib
import niizarr
import numpy as np
import pytest
import xarray as xr
import zarr
from ome_zarr_models.v05.image import Image

from daskmasker import NiftiMapsMasker, open_nifti, open_zarr, to_zarr
from daskmasker.io.load import load_image

AFFINE = np.array([[2.0, 0, 0, -10], [0, 3, 0, -20], [0, 0, 4, 5], [0, 0, 0, 1]])
OBLIQUE = np.array(
    [[1.9, 0.3, 0.0, -90.0], [-0.2, 2.1, 0.4, -120.0], [0.1, -0.3, 2.5, -60.0], [0, 0, 0, 1]]
)


def _nifti(path, shape=(6, 7, 5, 9), dtype=np.float32, affine=AFFINE, scaled=False):
    """A NIfTI file with a TR of 2.5 s, qform code 1 and sform code 4 (MNI)."""
    rng = np.random.default_rng(0)
    data = rng.normal(100, 30, size=shape)
    data = np.round(data).astype(dtype) if np.dtype(dtype).kind in "iu" else data.astype(dtype)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=4)
    if len(shape) == 4:
        img.header["pixdim"][4] = 2.5
    if scaled:
        img.header.set_slope_inter(0.5, 10.0)
    img.to_filename(path)
    return nib.load(path)


def _codes(header) -> tuple[int, int]:
    return int(header["qform_code"]), int(header["sform_code"])


def test_plain_xarray_opens_a_store(tmp_path):
    """No daskmasker needed: named dims, mm/s coordinates, one variable named 'image'."""
    ref = _nifti(tmp_path / "bold.nii.gz")
    store = to_zarr(str(tmp_path / "bold.nii.gz"), str(tmp_path / "bold.zarr"), chunks=4)
    expected = np.asanyarray(ref.dataobj).T
    opened = {
        "open_zarr": xr.open_zarr(store),
        "open_dataset": xr.open_dataset(store, engine="zarr", chunks={}),
        "open_datatree": xr.open_datatree(store, engine="zarr", chunks={}).to_dataset(),
    }
    for how, ds in opened.items():
        assert list(ds.data_vars) == ["image"], how
        image = ds["image"]
        assert image.dims == ("t", "z", "y", "x"), how
        assert isinstance(image.data, da.Array), how
        np.testing.assert_allclose(ds["x"], -10 + 2.0 * np.arange(6))
        np.testing.assert_allclose(ds["y"], -20 + 3.0 * np.arange(7))
        np.testing.assert_allclose(ds["z"], 5 + 4.0 * np.arange(5))
        np.testing.assert_allclose(ds["t"], 2.5 * np.arange(9))
        assert [ds[c].attrs["units"] for c in "xyzt"] == ["mm", "mm", "mm", "s"]
        np.testing.assert_array_equal(image.values, expected)
        np.testing.assert_array_equal(np.reshape(image.attrs["affine"], (4, 4)), AFFINE)
    image = opened["open_zarr"]["image"]
    image.to_netcdf(tmp_path / "image.nc")
    back = xr.open_dataset(tmp_path / "image.nc")
    np.testing.assert_array_equal(back["image"].values, expected)
    assert back["image"].attrs["sform_code"] == 4 and back["t"].attrs["units"] == "s"
    # a Dataset carries the OME-Zarr and NIfTI-Zarr group attributes (nested by those specs)
    # and the header bytes (uint8, not in netCDF-3): without them it writes as it is
    ds = opened["open_zarr"].drop_attrs(deep=False).drop_vars("nifti")
    ds.to_netcdf(tmp_path / "ds.nc")
    np.testing.assert_array_equal(xr.open_dataset(tmp_path / "ds.nc")["image"], expected)


def test_plain_xarray_image_goes_back_into_daskmasker(tmp_path, maps, data):
    """What plain xarray opened is a daskmasker image again (same numbers)."""
    store = to_zarr(data, str(tmp_path / "run.zarr"), chunks=7)
    ds = xr.open_zarr(store)
    image = load_image(ds)
    assert image.dims == ("time", "z", "y", "x")
    np.testing.assert_array_equal(image.values, open_zarr(store).values)
    masker = NiftiMapsMasker(maps, detrend=True).fit(data)
    np.testing.assert_array_equal(masker.transform(ds), masker.transform(store))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_engine(tmp_path, suffix):
    """``engine="nifti"`` (and no engine: guess_can_open) opens a lazy, netCDF-ready Dataset;
    ``chunks={}`` gives Dask chunks of whole volumes, as daskmasker reads the file."""
    path = tmp_path / f"bold{suffix}"
    ref = _nifti(path, dtype=np.int16, scaled=True)
    assert "nifti" in xr.backends.list_engines()
    for ds in (xr.open_dataset(path, engine="nifti"), xr.open_dataset(path)):
        image = ds["image"]
        assert image.dims == ("time", "z", "y", "x")
        np.testing.assert_array_equal(image.isel(time=3), np.asanyarray(ref.dataobj)[..., 3].T)
        np.testing.assert_array_equal(image.load().values, np.asanyarray(ref.dataobj).T)
        np.testing.assert_allclose(ds["time"], 2.5 * np.arange(9))
        assert image.attrs["affine"] == AFFINE.reshape(-1).tolist()
    volume_nbytes = 6 * 7 * 5 * np.asanyarray(ref.dataobj).dtype.itemsize
    with dask.config.set({"daskmasker.chunk-bytes": 2 * volume_nbytes}):
        chunked = xr.open_dataset(path, engine="nifti", chunks={})["image"]
    assert isinstance(chunked.data, da.Array)
    assert chunked.data.chunks[0] == (2, 2, 2, 2, 1)
    np.testing.assert_array_equal(chunked.values, np.asanyarray(ref.dataobj).T)
    ds = xr.open_dataset(path, engine="nifti")
    ds.to_netcdf(tmp_path / "bold.nc")
    back = xr.open_dataset(tmp_path / "bold.nc")
    np.testing.assert_array_equal(back["image"], np.asanyarray(ref.dataobj).T)
    store = to_zarr(str(path), str(tmp_path / "bold.zarr"))
    from_store = xr.open_dataset(store, engine="nifti")
    assert from_store["image"].dims == ("time", "z", "y", "x")
    np.testing.assert_array_equal(from_store["image"], np.asanyarray(ref.dataobj).T)
    maps = xr.open_dataset(path, engine="nifti", maps=True)
    assert maps["image"].dims == ("component", "z", "y", "x") and "time" not in maps.coords


@pytest.mark.parametrize(
    ("shape", "dtype", "scaled", "affine"),
    [
        ((6, 7, 5, 9), np.float32, False, AFFINE),
        ((6, 7, 5, 9), np.int16, True, AFFINE),
        ((6, 7, 5), np.uint8, False, OBLIQUE),
    ],
)
def test_niizarr_store_opens_in_daskmasker(tmp_path, shape, dtype, scaled, affine):
    """A store written by the reference writer (raw values + header scaling, 4³ chunks of one
    volume, two levels) reads as nibabel reads the NIfTI file."""
    ref = _nifti(tmp_path / "a.nii", shape, dtype, affine, scaled)
    niizarr.nii2zarr(ref, str(tmp_path / "a.nii.zarr"), chunk=4, nb_levels=2)
    img = open_zarr(str(tmp_path / "a.nii.zarr"))
    expected = np.asanyarray(ref.dataobj).T
    assert img.dtype == expected.dtype
    np.testing.assert_array_equal(img.values, expected)
    np.testing.assert_array_equal(np.asarray(img.attrs["affine"]), ref.affine)
    assert (img.attrs["qform_code"], img.attrs["sform_code"]) == _codes(ref.header)
    assert img.dims == (("time",) if len(shape) == 4 else ()) + ("z", "y", "x")


def test_niizarr_stores_in_the_masker(tmp_path, maps, data):
    """Data and maps stores written by niizarr give the signals of the NIfTI files."""
    niizarr.nii2zarr(data, str(tmp_path / "run.nii.zarr"), chunk=8, nb_levels=1)
    niizarr.nii2zarr(maps, str(tmp_path / "maps.nii.zarr"), chunk=8, nb_levels=1, no_time=True)
    maps_store = open_zarr(str(tmp_path / "maps.nii.zarr"))
    assert maps_store.dims == ("component", "z", "y", "x")
    expected = NiftiMapsMasker(maps, detrend=True).fit_transform(data)
    got = NiftiMapsMasker(str(tmp_path / "maps.nii.zarr"), detrend=True).fit_transform(
        str(tmp_path / "run.nii.zarr")
    )
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("shape", "dtype", "scaled", "affine"),
    [
        ((6, 7, 5, 9), np.float32, False, AFFINE),
        ((6, 7, 5, 9), np.int16, True, OBLIQUE),
        ((6, 7, 5), np.float64, False, AFFINE),
    ],
)
def test_daskmasker_store_opens_in_niizarr(tmp_path, shape, dtype, scaled, affine):
    """niizarr's zarr->nifti reader gets the affine, codes, zooms and values of the source."""
    ref = _nifti(tmp_path / "a.nii.gz", shape, dtype, affine, scaled)
    store = to_zarr(str(tmp_path / "a.nii.gz"), str(tmp_path / "a.zarr"), chunks=4)
    out = niizarr.zarr2nii(store, str(tmp_path / "back.nii.gz"))
    np.testing.assert_array_equal(out.affine, ref.affine)
    assert _codes(out.header) == _codes(ref.header)
    assert out.header.get_zooms() == ref.header.get_zooms()
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), np.asanyarray(ref.dataobj))


def test_maps_store_opens_in_niizarr_as_channels(tmp_path, maps):
    """A maps store is NIfTI-Zarr's (x, y, z, 1, n): one time point, n channels."""
    store = to_zarr(maps, str(tmp_path / "maps.zarr"), maps=True)
    out = niizarr.zarr2nii(store, str(tmp_path / "maps.nii.gz"))
    assert out.shape == (*maps.shape[:3], 1, maps.shape[3])
    np.testing.assert_array_equal(np.asanyarray(out.dataobj)[..., 0, :], maps.get_fdata())
    np.testing.assert_array_equal(out.affine, maps.affine)


def _validated(store: str) -> Image:
    group = zarr.open_group(store, mode="r")
    image = Image.from_zarr(group)
    (multiscale,) = image.attributes.ome.multiscales
    level = group[multiscale.datasets[0].path]
    assert [axis.name for axis in multiscale.axes] == list(level.metadata.dimension_names)
    return multiscale


def test_stores_are_valid_ome_zarr_05(tmp_path, maps):
    """ome-zarr-models accepts 4D, 3D and maps stores; axes match the arrays' dimension_names,
    with mm and s units and scales of the voxel sizes and TR."""
    _nifti(tmp_path / "a.nii", dtype=np.int16)
    bold = _validated(to_zarr(str(tmp_path / "a.nii"), str(tmp_path / "a.zarr")))
    assert [(a.name, a.type, a.unit) for a in bold.axes] == [
        ("t", "time", "second"),
        ("z", "space", "millimeter"),
        ("y", "space", "millimeter"),
        ("x", "space", "millimeter"),
    ]
    (scale,) = bold.datasets[0].coordinateTransformations
    assert scale.scale == [2.5, 4.0, 3.0, 2.0]
    volume = _validated(to_zarr(open_nifti(tmp_path / "a.nii")[0], str(tmp_path / "v.zarr")))
    assert [a.name for a in volume.axes] == ["z", "y", "x"]
    atlas = _validated(to_zarr(maps, str(tmp_path / "maps.zarr"), maps=True))
    assert (atlas.axes[0].name, atlas.axes[0].type) == ("c", "channel")


def test_maps_have_a_component_axis(tmp_path, maps, data):
    """A maps image's 4th axis is ``component`` (declared with ``maps=True``; the masker does so
    for ``maps_img``), stored as channels and read back as such."""
    maps.to_filename(tmp_path / "maps.nii.gz")
    assert open_nifti(tmp_path / "maps.nii.gz").dims[0] == "time"
    as_maps = open_nifti(tmp_path / "maps.nii.gz", maps=True)
    assert as_maps.dims == ("component", "z", "y", "x") and "time" not in as_maps.coords
    assert load_image(str(tmp_path / "maps.nii.gz"), maps=True).dims[0] == "component"
    store = to_zarr(str(tmp_path / "maps.nii.gz"), str(tmp_path / "maps.zarr"), maps=True)
    assert open_zarr(store).dims[0] == "component"
    assert xr.open_zarr(store)["image"].dims == ("c", "z", "y", "x")
    np.testing.assert_array_equal(open_zarr(store).values, np.asarray(maps.dataobj).T)
    expected = NiftiMapsMasker(maps).fit_transform(data)
    np.testing.assert_array_equal(NiftiMapsMasker(store).fit_transform(data), expected)


def test_opening_reads_headers_only(tmp_path):
    """engine="nifti" and open_zarr of a niizarr store read no voxel: a file cut after its
    header and a store without chunks open; their values fail or are the fill value."""
    ref = _nifti(tmp_path / "cut.nii")
    blob = (tmp_path / "cut.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(blob[: int(ref.dataobj.offset)])
    ds = xr.open_dataset(tmp_path / "cut.nii", engine="nifti")
    assert ds["image"].shape == (9, 5, 7, 6)
    with pytest.raises(OSError, match="truncated"):
        np.asarray(ds["image"])
    niizarr.nii2zarr(_nifti(tmp_path / "a.nii"), str(tmp_path / "a.nii.zarr"), nb_levels=1)
    for chunk in (tmp_path / "a.nii.zarr" / "0" / "c").rglob("*"):
        if chunk.is_file():
            chunk.unlink()
    img = open_zarr(str(tmp_path / "a.nii.zarr"))
    assert img.shape == (9, 5, 7, 6) and not img.values.any()


def test_stores_of_the_previous_layout_still_open(tmp_path):
    """Stores written before NIfTI-Zarr 1.0 (header as a group attribute, OME-Zarr 0.4 array
    '0', metadata in the 'daskmasker' group attribute) open as they did."""
    ref = _nifti(tmp_path / "a.nii", dtype=np.int16, scaled=True)
    values = np.asanyarray(ref.dataobj).T
    group = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=3)
    group.create_array("0", shape=values.shape, dtype=values.dtype, chunks=(4, 5, 7, 6))[...] = (
        values
    )
    axes = [{"name": "t", "type": "time"}] + [{"name": n, "type": "space"} for n in "zyx"]
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1] * 4}]}]
    header = open_nifti(tmp_path / "a.nii").attrs["nifti_header"]
    group.attrs.update(
        multiscales=[{"version": "0.4", "axes": axes, "datasets": datasets}],
        nifti={"base64": header},
        daskmasker={"affine": AFFINE.tolist(), "t_r": 2.5, "complete": True},
    )
    img = open_zarr(str(tmp_path / "old.zarr"))
    np.testing.assert_array_equal(img.values, values)
    np.testing.assert_array_equal(np.asarray(img.attrs["affine"]), AFFINE)
    assert img.attrs["nifti_header"] == header and img.attrs["scl_slope"] == 0.5


def test_a_dtype_nifti_lacks_is_refused_before_writing(tmp_path):
    img = open_nifti(_nifti(tmp_path / "a.nii").get_filename()) > 100
    with pytest.raises(ValueError, match="dtype bool cannot be stored"):
        to_zarr(img, str(tmp_path / "mask.zarr"))
    assert not (tmp_path / "mask.zarr").exists()
    assert open_zarr(to_zarr(img.astype("uint8"), str(tmp_path / "mask.zarr"))).dtype == np.uint8
