"""``clean_signals``: nilearn's ``signal.clean`` for one run, with nilearn's inputs and checks.

The arithmetic is :func:`daskmasker.compute.clean.clean_arrays` (arrays in, arrays out); this
layer validates the parameters as the masker does and loads confounds (arrays, DataFrames,
csv/tsv paths or lists of them) and sample masks (indices or booleans) with nilearn's rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from daskmasker.compute.clean import clean_arrays
from daskmasker.masker.confounds import load_confounds, load_sample_mask
from daskmasker.masker.params import check_params


def clean_signals(
    signals: np.ndarray, *, confounds: Any = None, sample_mask: Any = None, **kwargs: Any
) -> np.ndarray:
    """Clean (T × K) signals as ``nilearn.signal.clean`` does for one run (its steps, in its
    order, with its rules: equal to rounding, not bit for bit).

    Parameters
    ----------
    signals : ndarray, shape (T, K)
    confounds : ndarray, DataFrame, path, or a list of these, optional
        Anything :func:`daskmasker.masker.confounds.load_confounds` accepts.
    sample_mask : ndarray or list, optional
        Volumes to keep (indices or booleans), as
        :func:`daskmasker.masker.confounds.load_sample_mask` accepts them.
    **kwargs
        The cleaning options of :func:`daskmasker.compute.clean.clean_arrays` (``detrend``,
        ``standardize``, ``t_r``, ``low_pass``, ``high_pass``, ``filter``...).

    Returns
    -------
    ndarray
        A new array of shape (T, K), or (len(sample_mask), K).

    Examples
    --------
    >>> x = np.arange(12.0).reshape(6, 2) ** 2
    >>> clean_signals(x, detrend=True, standardize=None).shape
    (6, 2)
    """
    names = ("detrend", "standardize", "standardize_confounds", "t_r", "low_pass", "high_pass")
    check_params({name: kwargs[name] for name in names if name in kwargs})
    if np.ndim(signals) != 2:
        return clean_arrays(signals, **kwargs)  # raises its error on the shape
    n_scans = np.shape(signals)[0]
    return clean_arrays(
        signals,
        confounds=load_confounds(confounds, n_scans),
        sample_mask=load_sample_mask(sample_mask, n_scans),
        **kwargs,
    )
