"""Temporal filters of (T × K) signals with nilearn 0.14.1's rules, warnings and errors.

Butterworth band filtering (zero phase, ``sosfiltfilt``), the DCT-II cosine drift regressors of
``filter='cosine'``, and the cubic-spline interpolation of censored volumes that precedes
Butterworth filtering when a ``sample_mask`` is given.  Pure numpy/scipy; inputs are never
modified.

``scipy.signal`` (which imports ``scipy.stats``) and ``scipy.interpolate`` are imported by the
functions that use them: a large part of a one-shot job's start (``python -X importtime``),
paid only when signals are filtered or censored volumes interpolated.
"""

from __future__ import annotations

import warnings

import numpy as np

from daskmasker.stacklevel import find_stack_level


def _check_cutoff(btype: str, freq: float | np.floating, nyq: float) -> float | np.floating:
    """nilearn's ``_check_wn``: keep a critical frequency inside (0, Nyquist), with a warning.

    A moved cutoff is a float32 scalar (float32's eps, as nilearn), so the warning prints it as
    nilearn does.
    """
    eps = np.finfo(np.float32).eps
    if freq >= nyq:
        freq = nyq - (nyq * 10 * eps)
        warnings.warn(
            f"The frequency specified for the {btype} pass filter is too high to be handled by "
            "a digital filter (superior to Nyquist frequency). "
            f"It has been lowered to {freq} (Nyquist frequency).",
            UserWarning,
            stacklevel=find_stack_level(),
        )
    elif freq < 0.0:
        freq = nyq * eps
        warnings.warn(
            f"The frequency specified for the {btype} pass filter is too low to be handled by a "
            f"digital filter (must be non-negative). It has been set to eps: {freq}.",
            UserWarning,
            stacklevel=find_stack_level(),
        )
    return freq


def butterworth(
    signals: np.ndarray,
    sampling_rate: float,
    low_pass: float | None = None,
    high_pass: float | None = None,
    order: int = 5,
    padtype: str | None = "odd",
    padlen: int | None = None,
) -> np.ndarray:
    """Zero-phase Butterworth low-, high- or band-pass filtering of each column.

    ``nilearn.signal.butterworth``: second-order sections of ``scipy.signal.butter`` applied
    forwards and backwards (``sosfiltfilt``); cutoffs at or above Nyquist are lowered just below
    it, negative ones raised to ~0 (each with a ``UserWarning``); if both band edges end up
    equal the signals are returned unfiltered (``UserWarning``).

    Parameters
    ----------
    signals : ndarray, shape (T, K)
    sampling_rate : float
        In Hz (``1 / t_r``).
    low_pass, high_pass : float, optional
        Cutoffs in Hz; none of them means no filtering.
    order : int, default=5
    padtype : {'odd', 'even', 'constant', None}, default='odd'
    padlen : int, optional
        scipy's default (3 × (2 × n_sections + 1), 18 for an order-5 low or high pass) when None;
        it must be smaller than T.

    Returns
    -------
    ndarray
        A new C-ordered array in the dtype of ``signals`` (C order keeps later reductions
        bit-identical to nilearn's).

    Raises
    ------
    ValueError
        When ``high_pass >= low_pass``, or T is not larger than the padding (scipy's message).
    """
    x = np.array(signals, copy=True)
    if low_pass is None and high_pass is None:
        return x
    if low_pass is not None and high_pass is not None and high_pass >= low_pass:
        raise ValueError(
            f"High pass cutoff frequency ({high_pass}) is greater than or equal to low pass "
            f"filter frequency ({low_pass}). This case is not handled by this function."
        )
    nyq = sampling_rate * 0.5
    critical: list[float | np.floating] = []
    wn: float | np.floating | list[float | np.floating]
    if high_pass is not None:
        btype = "high"
        critical.append(_check_cutoff(btype, high_pass, nyq))
    if low_pass is not None:
        btype = "low"
        critical.append(_check_cutoff(btype, low_pass, nyq))
    if len(critical) == 2:
        btype = "band"
        if critical[0] == critical[1]:
            warnings.warn(
                "Signals are returned unfiltered because band-pass critical frequencies are "
                "equal. Please check that inputs for sampling_rate, low_pass, and high_pass are "
                "valid.",
                UserWarning,
                stacklevel=find_stack_level(),
            )
            return x
        wn = critical
    else:
        wn = critical[0]
    from scipy import signal as sp_signal

    sos = sp_signal.butter(N=order, Wn=wn, btype=btype, output="sos", fs=sampling_rate)
    filtered = sp_signal.sosfiltfilt(sos, x, axis=0, padtype=padtype, padlen=padlen)
    return np.asarray(filtered, dtype=x.dtype, order="C")


