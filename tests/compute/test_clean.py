"""Temporal cleaning against nilearn.signal.clean: values, dtypes, warnings and errors.

Tolerance: max |ours - nilearn| <= 1e-10 (float64) or 1e-5 (float32) times max |nilearn|.
Butterworth with a sample_mask is compared on masks for which nilearn's interpolation bug (it
fills the mirrors T-1-k of the kept volumes) is harmless, and separately against an independent
interpolation for the masks where it is not.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from nilearn import signal as nilearn_signal
from scipy.interpolate import make_interp_spline

from daskmasker.compute.clean import (
    STANDARDIZE_BOOL_WARNING,
    detrend_signals,
    regress_confounds,
    standardize_signals,
)
from daskmasker.compute.filters import butterworth, cosine_drift, interpolate_censored
from daskmasker.masker.cleaning import clean_signals

TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
K = 4
FILTERS = {
    "none": {},
    "low": dict(low_pass=0.1),
    "high": dict(high_pass=0.02),
    "band": dict(low_pass=0.1, high_pass=0.02),
    "cosine": dict(high_pass=0.02, filter="cosine"),
}
CONFOUNDS = ("none", "1d", "2d", "constant", "collinear")
SAMPLE_MASKS = ("none", "indices", "booleans")
STANDARDIZE = ("zscore_sample", "psc", True, False, None)


def make_signals(n_scans: int, seed: int = 0) -> np.ndarray:
    """Random walks around means of different signs and sizes."""
    rng = np.random.default_rng(seed)
    walks = rng.normal(size=(n_scans, K)).cumsum(axis=0)
    return walks + np.array([50.0, -20.0, 5.0, 300.0])


def make_confounds(kind: str, n_scans: int):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(n_scans, 3)).cumsum(axis=0)
    if kind == "none":
        return None
    if kind == "1d":
        return base[:, 0]
    if kind == "constant":
        return np.column_stack([base, np.full(n_scans, 3.0)])
    if kind == "collinear":
        near = base[:, 0] + 1e-7 * rng.normal(size=n_scans)
        return np.column_stack([base, near, base[:, 1] - 2 * base[:, 2]])
    return base


def censored_frames(n_scans: int) -> np.ndarray:
    """Censored volumes whose mirrors T-1-k are kept (so nilearn's bug is harmless)."""
    return np.array([0, 3, 7, 8, n_scans // 2 - 3, n_scans - 5])


def make_sample_mask(kind: str, n_scans: int):
    keep = np.setdiff1d(np.arange(n_scans), censored_frames(n_scans))
    if kind == "none":
        return None
    if kind == "booleans":
        return np.isin(np.arange(n_scans), keep)
    return keep


def _recorded(records) -> list[tuple[str, str]]:
    return [
        (w.category.__name__, str(w.message))
        for w in records
        if not issubclass(w.category, DeprecationWarning | PendingDeprecationWarning)
    ]


def run_both(signals, **kwargs):
    """nilearn's and our output and warnings (each on its own copies of the inputs)."""
    copies = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with warnings.catch_warnings(record=True) as ref_records:
        warnings.simplefilter("always")
        ref = nilearn_signal.clean(signals.copy(), **copies)
    with warnings.catch_warnings(record=True) as our_records:
        warnings.simplefilter("always")
        ours = clean_signals(signals, **kwargs)
    return ref, _recorded(ref_records), ours, _recorded(our_records)


def assert_close(ours, ref, context="", scale=None):
    """Within TOL times ``scale`` (default: the largest |value| of nilearn's output)."""
    assert ours.shape == ref.shape, context
    assert ours.dtype == ref.dtype, context
    scale = max(np.abs(ref).max(), 1e-12) if scale is None else scale
    err = np.abs(ours.astype(np.float64) - ref.astype(np.float64)).max() / scale
    assert err <= TOL[ref.dtype], f"relative error {err:.1e} {context}"


@pytest.mark.parametrize("mask_kind", SAMPLE_MASKS)
@pytest.mark.parametrize("conf_kind", CONFOUNDS)
@pytest.mark.parametrize("filt", sorted(FILTERS))
@pytest.mark.parametrize("n_scans", [40, 100])
def test_clean_matches_nilearn(n_scans, filt, conf_kind, mask_kind):
    """40 configurations each (detrend × standardize × standardize_confounds × dtype)."""
    confounds = make_confounds(conf_kind, n_scans)
    sample_mask = make_sample_mask(mask_kind, n_scans)
    for detrend, standardize, std_conf, dtype in itertools.product(
        [False, True], STANDARDIZE, [True, False], [np.float64, np.float32]
    ):
        kwargs = dict(
            detrend=detrend,
            standardize=standardize,
            standardize_confounds=std_conf,
            confounds=confounds,
            sample_mask=sample_mask,
            t_r=2.0,
            **FILTERS[filt],
        )
        signals = make_signals(n_scans).astype(dtype)
        ref, ref_w, ours, our_w = run_both(signals, **kwargs)
        context = f"{detrend=} {standardize=} {std_conf=} {dtype.__name__}"
        assert_close(ours, ref, context)
        assert our_w == ref_w, context


def test_zscore_is_zscore_sample_with_ddof_0():
    signals = make_signals(60)
    kwargs = dict(detrend=True, t_r=2.0, high_pass=0.01, confounds=make_confounds("2d", 60))
    ref = nilearn_signal.clean(signals, standardize="zscore_sample", **kwargs)
    ours = clean_signals(signals, standardize="zscore", **kwargs)
    assert_close(ours, ref * np.sqrt(60 / 59))


@pytest.mark.parametrize("standardize", ["zscore_sample", "psc"])
def test_constant_and_zero_columns(standardize):
    signals = make_signals(50)
    signals[:, 1] = 3.0
    signals[:, 2] = 0.0
    ref, ref_w, ours, our_w = run_both(signals, detrend=False, standardize=standardize, t_r=2.0)
    assert_close(ours, ref)
    assert our_w == ref_w
    np.testing.assert_array_equal(ours[:, 1:3], 0.0)
    assert ("UserWarning" in dict(our_w)) == (standardize == "psc")


@pytest.mark.parametrize(
    "dtype", [np.int16, np.int32, np.int64, np.uint8, np.float16, np.float32, np.float64]
)
@pytest.mark.parametrize("detrend", [False, True])
def test_output_dtype_matches_nilearn(dtype, detrend):
    signals = (make_signals(40) * 2).astype(dtype)
    ref, _, ours, _ = run_both(signals, detrend=detrend, standardize=None, t_r=2.0)
    assert ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, rtol=1e-3 if dtype == np.float16 else 1e-6)


def test_ensure_finite():
    signals = make_signals(40)
    signals[[3, 9], [0, 2]] = [np.nan, np.inf]
    ref, _, ours, _ = run_both(signals, detrend=True, ensure_finite=True, t_r=2.0, low_pass=0.2)
    assert np.isfinite(ours).all()
    assert_close(ours, ref)


def test_butterworth_options_match_nilearn():
    signals = make_signals(100)
    options = dict(butterworth__order=3, butterworth__padtype="even", butterworth__padlen=30)
    ref = nilearn_signal.clean(signals, detrend=True, t_r=1.5, high_pass=0.05, **options)
    ours = clean_signals(
        signals, detrend=True, t_r=1.5, high_pass=0.05, butterworth_order=3, padtype="even"
    )
    assert np.abs(ours - ref).max() > 1e-3, "padlen changes the result"
    ours = clean_signals(
        signals,
        detrend=True,
        t_r=1.5,
        high_pass=0.05,
        butterworth_order=3,
        padtype="even",
        padlen=30,
    )
    assert_close(ours, ref)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(t_r=2.0, high_pass=0.3),
        dict(t_r=2.0, low_pass=0.25),
        dict(t_r=2.0, high_pass=-0.1, low_pass=0.1),
        dict(t_r=2.0, high_pass=0.3, low_pass=0.4),
        dict(t_r=2.0, low_pass=0.1, filter=False),
        dict(t_r=2.0, high_pass=0.01, low_pass=0.1, filter="cosine"),
        dict(t_r=2.0, high_pass=0.3, filter="cosine"),
        dict(t_r=2.0, high_pass=0.001, filter="cosine"),
        dict(t_r=2.0, high_pass=0.02, filter="cosine", confounds="cosine"),
        dict(confounds="2d", detrend=False, standardize_confounds=False),
        dict(standardize="psc", signals="centered"),
        dict(standardize=True, detrend=True, signals="one volume"),
        dict(standardize=False),
    ],
    ids=lambda kwargs: _describe(kwargs),
)
def test_warnings_match_nilearn(kwargs):
    kwargs = dict(kwargs)
    signals = make_signals(40)
    kind = kwargs.pop("signals", None)
    if kind == "centered":
        signals[:, 0] = 0.0
    elif kind == "one volume":
        signals = signals[:1]
    if kwargs.get("confounds") == "cosine":
        drift = cosine_drift(0.02, 40, 2.0)
        kwargs["confounds"] = np.column_stack([make_confounds("2d", 40), drift[:, 0]])
    elif kwargs.get("confounds") == "2d":
        kwargs["confounds"] = make_confounds("2d", 40)
    ref, ref_w, ours, our_w = run_both(signals, **{"detrend": False, "standardize": None, **kwargs})
    assert ref_w, "the case must warn"
    assert our_w == ref_w
    assert_close(ours, ref, scale=np.abs(signals).max())


