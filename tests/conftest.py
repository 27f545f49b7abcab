"""Shared fixtures; the builders they use live in ``helpers.py``."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_data, make_maps


@pytest.fixture(scope="module")
def maps():
    """Six float64 maps on the maps grid."""
    return make_maps(dtype=np.float64)


@pytest.fixture(scope="module")
def data(maps):
    """A 40-volume float64 run on the data grid."""
    return make_data(maps, dtype=np.float64)