def cosine_drift(high_pass: float, n_scans: int, t_r: float) -> np.ndarray:
    """DCT-II drift regressors below ``high_pass`` Hz, without the constant (n_scans × order).

    nilearn's ``create_cosine_drift(high_pass, arange(n_scans) * t_r)[:, :-1]``: column k is
    ``sqrt(2 / n) cos(pi / n (t + 1/2) k)`` for k = 1 … ``min(n - 1, floor(2 n high_pass dt))``.
    Warns when ``high_pass`` reaches Nyquist.  (For a single volume nilearn divides by zero;
    here there is simply no regressor.)

    Examples
    --------
    >>> cosine_drift(0.01, n_scans=100, t_r=2.0).shape
    (100, 4)
    """
    frame_times = np.arange(n_scans) * t_r
    dt = (frame_times[-1] - frame_times[0]) / (n_scans - 1) if n_scans > 1 else t_r
    if high_pass * dt >= 0.5:
        warnings.warn(
            "High-pass filter will span all accessible frequencies and saturate the design "
            "matrix. You may want to reduce the high_pass value.The provided value is "
            f"{high_pass} Hz",
            UserWarning,
            stacklevel=find_stack_level(),
        )
    order = min(n_scans - 1, int(np.floor(2 * n_scans * high_pass * dt)))
    times = np.arange(n_scans)[:, np.newaxis]
    k = np.arange(1, order + 1)
    return np.sqrt(2.0 / n_scans) * np.cos((np.pi / n_scans) * (times + 0.5) * k)


def add_cosine_drift(
    confounds: np.ndarray | None, high_pass: float, n_scans: int, t_r: float
) -> np.ndarray | None:
    """Append the cosine drift regressors to the confounds, as ``filter='cosine'`` does.

    The drifts are left out (``UserWarning``) when there are none at this ``high_pass``, or
    when one of them correlates above 0.9 with a user confound (assumed already present).

    Returns
    -------
    ndarray or None
        ``hstack(confounds, drifts)`` (float64), the drifts alone, or ``confounds`` unchanged.
    """
    drift = cosine_drift(high_pass, n_scans, t_r)
    n_cosines = drift.shape[1]
    if n_cosines == 0:
        warnings.warn(
            "Cosine filter was not created. The time series might be too short or the high "
            "pass filter is not suitable for the data.",
            UserWarning,
            stacklevel=find_stack_level(),
        )
        return confounds
    if confounds is None:
        return drift
    corr = np.corrcoef(drift.T, confounds.T)
    np.fill_diagonal(corr, 0)
    if (corr[:n_cosines, :].flatten() > 0.9).sum() > 0:
        warnings.warn(
            "Cosine filter(s) exist in user supplied confounds.Use user supplied regressors only.",
            UserWarning,
            stacklevel=find_stack_level(),
        )
        return confounds
    return np.hstack((confounds, drift))


def interpolate_censored(
    volumes: np.ndarray, sample_mask: np.ndarray, t_r: float, extrapolate: bool
) -> np.ndarray:
    """Replace the censored volumes by a cubic spline through the kept ones.

    ``scipy.interpolate.CubicSpline`` (not-a-knot) over the frame times ``k * t_r`` of the kept
    volumes, evaluated at exactly the censored ones.  Censored volumes before the first or after
    the last kept one are extrapolated, or NaN when ``extrapolate`` is False.

    This is what nilearn's ``_interpolate_volumes`` documents, not what it does: it indexes with
    ``~sample_mask`` on an integer array (a bitwise NOT, i.e. index ``-k - 1``), so it fills the
    volumes ``T - 1 - k`` mirroring the *kept* ones; a censored volume is interpolated only if
    its mirror is kept, and keeps its raw value otherwise.

    Parameters
    ----------
    volumes : ndarray, shape (T, K)
    sample_mask : ndarray of int
        Strictly increasing indices of the kept volumes.
    t_r : float
    extrapolate : bool

    Returns
    -------
    ndarray
        A new (T, K) array in the dtype of ``volumes``; the kept volumes are unchanged.
    """
    from scipy.interpolate import CubicSpline

    out = np.array(volumes, copy=True)
    frame_times = np.arange(out.shape[0]) * t_r
    spline = CubicSpline(frame_times[sample_mask], out[sample_mask], extrapolate=extrapolate)
    censored = np.ones(out.shape[0], dtype=bool)
    censored[sample_mask] = False
    out[censored] = spline(frame_times[censored])
    return out
