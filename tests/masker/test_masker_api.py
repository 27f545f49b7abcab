"""scikit-learn compatibility, outputs, laziness and bounded memory of the masker."""

from __future__ import annotations

import pickle
import warnings

import dask
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from daskmasker import NiftiMapsMasker, to_zarr
from daskmasker.compute.plan import plan_extraction
from daskmasker.io import nifti_chunks

from helpers import make_data, traced_peak
from parity import TOL64, assert_close


def test_params_clone_pickle_pipeline(maps, data):
    masker = NiftiMapsMasker(maps, detrend=True, standardize="zscore_sample")
    assert masker.get_params()["detrend"] is True
    assert clone(masker).get_params()["standardize"] == "zscore_sample"
    masker.set_params(t_r=2.0)
    assert masker.t_r == 2.0
    out = masker.fit_transform(data)
    again = pickle.loads(pickle.dumps(masker)).transform(data)
    np.testing.assert_array_equal(out, again)
    piped = make_pipeline(NiftiMapsMasker(maps, detrend=True), StandardScaler()).fit_transform(data)
    assert piped.shape == out.shape


def test_outputs(maps, data):
    masker = NiftiMapsMasker(maps).fit(data)
    names = masker.get_feature_names_out()
    assert list(names) == [f"niftimapsmasker{k}" for k in range(masker.n_elements_)]
    frame = masker.set_output(transform="pandas").transform(data)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(names)
    lazy = masker.set_output(transform="xarray").transform(data)
    assert isinstance(lazy, xr.DataArray) and lazy.dims == ("time", "region")
    np.testing.assert_array_equal(lazy.values, frame.to_numpy())
    img = masker.set_output(transform="default").inverse_transform(frame.to_numpy())
    assert img.shape == (*masker.maps_img_.shape[:3], data.shape[3])


def test_fit_and_graph_building_read_no_voxels(tmp_path, monkeypatch, maps, data):
    path = tmp_path / "bold.nii"
    data.to_filename(path)
    reads = []
    original = nifti_chunks.read_volumes
    monkeypatch.setattr(nifti_chunks, "read_volumes", lambda *a: reads.append(a) or original(*a))
    masker = NiftiMapsMasker(maps, detrend=True).fit(str(path))
    lazy = masker.set_output(transform="xarray").transform(str(path))
    assert reads == [], "fit and building the transform graph read no voxel data"
    lazy.compute()
    assert reads


def _peak_bytes(masker, store) -> int:
    return traced_peak(lambda: masker.transform(store))[1]


def test_memory_is_bounded_by_chunks_not_volumes(tmp_path):
    """Four times the volumes must not need more memory: chunks of 10 volumes stream through."""
    shape = (48, 48, 48)
    volume_bytes = 48**3 * 4
    stores = {}
    for n in (150, 600):
        rng = np.random.default_rng(n)
        path = tmp_path / f"bold{n}.nii"
        nib.Nifti1Image(rng.normal(size=(*shape, n)).astype(np.float32), np.eye(4)).to_filename(
            path
        )
        stores[n] = to_zarr(str(path), str(tmp_path / f"bold{n}.zarr"), chunks=10)
    maps = nib.Nifti1Image(np.abs(np.random.default_rng(0).normal(size=(*shape, 5))), np.eye(4))
    masker = NiftiMapsMasker(maps).fit(stores[150])
    masker.transform(stores[150])  # the first transform's one-time allocations
    # one thread: the peak is the same from run to run (39.9 MB for 150 volumes, 35.7 for
    # 600, in 4 runs); with two threads it depends on how their batches interleave (50 to
    # 70 MB for either length), so the two-thread promise is the bound below
    with dask.config.set(num_workers=1):
        small, big = _peak_bytes(masker, stores[150]), _peak_bytes(masker, stores[600])
    assert big < 1.1 * small
    # a batch of the maps products per thread, the support voxels of a planned product batch
    # gathered in float32 (multiplied a slab at a time, without a merged or float64 copy),
    # and read chunks of 10 volumes: 60 volumes (27 MB) bound them, about 1.2 times the
    # highest two-thread peak measured; never the image. A product batch concatenated into
    # one buffer before its slabs are cast peaked at 143.8 MB (150) and 126.2 MB (600).
    plan = plan_extraction(600, volume_bytes, n_support=48**3, gathered_itemsize=4)
    bound = 2 * plan.batch_volumes * 48**3 * 4 + 60 * volume_bytes
    assert bound < 600 * volume_bytes / 2
    with dask.config.set(num_workers=2):
        for n in (150, 600):
            assert _peak_bytes(masker, stores[n]) < bound, n