def test_boolean_standardize_warns_once_per_call():
    with pytest.warns(FutureWarning) as records:
        clean_signals(make_signals(30), standardize=True)
    assert [str(w.message) for w in records] == [STANDARDIZE_BOOL_WARNING]


def _describe(kwargs: dict) -> str:
    return "-".join(
        f"{k}={np.shape(v)}" if isinstance(v, np.ndarray) else f"{k}={v}"[:30]
        for k, v in kwargs.items()
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(low_pass=0.1, t_r=None), ValueError),
        (dict(low_pass=0.01, high_pass=0.1, t_r=2.0), ValueError),
        (dict(filter="wavelet", t_r=2.0, low_pass=0.1), ValueError),
        (dict(filter=None, t_r=2.0), ValueError),
        (dict(filter="cosine", t_r=2.0), ValueError),
        (dict(filter="cosine", t_r=None, high_pass=0.01), ValueError),
        (dict(t_r=2.0, low_pass=0.1, butterworth__padlen=100), ValueError),
        (dict(t_r=2.0, low_pass=0.1, high_pass=0.01, signals="short"), ValueError),
        (dict(t_r=2.0, low_pass=0.1, butterworth__padtype="foo"), ValueError),
        (dict(detrend=1), TypeError),
        (dict(standardize_confounds=1), TypeError),
        (dict(t_r="2"), TypeError),
        (dict(low_pass=True, t_r=2.0), TypeError),
        (dict(standardize="foo"), ValueError),
        (dict(standardize=1), ValueError),
        (dict(confounds=5), TypeError),
        (dict(confounds=[5]), TypeError),
        (dict(confounds=np.zeros((40, 2, 2))), ValueError),
        (dict(confounds=np.zeros((5, 2))), ValueError),
        (dict(sample_mask=[True] * 40), TypeError),
        (dict(sample_mask=[np.arange(3), np.arange(4)]), ValueError),
        (dict(sample_mask=np.array([-1, 2])), ValueError),
        (dict(sample_mask=np.array([1, 41])), IndexError),
        (dict(sample_mask=np.arange(41)), IndexError),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else _describe(value),
)
def test_errors_match_nilearn(kwargs, error):
    """Same exception type; nilearn's message is in ours (up to our added 'zscore' value)."""
    kwargs = dict(kwargs)
    signals = make_signals(20 if kwargs.pop("signals", None) == "short" else 40)
    nilearn_kwargs = {"detrend": False, **kwargs}
    ours_kwargs = {
        {"butterworth__padlen": "padlen", "butterworth__padtype": "padtype"}.get(k, k): v
        for k, v in kwargs.items()
    }
    with pytest.raises(error) as ref:
        nilearn_signal.clean(signals.copy(), **nilearn_kwargs)
    with pytest.raises(error) as ours:
        clean_signals(signals, **ours_kwargs)
    expected = str(ref.value).replace("'zscore_sample']", "'zscore_sample', 'zscore']")
    assert expected in str(ours.value)


