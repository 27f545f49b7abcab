"""Several atlases in one pass: each atlas's own masker's numbers, each image read once."""

from __future__ import annotations

import itertools
import warnings

import dask
import numpy as np
import pytest

from daskmasker import NiftiMapsMasker, config, open_timeseries
from daskmasker.io import nifti_chunks
from daskmasker.masker.fit_cache import FIT_CACHE
from daskmasker.masker.many import extract_many

from helpers import make_data, make_maps, make_mask

config.get("chunk-bytes")  # defaults registered before any dask.config.set block
PARAMS = dict(mask_img=make_mask(), detrend=True, standardize="zscore_sample")


@pytest.fixture(scope="module")
def atlases():
    return [make_maps(n_maps=k, seed=k, dtype=np.float64) for k in (3, 6, 9)]


@pytest.fixture
def run_gz(tmp_path, atlases):
    path = tmp_path / "run.nii.gz"
    make_data(atlases[1], n_scans=30, dtype=np.float32).to_filename(path)
    return str(path)


@pytest.fixture
def reads(monkeypatch):
    """Every chunk read of a .nii.gz: (path, first volume, last volume)."""
    calls = []
    original = nifti_chunks.read_volumes

    def counting(url, storage_options, header_blob, t0, t1, ndim):
        calls.append((url, t0, t1))
        return original(url, storage_options, header_blob, t0, t1, ndim)

    monkeypatch.setattr(nifti_chunks, "read_volumes", counting)
    return calls


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_each_atlas_as_its_own_masker_and_one_read(atlases, run_gz, reads, sparse):
    density = 1.0 if sparse else 0.0
    settings = {
        "daskmasker.sparse-maps-density": density,
        "daskmasker.sparse-products-density": density,
        "daskmasker.chunk-bytes": 5 * 12 * 15 * 11 * 4,  # 5 volumes a chunk: 6 chunks
    }
    FIT_CACHE._entries.clear()
    with dask.config.set(settings):
        expected = [
            _quiet(NiftiMapsMasker(maps_img=a, **PARAMS).fit_transform, run_gz) for a in atlases
        ]
        separate = len(reads)
        reads.clear()
        outputs = _quiet(extract_many, run_gz, maps=atlases, **PARAMS)
    chunks = sorted(set(reads))
    assert len(chunks) == 6
    assert sorted(reads) == chunks  # every chunk read once for the three atlases
    assert separate == 3 * len(chunks)  # the control: one masker per atlas reads it three times
    assert [o.shape for o in outputs] == [e.shape for e in expected]
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_list_of_images_with_confounds(atlases):
    data = [make_data(atlases[1], n_scans=20, seed=s) for s in (1, 2)]
    confounds = [np.random.default_rng(s).standard_normal((20, 2)) for s in (1, 2)]
    outputs = _quiet(extract_many, data, maps=atlases[:2], confounds=confounds, **PARAMS)
    assert len(outputs) == 2 and all(len(per_atlas) == 2 for per_atlas in outputs)
    for a, atlas in enumerate(atlases[:2]):
        masker = _quiet(NiftiMapsMasker(maps_img=atlas, **PARAMS).fit, data[0])
        for i, img in enumerate(data):
            want = _quiet(masker.transform, img, confounds=confounds[i])
            np.testing.assert_allclose(outputs[a][i], want, atol=1e-12 * np.abs(want).max())


def test_errors_name_the_input(atlases):
    data = make_data(atlases[0], n_scans=10)
    with pytest.raises(TypeError, match="maps must be a non-empty list"):
        extract_many(data, maps=atlases[0])
    with pytest.raises(ValueError, match=r"number of confounds \(1\) unequal"):
        extract_many([data, data], maps=atlases, confounds=[None])


