"""Temporal cleaning of region signals with nilearn 0.14.1's ``signal.clean`` semantics.

Pure numpy/scipy on a (T × K) array: detrending, Butterworth or cosine filtering, confound
regression, scrubbing with ``sample_mask`` and standardization, in nilearn's order:

* no filter or cosine: censor, detrend, regress confounds, standardize;
* Butterworth: interpolate censored volumes, detrend, filter, censor, regress, standardize.

One deliberate difference: with Butterworth filtering and a ``sample_mask``, nilearn's
``_interpolate_volumes`` indexes with ``~`` on an integer index array (a bitwise NOT), so it
interpolates the *mirrored* volumes ``T-1-k`` instead of the censored ones.  Here exactly the
censored volumes are interpolated (a cubic spline through the kept ones), which is what nilearn
documents.  The caller's arrays are never modified.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg
from scipy import signal as sp_signal
from scipy.interpolate import CubicSpline

from daskmasker.confounds import ensure_float

EPS64 = np.finfo(np.float64).eps
STANDARDIZE_BOOL_WARNING = (
    "boolean values for 'standardize' will be deprecated in nilearn 0.15.0.\n"
    "Use 'zscore_sample' instead of 'True' or use 'None' instead of 'False'."
)


def detrend_signals(signals: np.ndarray) -> np.ndarray:
    """Remove each column's mean and linear trend (a new array, in the signals' float dtype)."""
    x = ensure_float(np.array(signals, copy=True))
    if x.shape[0] == 1:
        warnings.warn(
            "Detrending of 3D signal has been requested but would lead to zero values. Skipping.",
            UserWarning,
            stacklevel=2,
        )
        return x
    x -= x.mean(axis=0)
    ramp = np.arange(x.shape[0], dtype=x.dtype)
    ramp -= ramp.mean()
    norm = np.sqrt((ramp**2).sum())
    if not norm < EPS64:
        ramp /= norm
    x -= np.outer(ramp, ramp @ x)
    return x


def standardize_signals(signals: np.ndarray, method: str | None) -> np.ndarray:
    """z-score (``'zscore_sample'`` ddof 1, ``'zscore'`` ddof 0) or percent signal change."""
    x = np.array(signals, copy=True)
    if method is None:
        return x
    if method not in ("zscore_sample", "zscore", "psc"):
        raise ValueError(
            f"'standardize' must be one of ['psc', 'zscore_sample', 'zscore']. Got {method!r}."
        )
    if x.shape[0] == 1:
        warnings.warn(
            "Standardization of 3D signal has been requested but would lead to zero values. "
            "Skipping.",
            UserWarning,
            stacklevel=2,
        )
        return x
    if method in ("zscore_sample", "zscore"):
        x = x - x.mean(axis=0)
        std = x.std(axis=0, ddof=1 if method == "zscore_sample" else 0)
        std[std < EPS64] = 1.0
        x /= std
        return x
    mean = x.mean(axis=0)
    invalid = np.abs(mean) < EPS64
    x = (x - mean) / np.abs(mean) * 100
    if invalid.any():
        warnings.warn(
            "psc standardization strategy is meaningless for features that have a mean of 0. "
            "These time series are set to 0.",
            UserWarning,
            stacklevel=2,
        )
        x[:, invalid] = 0
    return x


def _check_wn(btype: str, freq: float, nyq: float) -> float:
    eps = np.finfo(np.float32).eps
    if freq >= nyq:
        freq = nyq - (nyq * 10 * eps)
        warnings.warn(
            f"The frequency specified for the {btype} pass filter is too high to be handled by "
            "a digital filter (superior to Nyquist frequency). "
            f"It has been lowered to {freq} (Nyquist frequency).",
            UserWarning,
            stacklevel=3,
        )
    elif freq < 0.0:
        freq = nyq * eps
        warnings.warn(
            f"The frequency specified for the {btype} pass filter is too low to be handled by a "
            f"digital filter (must be non-negative). It has been set to eps: {freq}.",
            UserWarning,
            stacklevel=3,
        )
    return freq


def butterworth(
    signals: np.ndarray,
    sampling_rate: float,
    low_pass: float | None = None,
    high_pass: float | None = None,
    order: int = 5,
    padtype: str = "odd",
    padlen: int | None = None,
) -> np.ndarray:
    """Zero-phase Butterworth filtering of each column (``sosfiltfilt``), nilearn's rules."""
    x = np.array(signals, copy=True)
    if low_pass is None and high_pass is None:
        return x
    if low_pass is not None and high_pass is not None and high_pass >= low_pass:
        raise ValueError(
            f"High pass cutoff frequency ({high_pass}) is greater than or equal to low pass "
            f"filter frequency ({low_pass}). This case is not handled by this function."
        )
    nyq = sampling_rate * 0.5
    critical = []
    if high_pass is not None:
        btype = "high"
        critical.append(_check_wn(btype, high_pass, nyq))
    if low_pass is not None:
        btype = "low"
        critical.append(_check_wn(btype, low_pass, nyq))
    if len(critical) == 2:
        btype = "band"
        if critical[0] == critical[1]:
            warnings.warn(
                "Signals are returned unfiltered because band-pass critical frequencies are "
                "equal. Please check that inputs for sampling_rate, low_pass, and high_pass are "
                "valid.",
                UserWarning,
                stacklevel=2,
            )
            return x
        wn = critical
    else:
        wn = critical[0]
    sos = sp_signal.butter(N=order, Wn=wn, btype=btype, output="sos", fs=sampling_rate)
    filtered = sp_signal.sosfiltfilt(sos, x, axis=0, padtype=padtype, padlen=padlen)
    return filtered.astype(x.dtype, copy=False)


