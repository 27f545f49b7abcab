"""Every output ready for exploration, in one list: each Zarr group daskmasker writes opens with a
plain ``xr.open_zarr`` without a warning, and in it and in every xarray object daskmasker returns,
every dimension of every variable has a coordinate (time in seconds where the TR is known) and
every variable, data and coordinates, has CF-style ``long_name``, ``units`` and ``description``.

A new kind of output is added to :data:`OUTPUTS`; the test runs over all of them.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable

import nibabel as nib
import numpy as np
import pytest
import xarray as xr

import daskmasker
from daskmasker import (
    MultiNiftiMapsMasker,
    NiftiMapsMasker,
    connectivity,
    connectivity_measure,
    open_nifti,
    open_timeseries,
    open_zarr,
    reclean,
    run_batch,
    to_zarr,
)
from daskmasker.batch.store import mark_pending, open_output, write_run
from daskmasker.cli import main
from daskmasker.demo import RUN_NAME, run_demo
from daskmasker.synthetic import make_maps
from daskmasker.synthetic_fmriprep import SMALL_AFFINE, SMALL_SHAPE, make_fmriprep_dataset

from helpers import BATCH_T_R, write_study

CF = ("long_name", "units", "description")
PARAMS = dict(standardize="zscore_sample", detrend=True)


def problems(obj: xr.Dataset | xr.DataArray) -> list[str]:
    """What keeps ``obj`` from being ready for exploration: a dimension without a coordinate,
    a variable without CF-style ``long_name``, ``units`` or ``description``."""
    if isinstance(obj, xr.DataArray):
        variables = {str(obj.name): obj.variable, **{k: c.variable for k, c in obj.coords.items()}}
    else:
        variables = dict(obj.variables)
    found = []
    for name, var in variables.items():
        found += [
            f"{name}: dimension {d!r} has no coordinate" for d in var.dims if d not in obj.coords
        ]
        missing = [key for key in CF if not str(var.attrs.get(key, "")).strip()]
        if missing:
            found.append(f"{name}: no {', '.join(missing)}")
    return found


def zarr_groups(store: str) -> list[str | None]:
    """Every Zarr group of a local store (None: the root), found on disk: a group zarr does not
    list (outside the consolidated metadata) is found too."""
    groups: list[str | None] = []
    for folder, _, files in os.walk(store):
        if "zarr.json" in files:
            with open(os.path.join(folder, "zarr.json")) as f:
                if json.load(f).get("node_type") == "group":
                    rel = os.path.relpath(folder, store)
                    groups.append(None if rel == "." else rel)
    return groups


def plain_open(store: str, group: str | None) -> xr.Dataset:
    """``xr.open_zarr(store, group=group)`` as a user types it, any warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(store, group=group)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Maps, a mask, two runs with a TR and confounds (:func:`helpers.write_study`), a run whose
    header has no TR, and the stores every other output is built from."""
    root = tmp_path_factory.mktemp("outputs")
    study = write_study(root)
    img = nib.load(study["runs"][0]["img"])
    no_tr = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    study["no_tr"] = str(root / "sub-03_task-rest_bold.nii.gz")
    no_tr.to_filename(study["no_tr"])
    study["run_store"] = to_zarr(study["runs"][0]["img"], str(root / "run.zarr"))
    imgs = [r["img"] for r in study["runs"]]
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **PARAMS)
    study["batch"] = str(root / "batch.zarr")
    run_batch(
        masker,
        imgs,
        study["batch"],
        confounds=[r["conf"] for r in study["runs"]],
        sample_masks=[np.arange(3, 38), None],
        brain_masks=[study["mask"]] * 2,
    )
    return study


def _image_store(study, **kwargs) -> str:
    name = "maps" if kwargs.get("maps") else "mask"
    return to_zarr(study[name], str(study["root"] / f"{name}.zarr"), **kwargs)


def _pending_first(study) -> str:
    """A first batch killed before it gathered: the root group created, a run written, no
    study arrays yet."""
    out = str(study["root"] / "pending-first.zarr")
    location = open_output(out, {}, overwrite=True, storage_options=None)
    mark_pending(location)
    write_run(location, "sub-01_task-rest", open_timeseries(study["batch"], "sub-01_task-rest"))
    return out


def _pending_later(study) -> str:
    """A later batch killed before it gathered: the previous study, a run not gathered."""
    out = str(study["root"] / "pending-later.zarr")
    shutil.copytree(study["batch"], out, dirs_exist_ok=True)
    location = open_output(out, {}, overwrite=False, storage_options=None)
    mark_pending(location)
    write_run(location, "sub-09_task-rest", open_timeseries(out, "sub-01_task-rest"))
    return out


def _atlases(study) -> list[str]:
    """The study stores of two atlases written in one pass."""
    maps = study["maps_img"]
    maps2 = str(study["root"] / "maps2.nii.gz")
    nib.Nifti1Image(np.asarray(maps.dataobj)[..., :4], maps.affine).to_filename(maps2)
    maskers = [NiftiMapsMasker(m, mask_img=study["mask"], **PARAMS) for m in (study["maps"], maps2)]
    outs = [str(study["root"] / f"atlas-{k}.zarr") for k in ("a", "b")]
    run_batch(maskers, [r["img"] for r in study["runs"]], outs)
    return outs


def _reclean(study) -> str:
    out = str(study["root"] / "reclean.zarr")
    result = reclean(study["batch"], out, detrend=False, overwrite=True)
    assert len(result.done) == 2, result
    return out


def _demo(study, store: str) -> str:
    """A store of ``daskmasker demo`` (run once, small): the converted run or the study."""
    if "demo" not in study:
        out = study["root"] / "demo"
        run_demo(out, n_volumes=3, n_maps=2, progress=False, verbose=False, announce=False)
        study["demo"] = {
            "run": str(out / f"{RUN_NAME}_bold.zarr"),
            "study": str(out / "timeseries.zarr"),
        }
    return study["demo"][store]


def _bids_app(study) -> list[str]:
    """The batch stores of ``daskmasker bids ... participant`` (one subject, one session), with
    the runs' brain masks (coverage)."""
    root = study["root"] / "bids"
    make_fmriprep_dataset(root / "fmriprep", subjects=("01",), sessions=("1",), n_volumes=20)
    make_maps(4, SMALL_SHAPE, SMALL_AFFINE, seed=1).to_filename(root / "atlas4.nii.gz")
    argv = ["-q", "bids", str(root / "fmriprep"), str(root / "out"), "participant"]
    assert main([*argv, "--maps", str(root / "atlas4.nii.gz"), "--no-progress"]) == 0
    return [str(p) for p in sorted((root / "out" / "stores").glob("*.zarr"))]