def test_allow_overlap_false(maps, data):
    """nilearn's overlap error; and unlike nilearn (quirk Q3) the fitted maps are not clipped."""
    from nilearn.maskers import NiftiMapsMasker as NilearnMasker

    with pytest.raises(ValueError, match="Overlap detected in the maps"):
        NiftiMapsMasker(maps, allow_overlap=False).fit_transform(data)
    disjoint = np.zeros((*maps.shape[:3], 2))
    disjoint[:6, ..., 0] = np.random.default_rng(0).normal(size=(6, *maps.shape[1:3]))
    disjoint[8:, ..., 1] = 1.0  # map 0 has negative weights, nilearn clips them in maps_img_
    img = nib.Nifti1Image(disjoint, maps.affine)
    data = make_data(img, dtype=np.float64, shape=maps.shape[:3], affine=maps.affine)
    masker = NiftiMapsMasker(img, allow_overlap=False, resampling_target=None).fit(data)
    ours = masker.transform(data)
    np.testing.assert_array_equal(np.asarray(masker.maps_img_.dataobj), disjoint)
    kept_negative = NiftiMapsMasker(img, resampling_target=None).fit_transform(data)
    np.testing.assert_allclose(ours, kept_negative)
    clipped = NilearnMasker(img, allow_overlap=False, resampling_target=None).fit(data)
    clipped.transform(data)
    assert np.asarray(clipped.maps_img_.dataobj).min() == 0  # nilearn's in-place clipping


def test_dropped_maps_keep_inverse_transform_and_names_consistent(maps, data):
    """keep_masked_maps=False drops maps empty in the mask; unlike nilearn (quirk Q5) the
    feature names and inverse_transform follow the maps actually extracted."""
    from helpers import make_mask

    mask = make_mask(radius=5.0, centre=(12.0, 12.0, 6.0))
    with pytest.warns(UserWarning, match="maps with the following indices were removed"):
        masker = NiftiMapsMasker(maps, mask_img=mask).fit(data)
        signals = masker.transform(data)
    assert signals.shape[1] < masker.n_elements_
    assert len(masker.get_feature_names_out()) == signals.shape[1]
    img = masker.inverse_transform(signals)
    assert img.shape[3] == data.shape[3]


def test_inverse_transform_matches_nilearn(maps, data):
    from nilearn.maskers import NiftiMapsMasker as NilearnMasker

    from helpers import make_mask

    params = dict(maps_img=maps, mask_img=make_mask(), keep_masked_maps=True)
    with pytest.warns(FutureWarning):
        ours = NiftiMapsMasker(**params).fit(data)
        ref = NilearnMasker(**params).fit(data)
        signals = ref.transform(data)
    a, b = ours.inverse_transform(signals), ref.inverse_transform(signals)
    np.testing.assert_allclose(np.asarray(a.dataobj), np.asarray(b.dataobj), atol=1e-10)
    np.testing.assert_array_equal(a.affine, b.affine)


@pytest.mark.parametrize("standardize", [True, False, 1, 0, np.True_])
def test_boolean_like_standardize_warns_as_nilearn(maps, data, standardize):
    """nilearn's masker warns for ``standardize in [True, False]`` (so 1, 0 and np.True_ too),
    then ``signal.clean`` again for Python bools; 1 and np.True_ then fail in both."""
    from nilearn.maskers import NiftiMapsMasker as NilearnMasker

    def run(cls):
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            try:
                out = cls(maps, standardize=standardize).fit_transform(data)
            except ValueError as error:
                out = type(error)
        return out, [str(w.message) for w in records if w.category is FutureWarning]

    (ours, our_warnings), (ref, ref_warnings) = run(NiftiMapsMasker), run(NilearnMasker)
    assert our_warnings == ref_warnings
    assert our_warnings[0].startswith("boolean values for 'standardize'")
    if isinstance(ref, type):
        assert ours is ref
    else:
        assert_close(ours, ref, TOL64)


def test_empty_confounds_list_means_no_confounds(maps, data):
    """nilearn fails on ``confounds=[]`` (np.hstack of nothing); an empty list means none."""
    masker = NiftiMapsMasker(maps, detrend=True).fit(data)
    np.testing.assert_array_equal(masker.transform(data, confounds=[]), masker.transform(data))


def test_zarr_volumes_read_and_gathered_in_one_task(maps, data, tmp_path):
    """A 4D Zarr store is read and gathered by one task per chunk, a 3D store (seen as one
    volume) through the generic path; both give the numbers of the NIfTI image."""
    masker = NiftiMapsMasker(maps, detrend=True).fit(data)
    store4 = to_zarr(data, str(tmp_path / "run.zarr"), chunks=7)
    layers = masker.set_output(transform="xarray").transform(store4).data.dask.layers
    assert any(name.startswith("read-gather") for name in layers)
    masker.set_output(transform="default")
    np.testing.assert_allclose(masker.transform(store4), masker.transform(data), atol=1e-10)
    volume = nib.Nifti1Image(np.asarray(data.dataobj)[..., 3], data.affine)
    store3 = to_zarr(volume, str(tmp_path / "volume.zarr"))
    np.testing.assert_allclose(masker.transform(store3), masker.transform(volume), atol=1e-10)