def cosine_drift(high_pass: float, n_scans: int, t_r: float) -> np.ndarray:
    """DCT-II drift regressors up to ``high_pass`` Hz, without the constant (n_scans × order)."""
    frame_times = np.arange(n_scans) * t_r
    dt = (frame_times[-1] - frame_times[0]) / (n_scans - 1) if n_scans > 1 else t_r
    if high_pass * dt >= 0.5:
        warnings.warn(
            "High-pass filter will span all accessible frequencies and saturate the design "
            f"matrix. You may want to reduce the high_pass value.The provided value is "
            f"{high_pass} Hz",
            UserWarning,
            stacklevel=2,
        )
    order = int(min(n_scans - 1, int(np.floor(2 * n_scans * high_pass * dt))))
    k = np.arange(1, order + 1)
    t = np.arange(n_scans)[:, None]
    return np.sqrt(2.0 / n_scans) * np.cos((np.pi / n_scans) * (t + 0.5) * k)


def _add_cosine_drift(confounds, high_pass, n_scans, t_r):
    drift = cosine_drift(high_pass, n_scans, t_r)
    if drift.shape[1] == 0:
        warnings.warn(
            "Cosine filter was not created. The time series might be too short or the high "
            "pass filter is not suitable for the data.",
            UserWarning,
            stacklevel=3,
        )
        return confounds
    if confounds is None:
        return drift.copy()
    corr = np.corrcoef(drift.T, confounds.T)
    np.fill_diagonal(corr, 0)
    if (corr[: drift.shape[1], :].flatten() > 0.9).sum() > 0:
        warnings.warn(
            "Cosine filter(s) exist in user supplied confounds.Use user supplied regressors only.",
            UserWarning,
            stacklevel=3,
        )
        return confounds
    return np.hstack((confounds, drift))


def interpolate_censored(
    volumes: np.ndarray, sample_mask: np.ndarray, t_r: float, extrapolate: bool
) -> np.ndarray:
    """Replace the censored volumes (those not in ``sample_mask``) by a cubic spline of the kept.

    Outside the kept range the values are extrapolated, or NaN when ``extrapolate`` is False.
    """
    out = np.array(volumes, copy=True)
    frame_times = np.arange(out.shape[0]) * t_r
    spline = CubicSpline(frame_times[sample_mask], out[sample_mask], extrapolate=extrapolate)
    censored = np.ones(out.shape[0], dtype=bool)
    censored[sample_mask] = False
    out[censored] = spline(frame_times[censored])
    return out


def regress_confounds(
    signals: np.ndarray, confounds: np.ndarray, standardize_confounds: bool = True
) -> np.ndarray:
    """Project the confounds out of the signals (pivoted QR, nilearn's rank threshold)."""
    if standardize_confounds:
        conf = standardize_signals(confounds, "zscore_sample")
    else:
        conf = np.array(confounds, dtype=np.float64 if confounds.dtype.kind != "f" else None)
        peak = np.max(np.abs(conf), axis=0)
        peak[peak == 0] = 1
        conf = conf / peak
    q, r, _ = linalg.qr(conf, mode="economic", pivoting=True)
    q = q[:, np.abs(np.diag(r)) > EPS64 * 100.0]
    out = np.array(signals, copy=True)
    out -= q @ (q.T @ out)
    return out


def check_filter(filter, low_pass, high_pass, t_r):
    """nilearn's filter checks; returns the effective filter ('butterworth', 'cosine', False)."""
    if filter not in ("butterworth", "cosine", False):
        raise ValueError(f"Filter method {filter} not implemented.")
    if filter is False:
        if any(isinstance(f, float | int) for f in (low_pass, high_pass)):
            warnings.warn(
                "No filter type selected but cutoff frequency provided.Will not perform filtering.",
                UserWarning,
                stacklevel=3,
            )
        return False
    if filter == "cosine":
        if t_r is None or high_pass is None:
            raise ValueError(
                "Repetition time (t_r) and low cutoff frequency (high_pass) must be specified "
                f"for cosine filtering. Got: 't_r={t_r!r}' and 'high_pass={high_pass!r}'"
            )
        return "cosine"
    if low_pass is None and high_pass is None:
        return False
    if t_r is None:
        raise ValueError(
            f"Repetition time (t_r) must be specified for butterworth filtering. Got: 't_r={t_r!r}'"
        )
    return "butterworth"