def _signals(study, img="img", **params) -> xr.DataArray:
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **{**PARAMS, **params})
    source = study["runs"][0]["img"] if img == "img" else study[img]
    return masker.set_output(transform="xarray").fit_transform(source)


def _multi(study, several: bool = False) -> xr.DataArray | list[xr.DataArray]:
    masker = MultiNiftiMapsMasker(study["maps"], mask_img=study["mask"], **PARAMS)
    imgs = [r["img"] for r in study["runs"]]
    out = masker.set_output(transform="xarray").fit_transform(imgs if several else imgs[0])
    if several:  # lazy and labelled as one image's, equal to the numbers of the default output
        assert [o.sizes["time"] for o in out] == [r["n"] for r in study["runs"]]
        default = masker.set_output(transform="default").transform(imgs)
        for got, want in zip(out, default, strict=True):
            np.testing.assert_array_equal(got.values, want)
    return out


# (kind, how to build it, the variable holding time in seconds or None): Zarr stores' paths
# (every group of each is checked), or the xarray objects daskmasker returns (or a list of them)
Built = str | list[str] | xr.Dataset | xr.DataArray | list[xr.DataArray]
OUTPUTS: dict[str, tuple[Callable[[dict], Built], str | None]] = {
    "to_zarr run (NIfTI-Zarr, OME-Zarr)": (lambda s: s["run_store"], "t"),
    "to_zarr maps": (lambda s: _image_store(s, maps=True), None),
    "to_zarr mask (3D)": (_image_store, None),
    "to_zarr run, no TR": (lambda s: to_zarr(s["no_tr"], str(s["root"] / "no_tr.zarr")), None),
    "open_zarr image": (lambda s: open_zarr(s["run_store"]), "time"),
    "open_nifti image": (lambda s: open_nifti(s["runs"][0]["img"]), "time"),
    "open_nifti image, no TR": (lambda s: open_nifti(s["no_tr"]), None),
    "open_nifti maps": (lambda s: open_nifti(s["maps"], maps=True), None),
    "open_nifti mask (3D)": (lambda s: open_nifti(s["mask"]), None),
    "xr.open_dataset engine=nifti": (
        lambda s: xr.open_dataset(s["runs"][0]["img"], engine="nifti"),
        "time",
    ),
    "batch store": (lambda s: s["batch"], "onset"),
    "batch store, first batch not gathered (runs/.pending)": (_pending_first, None),
    "batch store, later batch not gathered (runs/.pending)": (_pending_later, "onset"),
    "batch stores of several atlases": (_atlases, "onset"),
    "reclean store": (_reclean, "onset"),
    "open_timeseries(store)": (lambda s: open_timeseries(s["batch"]), "onset"),
    "open_timeseries(store, run)": (
        lambda s: open_timeseries(s["batch"], "sub-01_task-rest"),
        "time",
    ),
    "daskmasker bids participant stores": (_bids_app, "onset"),
    "demo: converted run": (lambda s: _demo(s, "run"), "t"),
    "demo: batch store": (lambda s: _demo(s, "study"), "onset"),
    "masker xarray output": (_signals, "time"),
    "masker xarray output, no TR": (lambda s: _signals(s, img="no_tr"), None),
    "masker xarray output, min_coverage": (lambda s: _signals(s, min_coverage=0.1), "time"),
    "MultiNiftiMapsMasker xarray output": (_multi, "time"),
    "MultiNiftiMapsMasker xarray output, a list of images": (
        lambda s: _multi(s, several=True),
        "time",
    ),
    "connectivity(ds)": (lambda s: connectivity(open_timeseries(s["batch"])), None),
    "connectivity(ds, vectorize=True)": (
        lambda s: connectivity(open_timeseries(s["batch"]), vectorize=True),
        None,
    ),
    "connectivity_measure(ds, 'tangent')": (
        lambda s: connectivity_measure(open_timeseries(s["batch"]), "tangent"),
        None,
    ),
}


