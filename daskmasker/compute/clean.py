"""Temporal cleaning of (T × K) region signals with nilearn 0.14.1's ``signal.clean`` semantics.

Pure numpy/scipy, one run.  The steps and their order are nilearn's:

* without a filter or with ``filter='cosine'``: censor (``sample_mask``), detrend, regress the
  confounds, standardize;
* with a Butterworth filter: interpolate the censored volumes, detrend, filter, censor, regress
  the confounds, standardize.

Confounds are detrended and filtered like the signals; cosine drifts are built on the full-length
series and then treated as confounds.  float32 signals stay float32 throughout, as in nilearn.

Two deliberate differences from nilearn (both with Butterworth filtering and a ``sample_mask``): the
censored volumes themselves are interpolated (nilearn interpolates mirrored volumes, see
:func:`daskmasker.compute.filters.interpolate_censored`), and the caller's ``sample_mask`` is not
shifted in place (nilearn mutates an int32 array with ``-=``).  No function here modifies its
inputs.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any, Literal

import numpy as np
from scipy import linalg

from daskmasker.compute.filters import add_cosine_drift, butterworth, interpolate_censored
from daskmasker.stacklevel import find_stack_level

EPS64 = np.finfo(np.float64).eps
STANDARDS = ("psc", "zscore_sample", "zscore")
STANDARDIZE_BOOL_WARNING = (
    "boolean values for 'standardize' will be deprecated in nilearn 0.15.0.\n"
    "Use 'zscore_sample' instead of 'True' or use 'None' instead of 'False'."
)


def ensure_float(data: np.ndarray) -> np.ndarray:
    """nilearn's ``_ensure_float``: float arrays unchanged, 8-byte others float64, else float32.

    Examples
    --------
    >>> ensure_float(np.arange(3, dtype=np.int16)).dtype
    dtype('float32')
    >>> ensure_float(np.arange(3, dtype=np.int64)).dtype
    dtype('float64')
    """
    if data.dtype.kind != "f":
        return data.astype(np.float64 if data.dtype.itemsize == 8 else np.float32)
    return data


def _as_float_array(signals: np.ndarray) -> np.ndarray:
    """A float copy as sklearn's ``as_float_array`` (used by nilearn's ``_detrend``) makes it."""
    x = np.asarray(signals)
    if x.dtype in (np.float32, np.float64):
        return x.copy()
    if x.dtype.kind in "uib" and x.dtype.itemsize <= 4:
        return x.astype(np.float32)
    return x.astype(np.float64)


def detrend_signals(signals: np.ndarray) -> np.ndarray:
    """Remove each column's mean and linear trend (nilearn's ``_detrend``).

    Computed in the signals' dtype (float32 stays float32; integers ≤ 4 bytes become float32,
    others float64).  A single volume is returned as is, with nilearn's ``UserWarning``.

    Parameters
    ----------
    signals : ndarray, shape (T, K)

    Returns
    -------
    ndarray
        A new array.

    Examples
    --------
    >>> detrend_signals(np.array([[1.0, 5.0], [2.0, 3.0], [3.0, 4.0]])).round(12) + 0.0
    array([[ 0. ,  0.5],
           [ 0. , -1. ],
           [ 0. ,  0.5]])
    """
    x = _as_float_array(signals)
    if x.shape[0] == 1:
        warnings.warn(
            "Detrending of 3D signal has been requested but would lead to zero values. Skipping.",
            UserWarning,
            stacklevel=find_stack_level(),
        )
        return x
    x -= np.mean(x, axis=0)
    ramp = np.arange(x.shape[0], dtype=x.dtype)
    ramp -= ramp.mean()
    norm = np.sqrt((ramp**2).sum())
    if not norm < EPS64:
        ramp /= norm
    x -= np.dot(ramp, x) * ramp[:, np.newaxis]
    return x


def zscore(signals: np.ndarray, ddof: int = 1) -> np.ndarray:
    """Center each column and divide by its standard deviation (``ddof=1``: 'zscore_sample').

    Columns whose standard deviation is below float64 eps are only centered, so a constant
    column becomes 0 rather than NaN.
    """
    x = ensure_float(np.array(signals, copy=True))
    x -= x.mean(axis=0)
    std = x.std(axis=0, ddof=ddof)
    std[std < EPS64] = 1.0
    x /= std
    return x


def percent_signal_change(signals: np.ndarray) -> np.ndarray:
    """``(x - mean) / |mean| * 100`` per column; columns of ~zero mean become 0 (with a warning)."""
    x = ensure_float(np.asarray(signals))
    mean = x.mean(axis=0)
    invalid = np.abs(mean) < EPS64
    x = (x - mean) / np.abs(mean)
    x *= 100
    if invalid.any():
        warnings.warn(
            "psc standardization strategy is meaningless for features that have a mean of 0. "
            "These time series are set to 0.",
            UserWarning,
            stacklevel=find_stack_level(),
        )
        x[:, invalid] = 0
    return x


def standardize_signals(
    signals: np.ndarray, method: Literal["zscore_sample", "zscore", "psc"] | None
) -> np.ndarray:
    """Standardize each column: 'zscore_sample' (ddof 1), 'zscore' (ddof 0), 'psc' or None.

    nilearn's ``standardize_signal`` (plus 'zscore'): a single volume is returned unchanged with
    a ``UserWarning``; any other method is a ``ValueError``.

    Returns
    -------
    ndarray
        A new array.
    """
    if method is None:
        return np.array(signals, copy=True)
    if method not in STANDARDS:
        raise ValueError(
            f"'standardize' must be one of {list(STANDARDS)}.\n'{method}' was provided."
        )
    if signals.shape[0] == 1:
        warnings.warn(
            "Standardization of 3D signal has been requested but would lead to zero values. "
            "Skipping.",
            UserWarning,
            stacklevel=find_stack_level(),
        )
        return np.array(signals, copy=True)
    if method == "psc":
        return percent_signal_change(signals)
    return zscore(signals, ddof=1 if method == "zscore_sample" else 0)


def regress_confounds(
    signals: np.ndarray, confounds: np.ndarray, standardize_confounds: bool = True
) -> np.ndarray:
    """Project the confounds out of the signals, as nilearn does.

    The confounds are z-scored (``standardize_confounds``) or divided by their max |value|
    (not centered); an orthonormal basis of their span comes from a column-pivoted QR, keeping
    the columns with ``|R_ii| > 100 eps``, so constant or collinear confounds are dropped.

    Parameters
    ----------
    signals : ndarray, shape (T, K)
    confounds : ndarray, shape (T, C)
    standardize_confounds : bool, default=True

    Returns
    -------
    ndarray
        A new array in the dtype of ``signals``.
    """
    if standardize_confounds:
        conf = standardize_signals(confounds, "zscore_sample")
    else:
        conf = ensure_float(np.array(confounds, copy=True))
        peak = np.max(np.abs(conf), axis=0)
        peak[peak == 0] = 1
        conf /= peak
    q, r, _ = linalg.qr(conf, mode="economic", pivoting=True)
    q = q[:, np.abs(np.diag(r)) > EPS64 * 100.0]
    out = np.array(signals, copy=True)
    out -= q @ (q.T @ out)
    return out


def check_filter(
    filter: Any, low_pass: float | None, high_pass: float | None, t_r: float | None
) -> Literal["butterworth", "cosine", False]:
    """The filter that will run ('butterworth', 'cosine' or False), with nilearn's checks.

    Butterworth without any cutoff means no filtering; it needs ``t_r``; 'cosine' needs ``t_r``
    and ``high_pass``; ``False`` with a cutoff warns that nothing is filtered.

    Raises
    ------
    ValueError
        For an unknown filter or a missing ``t_r`` / ``high_pass`` (nilearn's messages).
    """
    if filter not in ("butterworth", "cosine", False):
        raise ValueError(f"Filter method {filter} not implemented.")
    if filter is False:
        if any(isinstance(f, float | int) for f in (low_pass, high_pass)):
            warnings.warn(
                "No filter type selected but cutoff frequency provided.Will not perform filtering.",
                UserWarning,
                stacklevel=find_stack_level(),
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


def _scrub(
    x: np.ndarray,
    conf: np.ndarray | None,
    mask: np.ndarray,
    filter_type: Literal["butterworth", "cosine", False],
    t_r: float | None,
    extrapolate: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Censor (no filter, cosine) or interpolate (Butterworth) the volumes outside the mask.

    Returns the signals, confounds and the mask to apply after filtering (None if done).
    """
    if filter_type != "butterworth":
        return x[mask], None if conf is None else conf[mask], None
    assert t_r is not None  # check_filter refuses Butterworth filtering without t_r
    x = interpolate_censored(x, mask, t_r, extrapolate)
    conf = None if conf is None else interpolate_censored(conf, mask, t_r, extrapolate)
    if not extrapolate:
        span = slice(mask[0], mask[-1] + 1)
        x, conf, mask = x[span], None if conf is None else conf[span], mask - mask[0]
    return x, conf, mask


def clean_arrays(
    signals: np.ndarray,
    *,
    detrend: bool = False,
    standardize: Literal["zscore_sample", "zscore", "psc"] | bool | None = "zscore_sample",
    standardize_confounds: bool = True,
    confounds: np.ndarray | None = None,
    sample_mask: np.ndarray | None = None,
    t_r: float | None = None,
    low_pass: float | None = None,
    high_pass: float | None = None,
    filter: Literal["butterworth", "cosine", False] = "butterworth",
    extrapolate: bool = False,
    butterworth_order: int = 5,
    padtype: str | None = "odd",
    padlen: int | None = None,
    ensure_finite: bool = False,
) -> np.ndarray:
    """Clean (T × K) signals as ``nilearn.signal.clean`` does for one run (its steps, in its
    order, with its rules: equal to rounding, not bit for bit), from arrays.

    Parameters
    ----------
    signals : ndarray, shape (T, K)
        Integer signals become float32 (≤ 4 bytes) or float64.
    detrend : bool, default=False
        Remove the mean and linear trend of the signals and confounds.
    standardize : {'zscore_sample', 'zscore', 'psc', True, False, None}, default='zscore_sample'
        'zscore' (ddof 0) is accepted besides nilearn 0.14.1's values; True means
        'zscore_sample' and False None, with nilearn's ``FutureWarning``.
    standardize_confounds : bool, default=True
    confounds : ndarray, shape (T, n_confounds), optional
        Loaded confounds (see :func:`daskmasker.masker.cleaning.clean_signals` for files,
        DataFrames and lists).
    sample_mask : ndarray of int, optional
        Sorted indices of the volumes to keep, as
        :func:`daskmasker.masker.confounds.load_sample_mask` returns them.
    t_r : float, optional
        Repetition time in seconds; needed to filter.
    low_pass, high_pass : float, optional
        Cutoffs in Hz.
    filter : {'butterworth', 'cosine', False}, default='butterworth'
        'cosine' adds DCT drift regressors below ``high_pass`` to the confounds.
    extrapolate : bool, default=False
        With Butterworth and a sample mask: extrapolate the censored volumes before the first
        (after the last) kept one, instead of dropping them.
    butterworth_order, padtype, padlen
        nilearn's ``butterworth__order``, ``butterworth__padtype`` and ``butterworth__padlen``.
    ensure_finite : bool, default=False
        Replace NaN and infinite values of the signals by 0 first.

    Returns
    -------
    ndarray
        A new array of shape (T, K), or (len(sample_mask), K); float32 for float32 signals.

    Raises
    ------
    TypeError, ValueError, IndexError
        nilearn's errors and messages for bad parameters, cutoffs, confounds and sample masks;
        scipy's when T is too short for the Butterworth padding.

    Warns
    -----
    UserWarning
        Every warning ``nilearn.signal.clean`` emits, with its text, once per call.
    FutureWarning
        For a boolean ``standardize``, once per call as ``nilearn.signal.clean`` (nilearn's
        masker emits a second one of its own in ``transform``).

    Notes
    -----
    With Butterworth filtering and a sample mask the censored volumes are interpolated, where
    nilearn interpolates their mirror images (``T - 1 - k``); results agree whenever the mirror
    of every censored volume is kept.  Otherwise the results match nilearn to rounding.
    """
    if confounds is not None and not detrend and not standardize_confounds:
        warnings.warn(
            "When confounds are provided, one must perform detrend and/or standardize "
            f"confounds. You provided detrend={detrend}, "
            f"standardize_confounds={standardize_confounds}. If confounds were not "
            "standardized or demeaned before passing to signal.clean signal will not be "
            "correctly cleaned. ",
            UserWarning,
            stacklevel=find_stack_level(),
        )
    filter_type = check_filter(filter, low_pass, high_pass, t_r)
    x = np.array(signals, copy=True, order="C")
    if x.ndim != 2:
        raise ValueError(f"signals must be a 2D (time, signal) array, got shape {x.shape}")
    n_scans = x.shape[0]
    conf = None if confounds is None else np.asarray(confounds)
    mask = None if sample_mask is None else np.asarray(sample_mask)
    if conf is not None and conf.shape[0] != n_scans:
        raise ValueError(f"confounds have {conf.shape[0]} rows but the signals {n_scans}")
    if ensure_finite:
        x[~np.isfinite(x)] = 0
    x = ensure_float(x)
    if isinstance(standardize, bool):
        warnings.warn(STANDARDIZE_BOOL_WARNING, FutureWarning, stacklevel=find_stack_level())
        standardize = "zscore_sample" if standardize else None

    if filter_type == "cosine":
        assert high_pass is not None and t_r is not None  # check_filter refuses them missing
        conf = add_cosine_drift(conf, high_pass, n_scans, t_r)
        if low_pass is not None:
            warnings.warn(
                "low_pass is not implemented for filter='cosine'",
                UserWarning,
                stacklevel=find_stack_level(),
            )
    if mask is not None:
        x, conf, mask = _scrub(x, conf, mask, filter_type, t_r, extrapolate)
    mean_before = x.mean(axis=0)
    if detrend:
        x = detrend_signals(x)
        conf = None if conf is None else detrend_signals(conf)
    if filter_type == "butterworth":
        assert t_r is not None  # check_filter refuses Butterworth filtering without t_r
        band = partial(
            butterworth,
            sampling_rate=1.0 / t_r,
            low_pass=low_pass,
            high_pass=high_pass,
            order=butterworth_order,
            padtype=padtype,
            padlen=padlen,
        )
        x = band(x)
        conf = None if conf is None else band(conf)
        if mask is not None:
            x, conf = x[mask], None if conf is None else conf[mask]
    if conf is not None:
        x = regress_confounds(x, conf, standardize_confounds)
    if not standardize:
        return x
    mean_removed = np.abs(x.mean(0)).mean() / np.abs(mean_before).mean() < 1e-1
    if standardize == "psc" and mean_removed:
        x = x + mean_before
    return standardize_signals(x, standardize)