def clean_signals(
    signals: np.ndarray,
    *,
    detrend: bool = False,
    standardize="zscore_sample",
    standardize_confounds: bool = True,
    confounds: np.ndarray | None = None,
    sample_mask: np.ndarray | None = None,
    t_r: float | None = None,
    low_pass: float | None = None,
    high_pass: float | None = None,
    filter="butterworth",
    extrapolate: bool = False,
    ensure_finite: bool = False,
    butterworth_order: int = 5,
    padtype: str = "odd",
    padlen: int | None = None,
) -> np.ndarray:
    """Clean (T × K) signals as ``nilearn.signal.clean`` does for one run.

    Parameters
    ----------
    signals : ndarray, shape (T, K)
    detrend : bool
    standardize : {'zscore_sample', 'zscore', 'psc', True, False, None}
    standardize_confounds : bool
    confounds : ndarray of shape (T, C), optional
        Already loaded (see :func:`daskmasker.confounds.load_confounds`).
    sample_mask : int ndarray, optional
        Indices of the volumes to keep (see :func:`daskmasker.confounds.load_sample_mask`).
    t_r, low_pass, high_pass : float, optional
    filter : {'butterworth', 'cosine', False}
    extrapolate : bool
        With Butterworth and a sample mask, extrapolate censored volumes at the edges.
    ensure_finite : bool
        Replace non-finite values by 0 first.
    butterworth_order, padtype, padlen
        Butterworth options (nilearn's ``butterworth__*`` clean_args).

    Returns
    -------
    ndarray
        The cleaned signals (a new array), ``len(sample_mask)`` rows when censoring.
    """
    if confounds is not None and not detrend and not standardize_confounds:
        warnings.warn(
            "When confounds are provided, one must perform detrend and/or standardize "
            f"confounds. You provided detrend={detrend}, "
            f"standardize_confounds={standardize_confounds}. If confounds were not "
            "standardized or demeaned before passing to signal.clean signal will not be "
            "correctly cleaned. ",
            UserWarning,
            stacklevel=2,
        )
    filter_type = check_filter(filter, low_pass, high_pass, t_r)
    x = ensure_float(np.array(signals, copy=True))
    if ensure_finite:
        x[~np.isfinite(x)] = 0
    conf = None if confounds is None else ensure_float(np.array(confounds, copy=True))
    if isinstance(standardize, bool):
        warnings.warn(STANDARDIZE_BOOL_WARNING, FutureWarning, stacklevel=2)
        standardize = "zscore_sample" if standardize else None
    mask = None if sample_mask is None else np.asarray(sample_mask, dtype=np.int64)

    if filter_type == "cosine":
        conf = _add_cosine_drift(conf, high_pass, x.shape[0], t_r)
        if low_pass is not None:
            warnings.warn(
                "low_pass is not implemented for filter='cosine'", UserWarning, stacklevel=2
            )
    if mask is not None:
        if filter_type == "butterworth":
            x = interpolate_censored(x, mask, t_r, extrapolate)
            keep_rows = ~np.isnan(x).all(axis=1)
            x = x[keep_rows]
            if conf is not None:
                conf = interpolate_censored(conf, mask, t_r, extrapolate)
                conf = conf[~np.isnan(conf).all(axis=1)]
            if not extrapolate:
                mask = mask - mask[0]
        else:
            x = x[mask]
            conf = None if conf is None else conf[mask]

    mean_before = x.mean(axis=0)
    if detrend:
        x = detrend_signals(x)
        if conf is not None:
            conf = detrend_signals(conf)
    if filter_type == "butterworth":
        kwargs = dict(order=butterworth_order, padtype=padtype, padlen=padlen)
        x = butterworth(x, 1.0 / t_r, low_pass=low_pass, high_pass=high_pass, **kwargs)
        if conf is not None:
            conf = butterworth(conf, 1.0 / t_r, low_pass=low_pass, high_pass=high_pass, **kwargs)
        if mask is not None:
            x = x[mask]
            conf = None if conf is None else conf[mask]
    if conf is not None:
        x = regress_confounds(x, conf, standardize_confounds)
    if not standardize:
        return x
    if standardize == "psc":
        mean_check = np.abs(x.mean(0)).mean() / np.abs(mean_before).mean() < 1e-1
        if mean_check:
            return standardize_signals(x + mean_before, "psc")
    return standardize_signals(x, standardize)