@pytest.mark.parametrize(
    "settings",
    [{}, {"daskmasker.batch.whole-item-bytes": 0}],
    ids=["whole", "graph-per-item"],
)
def test_cli_one_store_per_atlas(tmp_path, atlases, run_gz, reads, settings):
    """The batch (small runs whole on a worker, or one graph per run) reads each chunk of a run
    once for both atlases."""
    from daskmasker.cli import main

    paths = []
    for k, atlas in enumerate(atlases[:2]):
        paths.append(str(tmp_path / f"atlas{k}.nii.gz"))
        atlas.to_filename(paths[-1])
    out = tmp_path / "out"
    argv = ["extract", run_gz, "--maps", paths[0], "--maps", paths[1], "--out", str(out)]
    with dask.config.set(settings):
        assert _quiet(main, [*argv, "--detrend", "--no-progress", "--no-report"]) == 0
    runs = [r for r in reads if r[0] == run_gz]
    assert runs and sorted(set(runs)) == sorted(runs)  # each chunk of the run read once
    for path in paths:
        name = path.rsplit("/", 1)[1].removesuffix(".nii.gz")
        stored = open_timeseries(str(out / f"{name}.zarr"), "run")
        want = _quiet(NiftiMapsMasker(maps_img=path, detrend=True).fit_transform, run_gz)
        np.testing.assert_allclose(stored["signals"].values, want, atol=1e-12 * np.abs(want).max())
    # a second run finds every item complete in every store and reads nothing
    reads.clear()
    assert _quiet(main, [*argv, "--detrend", "--no-progress"]) == 0
    assert [r for r in reads if r[0] == run_gz] == []
    # other parameters: refused (each atlas's store keeps its runs' fingerprints), not skipped
    assert _quiet(main, [*argv, "--no-progress"]) == 2
    assert _quiet(main, [*argv, "--no-progress", "--overwrite"]) == 0
    stored = open_timeseries(str(out / "atlas0.zarr"), "run")
    want = _quiet(NiftiMapsMasker(maps_img=paths[0]).fit_transform, run_gz)
    np.testing.assert_allclose(stored["signals"].values, want, atol=1e-12 * np.abs(want).max())


def _fit_spans(monkeypatch):
    """(start, end) of each atlas's maps fit (``fitting._fit``), in whatever thread."""
    import time

    from daskmasker.masker import fitting

    spans, original = [], fitting._fit

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spans.append((start, time.perf_counter()))

    monkeypatch.setattr(fitting, "_fit", timed)
    return spans


@pytest.mark.parametrize("cpus", [2, 1], ids=["two-cpus", "one-cpu"])
def test_fit_many_fits_the_atlases_at_once(tmp_path, atlases, run_gz, monkeypatch, cpus):
    """With two CPUs the atlases' maps are fitted in two threads (their fits overlap), once
    each; with one, one after another (the control).  Each masker equals its own fit."""
    from daskmasker.masker.many import fit_many

    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    paths = []
    for k, atlas in enumerate(atlases):
        paths.append(str(tmp_path / f"atlas{k}.nii.gz"))
        atlas.to_filename(paths[-1])
    FIT_CACHE._entries.clear()
    spans = _fit_spans(monkeypatch)
    maskers = _quiet(fit_many, paths, run_gz, **PARAMS)
    assert len(spans) == len(paths)  # each atlas fitted once: the maskers found them cached
    overlaps = sum(b[0] < a[1] and a[0] < b[1] for a, b in itertools.combinations(spans, 2))
    assert (overlaps > 0) == (cpus > 1), spans
    FIT_CACHE._entries.clear()
    for path, masker in zip(paths, maskers, strict=True):
        alone = _quiet(NiftiMapsMasker(maps_img=path, **PARAMS).fit, run_gz)
        np.testing.assert_array_equal(masker.maps_img_.get_fdata(), alone.maps_img_.get_fdata())


def test_fit_many_warns_as_the_fits_one_by_one(tmp_path, atlases, run_gz, monkeypatch):
    """A warning raised while the atlases are fitted at once (a mask with NaN) is not lost or
    doubled: each masker's own fit warns, as it would alone."""
    import nibabel as nib

    from daskmasker.masker.many import fit_many

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    mask = make_mask()
    data = mask.get_fdata().astype(np.float32)
    data[0, 0, 0] = np.nan
    nan_mask = nib.Nifti1Image(data, mask.affine)
    FIT_CACHE._entries.clear()
    spans = _fit_spans(monkeypatch)
    params = {**PARAMS, "mask_img": nan_mask}
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        fit_many(atlases, run_gz, **params)
    messages = [str(r.message) for r in records if "Non-finite" in str(r.message)]
    assert len(messages) == len(atlases), messages  # one per masker's fit, as fit one by one
    assert all(r.filename == __file__ for r in records), {r.filename for r in records}
    assert len(spans) == 2 * len(atlases)  # fitted at once, then again by each masker's fit
