"""MultiNiftiMapsMasker against nilearn's: lists of images with per-image confounds (tsv paths,
DataFrames, arrays, lists of these, None) and sample masks; numbers within ``TOL64``
(``tests/parity.py``), the same warnings and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nilearn.maskers import MultiNiftiMapsMasker as NilearnMulti

from daskmasker import MultiNiftiMapsMasker

from helpers import make_data
from parity import TOL64, assert_close, run

COLUMNS = ["csf", "white_matter", "trans_x"]  # a header as fMRIPrep writes it (skipped)


@pytest.fixture(scope="module")
def runs(maps, data):
    return [data, make_data(maps, n_scans=30, seed=2, dtype=np.float64)]


@pytest.fixture(scope="module")
def tables(runs):
    rng = np.random.default_rng(7)
    return [
        pd.DataFrame(rng.normal(size=(img.shape[3], 3)).cumsum(axis=0), columns=COLUMNS)
        for img in runs
    ]


@pytest.fixture(scope="module")
def tsvs(tmp_path_factory, tables):
    tmp = tmp_path_factory.mktemp("confounds")
    paths = []
    for i, table in enumerate(tables):
        path = tmp / f"sub-{i}_desc-confounds_timeseries.tsv"
        table.to_csv(path, sep="\t", index=False)
        paths.append(str(path))
    return paths


def _confounds(form, tables, tsvs):
    arrays = [t.to_numpy() for t in tables]
    return {
        "tsv": tsvs,
        "path": [Path(p) for p in tsvs],
        "dataframe": tables,
        "array": arrays,
        "none_entry": [None, arrays[1]],
        "lists": [[arrays[0][:, :1], tables[0].iloc[:, 1:]], [tsvs[1]]],
    }[form]


def assert_multi_parity(params, imgs, **kwargs) -> list:
    ref, ref_w, _ = run(NilearnMulti, params, imgs, imgs, **kwargs)
    out, out_w, _ = run(MultiNiftiMapsMasker, params, imgs, imgs, **kwargs)
    assert isinstance(out, list) and len(out) == len(ref)
    for i, (o, r) in enumerate(zip(out, ref, strict=True)):
        assert o.dtype == r.dtype
        assert_close(o, r, TOL64, what=f"image {i}")
    assert out_w == ref_w
    return out


@pytest.mark.parametrize("form", ["tsv", "path", "dataframe", "array", "none_entry", "lists"])
def test_confounds_per_image(maps, runs, tables, tsvs, form):
    params = dict(maps_img=maps, detrend=True, standardize="zscore_sample")
    confounds = _confounds(form, tables, tsvs)
    out = assert_multi_parity(params, runs, confounds=confounds)
    assert [o.shape for o in out] == [(40, 6), (30, 6)]


@pytest.mark.parametrize("form", ["indices", "booleans", "none_entry"])
def test_sample_mask_per_image(maps, runs, tables, form):
    keep0 = np.setdiff1d(np.arange(40), [0, 7, 8, 39])
    keep1 = np.ones(30, dtype=bool)
    keep1[[3, 4, 12]] = False
    sample_mask = {
        "indices": [keep0, np.flatnonzero(keep1)],
        "booleans": [np.isin(np.arange(40), keep0), keep1],
        "none_entry": [None, keep1],
    }[form]
    params = dict(maps_img=maps, detrend=True, standardize="zscore_sample")
    confounds = [t.to_numpy() for t in tables]
    out = assert_multi_parity(params, runs, confounds=confounds, sample_mask=sample_mask)
    assert out[1].shape == (27, 6)


@pytest.mark.parametrize("form", ["tsv", "dataframe", "array", "none_entry"])
def test_high_variance_confounds_after_the_users(maps, runs, tables, tsvs, form):
    """The multi masker appends the high-variance confounds after each image's confounds (the
    single masker puts them first), and leaves the caller's list as it was (nilearn replaces
    its items)."""
    confounds = _confounds(form, tables, tsvs)
    given = list(confounds)
    params = dict(maps_img=maps, high_variance_confounds=True, standardize="zscore_sample")
    out, _, _ = run(MultiNiftiMapsMasker, params, runs, runs, confounds=confounds)
    assert all(a is b for a, b in zip(confounds, given, strict=True))
    ref, _, _ = run(NilearnMulti, params, runs, runs, confounds=list(given))
    for o, r in zip(out, ref, strict=True):
        assert_close(o, r, TOL64)


def test_one_image_takes_the_first_items(maps, data, tsvs):
    """A single image with one-item lists, as nilearn's multi masker accepts it."""
    params = dict(maps_img=maps, detrend=True)
    kwargs = dict(confounds=[tsvs[0]], sample_mask=[np.arange(2, 38)])
    ref, ref_w, _ = run(NilearnMulti, params, data, data, **kwargs)
    out, out_w, _ = run(MultiNiftiMapsMasker, params, data, data, **kwargs)
    assert_close(out, ref, TOL64)
    assert out_w == ref_w


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(confounds=np.ones((40, 2))), TypeError),
        (dict(sample_mask=np.arange(5)), TypeError),
        (dict(confounds=[np.ones((40, 2))]), ValueError),
        (dict(sample_mask=[None, None, None]), ValueError),
    ],
)
def test_errors_as_nilearn(maps, runs, kwargs, error):
    messages = []
    for cls in (NilearnMulti, MultiNiftiMapsMasker):
        masker = cls(maps).fit(runs)
        with pytest.raises(error) as info:
            masker.transform(runs, **kwargs)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_high_variance_with_lists_of_confounds(maps, runs, tables):
    """Difference: each image's confounds given as a list work with high_variance_confounds
    (nilearn extends that list with the rows of the high-variance array and fails with
    "operands could not be broadcast together")."""
    arrays = [t.to_numpy() for t in tables]
    params = dict(maps_img=maps, high_variance_confounds=True)
    with pytest.raises(ValueError, match="could not be broadcast"):
        run(NilearnMulti, params, runs, runs, confounds=[[a] for a in arrays])
    ref, _, _ = run(NilearnMulti, params, runs, runs, confounds=list(arrays))
    out, _, _ = run(MultiNiftiMapsMasker, params, runs, runs, confounds=[[a] for a in arrays])
    for o, r in zip(out, ref, strict=True):
        assert_close(o, r, TOL64)


def test_imports_without_docstrings():
    # python -OO strips docstrings: the class built its docstring from NiftiMapsMasker's and
    # failed to import ("'NoneType' object has no attribute 'index'")
    import subprocess
    import sys

    code = "from daskmasker.maskers import MultiNiftiMapsMasker as M; print(M(n_jobs=2).n_jobs)"
    done = subprocess.run(
        [sys.executable, "-OO", "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
