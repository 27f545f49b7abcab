"""High-variance confounds: the numpy version against nilearn, the chunked pieces against it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nilearn.signal import high_variance_confounds as nilearn_high_variance_confounds

from daskmasker.compute.clean import detrend_signals
from daskmasker.compute.variance import (
    detrended_variance,
    high_variance_components,
    high_variance_confounds,
    merge_moments,
    select_high_variance,
    variance_moments,
)


def make_series(n_scans: int, n_voxels: int, seed: int, offset: float = 100.0) -> np.ndarray:
    """Voxels with means, trends, shared slow components and noise of varied amplitude."""
    rng = np.random.default_rng(seed)
    time = np.arange(n_scans)[:, np.newaxis]
    shared = rng.normal(size=(n_scans, 8)).cumsum(axis=0) @ rng.normal(size=(8, n_voxels))
    noise = rng.normal(size=(n_scans, n_voxels)) * rng.gamma(2.0, size=n_voxels)
    means = offset * (1 + rng.random(n_voxels))
    return means + 0.05 * time * rng.normal(size=n_voxels) + shared + noise


def assert_same_components(ours: np.ndarray, ref: np.ndarray, n: int | None = None):
    """Equal up to the sign of each component (compare |uᵀv| and the spanned projection)."""
    n = ref.shape[1] if n is None else n
    ours, ref = ours[:, :n], ref[:, :n]
    assert ours.shape == ref.shape
    np.testing.assert_allclose(np.abs(np.sum(ours * ref, axis=0)), 1.0, atol=1e-6)
    np.testing.assert_allclose(ours @ ours.T, ref @ ref.T, atol=1e-6)


@pytest.mark.parametrize("detrend", [True, False])
@pytest.mark.parametrize(("n_confounds", "percentile"), [(5, 2.0), (3, 10.0)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_high_variance_confounds_match_nilearn(detrend, n_confounds, percentile, dtype):
    series = make_series(80, 3000, seed=1).astype(dtype)
    ref = nilearn_high_variance_confounds(series.copy(), n_confounds, percentile, detrend)
    ours = high_variance_confounds(series, n_confounds, percentile, detrend)
    assert ours.dtype == ref.dtype == dtype
    assert_same_components(ours, ref)


def test_series_is_not_modified():
    series = make_series(30, 500, seed=2)
    original = series.copy()
    high_variance_confounds(series)
    np.testing.assert_array_equal(series, original)


def test_selection_is_strictly_above_the_percentile():
    variance = np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.nan])
    np.testing.assert_array_equal(
        select_high_variance(variance, 25.0), [False, False, False, False, True, False]
    )
    np.testing.assert_array_equal(select_high_variance(np.ones(4), 50.0), [False] * 4)


def test_moments_of_a_chunk_of_volumes():
    chunk = np.random.default_rng(3).normal(size=(4, 2, 3, 5))
    moments = variance_moments(chunk, offset=2, n_scans=10)
    ramp = np.arange(10.0) - 4.5
    ramp = ramp[2:6] / np.linalg.norm(ramp)
    flat = chunk.reshape(4, -1)
    centred = flat - flat.mean(axis=0)
    assert moments.shape == (3, 31)
    np.testing.assert_allclose(moments[:2, 0], [4, ramp.mean()], rtol=1e-14)
    np.testing.assert_allclose(moments[0, 1:], flat.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(moments[1, 1:], (centred**2).sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(moments[2, 1:], (ramp - ramp.mean()) @ centred, rtol=1e-12)
    with pytest.raises(ValueError, match="4 volumes at offset 7 does not fit in a series of 10"):
        variance_moments(chunk, offset=7, n_scans=10)


def _chunked_variance(series: np.ndarray, step: int, detrend: bool) -> np.ndarray:
    n = series.shape[0]
    parts = [variance_moments(series[a : a + step], a, n) for a in range(0, n, step)]
    return detrended_variance(merge_moments(np.stack(parts)), n, detrend)


@pytest.mark.parametrize("detrend", [True, False])
def test_variance_is_accurate_for_a_large_mean(detrend):
    """Mean/std up to ~5000: the merged moments keep float64 rounding (measured: 1.9e-12 with
    detrending, the worst chunking; 4e-15 without), where the plain sums of x and x² (the
    negative control) lose 8.7e-8."""
    series = make_series(300, 400, seed=4, offset=2e4)
    plain = detrend_signals(series) if detrend else series
    exact = (plain**2).mean(axis=0)
    for step in (1, 7, 50, 300):
        got = _chunked_variance(series, step, detrend)
        np.testing.assert_allclose(got, exact, rtol=4e-12 if detrend else 2e-14)
    ramp = np.arange(300.0) - 149.5
    ramp /= np.linalg.norm(ramp)
    sums = series.sum(axis=0), (series**2).sum(axis=0), ramp @ series
    naive = (sums[1] - sums[0] ** 2 / 300 - sums[2] ** 2) / 300 if detrend else sums[1] / 300
    if detrend:  # the squares of a mean of 2e4 swamp the fluctuations
        assert np.max(np.abs(naive - exact) / exact) > 1e-8


@st.composite
def chunked_series(draw):
    n_scans = draw(st.integers(8, 60))
    n_voxels = draw(st.integers(60, 400))
    cuts = draw(st.lists(st.integers(1, n_scans - 1), max_size=6, unique=True))
    bounds = [0, *sorted(cuts), n_scans]
    series = make_series(n_scans, n_voxels, seed=draw(st.integers(0, 2**16)))
    return series, bounds


@settings(max_examples=100, deadline=None)
@given(chunked_series(), st.sampled_from([2.0, 5.0, 20.0]), st.booleans(), st.integers(1, 4))
def test_chunked_pieces_equal_the_plain_function(data, percentile, detrend, split):
    series, bounds = data
    n_scans = series.shape[0]
    chunks = [(a, series[a:b]) for a, b in itertools.pairwise(bounds)]
    parts = np.stack([variance_moments(chunk, a, n_scans) for a, chunk in chunks])
    moments = merge_moments(parts)
    # merged in a tree (as Dask does) or in one go: the same moments, to rounding
    groups = [merge_moments(parts[i : i + split]) for i in range(0, len(parts), split)]
    np.testing.assert_allclose(merge_moments(np.stack(groups)), moments, rtol=1e-12, atol=1e-9)
    variance = detrended_variance(moments, n_scans, detrend)
    plain = detrend_signals(series) if detrend else series
    np.testing.assert_allclose(variance, (plain**2).mean(axis=0), rtol=1e-9)

    selected = select_high_variance(variance, percentile)
    np.testing.assert_array_equal(
        selected, select_high_variance((plain**2).mean(axis=0), percentile)
    )
    gathered = np.concatenate([chunk[:, selected] for _, chunk in chunks])
    ours = high_variance_components(gathered, 5, detrend)
    ref = high_variance_confounds(series, 5, percentile, detrend)
    rank = min(5, int(selected.sum()), n_scans - 2 if detrend else n_scans)
    assert_same_components(ours, ref, rank)
