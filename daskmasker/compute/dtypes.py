"""The precision rules: the float dtype of maps, the dtype support voxels are gathered in.

Examples
--------
>>> float_dtype(np.dtype(np.int16)), compact_dtype(np.dtype(np.int32))
(dtype('float32'), dtype('float64'))
"""

from __future__ import annotations

from typing import Any

import numpy as np


def float_dtype(dtype: Any) -> np.dtype:
    """Integer maps become float32 (int64 becomes float64); floats stay as they are.

    Examples
    --------
    >>> float_dtype(np.dtype(np.int16)), float_dtype(np.dtype(np.int64))
    (dtype('float32'), dtype('float64'))
    """
    if dtype.kind in "iub":
        return np.dtype(np.float64 if dtype.itemsize == 8 else np.float32)
    return np.dtype(dtype)


def compact_dtype(dtype: Any) -> np.dtype:
    """The precision the support voxels are gathered in: exact for every input dtype.

    float32 and the integers that fit its 24-bit mantissa stay float32 (half the memory traffic);
    everything else becomes float64.
    """
    dtype = np.dtype(dtype)
    if (
        dtype == np.float32
        or (dtype.kind in "iub" and dtype.itemsize <= 2)
        or (dtype.kind == "f" and dtype.itemsize < 4)
    ):
        return np.dtype(np.float32)
    return np.dtype(np.float64)