def test_index_equal_to_n_scans_is_rejected_clearly():
    """nilearn lets index T through its check and fails later in numpy."""
    with pytest.raises(IndexError, match=r"invalid index \[40\]. The signal contains 40"):
        clean_signals(make_signals(40), sample_mask=np.array([1, 40]))


def _interpolated(volumes, keep, extrapolate):
    """Independent cubic (not-a-knot) interpolation of exactly the censored volumes."""
    out = volumes.copy()
    times = np.arange(volumes.shape[0]) * 2.0
    spline = make_interp_spline(times[keep], volumes[keep], k=3)
    censored = np.setdiff1d(np.arange(volumes.shape[0]), keep)
    out[censored] = spline(times[censored])
    if not extrapolate:
        out[censored[(censored < keep[0]) | (censored > keep[-1])]] = np.nan
    return out


@pytest.mark.parametrize("extrapolate", [False, True])
@pytest.mark.parametrize("censored", [[10, 49], [0, 1, 10, 49, 58, 59], [2, 3, 20, 39]])
def test_butterworth_with_sample_mask_interpolates_the_censored_volumes(censored, extrapolate):
    """nilearn fills the mirror T-1-k of each kept volume; we fill the censored volumes.

    nilearn given volumes already interpolated (independently) agrees with us, and nilearn
    given the raw volumes does not (its bug is visible on these masks).
    """
    n_scans = 60
    keep = np.setdiff1d(np.arange(n_scans), censored)
    signals, confounds = make_signals(n_scans), make_confounds("2d", n_scans)
    kwargs = dict(detrend=True, t_r=2.0, low_pass=0.1, high_pass=0.01, extrapolate=extrapolate)
    ours = clean_signals(signals, confounds=confounds, sample_mask=keep, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = nilearn_signal.clean(
            _interpolated(signals, keep, extrapolate),
            confounds=_interpolated(confounds, keep, extrapolate),
            sample_mask=keep.copy(),
            **kwargs,
        )
        buggy = nilearn_signal.clean(
            signals.copy(), confounds=confounds.copy(), sample_mask=keep.copy(), **kwargs
        )
    assert_close(ours, fixed)
    assert np.abs(ours - buggy).max() > 1e-3


@pytest.mark.parametrize("extrapolate", [False, True])
def test_butterworth_with_sample_mask_equals_nilearn_when_its_bug_is_harmless(extrapolate):
    n_scans = 60
    keep = np.setdiff1d(np.arange(n_scans), censored_frames(n_scans))
    assert np.isin(n_scans - 1 - censored_frames(n_scans), keep).all()
    ref, ref_w, ours, our_w = run_both(
        make_signals(n_scans),
        confounds=make_confounds("2d", n_scans),
        sample_mask=keep,
        detrend=True,
        t_r=2.0,
        low_pass=0.1,
        high_pass=0.01,
        extrapolate=extrapolate,
    )
    assert_close(ours, ref)
    assert our_w == ref_w


def test_interpolate_censored_fills_exactly_the_censored_volumes():
    signals = make_signals(30)
    keep = np.setdiff1d(np.arange(30), [0, 1, 5, 6, 29])
    for extrapolate in (False, True):
        filled = interpolate_censored(signals, keep, 2.0, extrapolate)
        expected = _interpolated(signals, keep, extrapolate)
        np.testing.assert_array_equal(filled[keep], signals[keep])
        np.testing.assert_allclose(filled, expected, rtol=1e-12, equal_nan=True)
        assert np.isnan(filled[[0, 1, 29]]).all() != extrapolate


def test_callers_arrays_are_not_modified():
    """nilearn shifts an int32 sample_mask in place (Butterworth, no extrapolation); we do not."""
    signals, confounds = make_signals(60), make_confounds("2d", 60)
    frame = pd.DataFrame(make_confounds("2d", 60) + 1)
    mask = np.arange(2, 60, dtype=np.int32)
    originals = [a.copy() for a in (signals, confounds, mask)] + [frame.copy()]
    kwargs = dict(detrend=True, t_r=2.0, low_pass=0.1)
    clean_signals(signals, confounds=[confounds, frame], sample_mask=mask, **kwargs)
    for array, original in zip((signals, confounds, mask), originals, strict=False):
        np.testing.assert_array_equal(array, original)
    pd.testing.assert_frame_equal(frame, originals[3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nilearn_signal.clean(signals, confounds=confounds, sample_mask=mask, **kwargs)
    assert mask[0] == 0, "nilearn mutates the caller's mask (quirk Q2)"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_detrend_matches_nilearn(dtype):
    signals = make_signals(50).astype(dtype)
    ours = detrend_signals(signals)
    ref = nilearn_signal._detrend(signals)
    assert ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("method", ["zscore_sample", "psc"])
def test_standardize_matches_nilearn(method):
    signals = make_signals(50)
    np.testing.assert_array_equal(
        standardize_signals(signals, method),
        nilearn_signal.standardize_signal(signals, False, method),
    )


@pytest.mark.parametrize(
    "cutoffs", [dict(low_pass=0.2), dict(high_pass=0.05), dict(low_pass=0.2, high_pass=0.05)]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_butterworth_matches_nilearn(cutoffs, dtype):
    signals = make_signals(80).astype(dtype)
    ref = nilearn_signal.butterworth(signals.copy(), sampling_rate=1.0, order=4, **cutoffs)
    ours = butterworth(signals, 1.0, order=4, **cutoffs)
    assert ours.dtype == ref.dtype == dtype
    np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL[np.dtype(dtype)] * np.abs(ref).max())


@pytest.mark.parametrize(("high_pass", "n_scans", "t_r"), [(0.01, 100, 2.0), (0.008, 37, 0.7)])
def test_cosine_drift_matches_nilearn(high_pass, n_scans, t_r):
    ref = nilearn_signal.create_cosine_drift(high_pass, np.arange(n_scans) * t_r)[:, :-1]
    np.testing.assert_array_equal(cosine_drift(high_pass, n_scans, t_r), ref)


def test_regress_confounds_removes_their_span():
    rng = np.random.default_rng(3)
    confounds = rng.normal(size=(50, 3))
    signals = confounds @ rng.normal(size=(3, 2)) + rng.normal(size=(50, 2))
    residuals = regress_confounds(signals, confounds)
    centered = confounds - confounds.mean(axis=0)
    np.testing.assert_allclose(centered.T @ residuals, 0, atol=1e-10)
    expected = signals - centered @ np.linalg.lstsq(centered, signals, rcond=None)[0]
    np.testing.assert_allclose(residuals, expected, atol=1e-10)
