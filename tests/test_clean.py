"""Temporal cleaning against nilearn.signal.clean, and the Butterworth + sample_mask fix."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from nilearn import signal as nilearn_signal

from daskmasker.clean import clean_signals, interpolate_censored

T = 60
RNG = np.random.default_rng(0)
SIGNALS = RNG.normal(size=(T, 4)).cumsum(0) + 50
CONFOUNDS = RNG.normal(size=(T, 3)).cumsum(0)
FILTERS = {
    "none": {},
    "low": dict(low_pass=0.1),
    "high": dict(high_pass=0.02),
    "band": dict(low_pass=0.1, high_pass=0.02),
    "cosine": dict(high_pass=0.02, filter="cosine"),
}
GRID = list(
    itertools.product(
        [False, True],
        ["zscore_sample", "psc", None],
        [True, False],
        [False, True],
        sorted(FILTERS),
    )
)


def _both(sample_mask=None, signals=SIGNALS, dtype=np.float64, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask32 = None if sample_mask is None else sample_mask.astype(np.int32)
        ref = nilearn_signal.clean(signals.astype(dtype), sample_mask=mask32, **kwargs)
        ours = clean_signals(signals.astype(dtype), sample_mask=sample_mask, **kwargs)
    return ref, ours


@pytest.mark.parametrize(("detrend", "standardize", "std_conf", "confounds", "filt"), GRID)
def test_clean_matches_nilearn(detrend, standardize, std_conf, confounds, filt):
    kwargs = dict(
        detrend=detrend,
        standardize=standardize,
        standardize_confounds=std_conf,
        confounds=CONFOUNDS if confounds else None,
        t_r=2.0,
        **FILTERS[filt],
    )
    ref, ours = _both(**kwargs)
    assert ours.dtype == ref.dtype
    assert np.abs(ours - ref).max() <= 1e-10 * np.abs(ref).max()
    if filt in ("none", "cosine"):  # censoring first: nilearn has no interpolation bug there
        keep = np.setdiff1d(np.arange(T), [0, 7, 8, 30, T - 1])
        ref, ours = _both(sample_mask=keep, **kwargs)
        assert np.abs(ours - ref).max() <= 1e-10 * np.abs(ref).max()


def test_float32_stays_float32():
    ref, ours = _both(dtype=np.float32, detrend=True, standardize="zscore_sample", t_r=2.0)
    assert ours.dtype == ref.dtype == np.float32
    assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max()


def test_butterworth_with_sample_mask_interpolates_the_censored_volumes():
    """nilearn interpolates mirrored volumes (its ``~`` on an int index array); we interpolate the
    censored ones.  Feeding nilearn series whose censored volumes already hold the interpolated
    values makes its bug harmless, and then both agree."""
    keep = np.setdiff1d(np.arange(T), [3, 10, T - 1 - 10])  # 10 and its mirror are censored
    kwargs = dict(detrend=True, standardize="zscore_sample", t_r=2.0, low_pass=0.1, high_pass=0.02)
    filled = interpolate_censored(SIGNALS, keep, 2.0, False)
    filled_conf = interpolate_censored(CONFOUNDS, keep, 2.0, False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = nilearn_signal.clean(
            filled, sample_mask=keep.astype(np.int32), confounds=filled_conf, **kwargs
        )
        ours = clean_signals(SIGNALS, sample_mask=keep, confounds=CONFOUNDS, **kwargs)
        buggy = nilearn_signal.clean(
            SIGNALS.copy(), sample_mask=keep.astype(np.int32), confounds=CONFOUNDS, **kwargs
        )
    assert np.abs(ours - ref).max() < 1e-12
    assert np.abs(ours - buggy).max() > 1e-3, "nilearn's bug changes the result here"


def test_interpolation_hits_kept_points_and_fills_censored():
    keep = np.setdiff1d(np.arange(T), [5, 6])
    filled = interpolate_censored(SIGNALS, keep, 2.0, True)
    np.testing.assert_array_equal(filled[keep], SIGNALS[keep])
    assert np.all(np.isfinite(filled))


def test_callers_arrays_are_not_modified():
    signals, conf, mask = SIGNALS.copy(), CONFOUNDS.copy(), np.arange(2, T, dtype=np.int32)
    clean_signals(signals, confounds=conf, sample_mask=mask, detrend=True, t_r=2.0, low_pass=0.1)
    np.testing.assert_array_equal(signals, SIGNALS)
    np.testing.assert_array_equal(conf, CONFOUNDS)
    np.testing.assert_array_equal(mask, np.arange(2, T))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(low_pass=0.1, t_r=None), "Repetition time"),
        (dict(low_pass=0.01, high_pass=0.1, t_r=2.0), "High pass cutoff"),
        (dict(filter="wavelet", t_r=2.0, low_pass=0.1), "Filter method wavelet not implemented"),
        (dict(filter="cosine", t_r=2.0), "must be specified for cosine filtering"),
    ],
)
def test_errors_match_nilearn(kwargs, match):
    with pytest.raises(ValueError, match=match):
        clean_signals(SIGNALS, **kwargs)
    with pytest.raises(ValueError, match=match):
        nilearn_signal.clean(SIGNALS, **kwargs)