@pytest.mark.parametrize("kind", list(OUTPUTS))
def test_every_output_is_ready_for_exploration(study, kind):
    build, seconds = OUTPUTS[kind]
    built = build(study)
    built = built if isinstance(built, list) else [built]
    assert built, f"{kind}: nothing written or returned"
    stores = [b for b in built if isinstance(b, str)]
    objects = [b for b in built if not isinstance(b, str)]
    for store in stores:
        groups = zarr_groups(store)
        assert groups, f"{kind}: no Zarr group in {store}"  # negative control: the walk sees them
        objects += [plain_open(store, group) for group in groups]
    for obj in objects:
        assert not problems(obj), f"{kind}: {problems(obj)}"
        if seconds is not None:
            assert obj[seconds].attrs["units"] == "s", (kind, obj[seconds].attrs)
            t_r = np.diff(obj[seconds].values[..., :2], axis=-1)
            np.testing.assert_allclose(t_r[np.isfinite(t_r)], BATCH_T_R)


def test_the_checks_see_what_is_missing(study, tmp_path):
    """Negative controls: a dimension without a coordinate, a variable without units, and a
    group without consolidated metadata are each seen."""
    ds = xr.Dataset(
        {"signals": (("time", "region"), np.zeros((2, 3)), dict(zip(CF, "abc", strict=True)))},
        coords={"region": ("region", np.arange(3), {"long_name": "r", "description": "d"})},
    )
    assert problems(ds) == ["signals: dimension 'time' has no coordinate", "region: no units"]
    ds.to_zarr(tmp_path / "plain.zarr", consolidated=False, zarr_format=3)
    with pytest.raises(RuntimeWarning, match="consolidated metadata"):
        plain_open(str(tmp_path / "plain.zarr"), None)
    assert daskmasker.__version__ and isinstance(daskmasker.__version__, str)
