"""Shared fixtures; the builders they use live in ``helpers.py``."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from helpers import make_data, make_maps

# Tests write only into temporary directories: matplotlib (imported by nilearn) would keep its
# font cache in ~/.cache and ~/.config, hypothesis its example database and constants cache
# in ./.hypothesis (pytest-benchmark's ./.benchmarks is disabled in pyproject's addopts).
_SCRATCH = tempfile.mkdtemp(prefix="daskmasker-tests-")
os.environ.setdefault("MPLCONFIGDIR", os.path.join(_SCRATCH, "matplotlib"))
set_hypothesis_home_dir(os.path.join(_SCRATCH, "hypothesis"))
settings.register_profile("no-database", database=None)
settings.load_profile("no-database")


@pytest.fixture(scope="module")
def maps():
    """Six float64 maps on the maps grid."""
    return make_maps(dtype=np.float64)


@pytest.fixture(scope="module")
def data(maps):
    """A 40-volume float64 run on the data grid."""
    return make_data(maps, dtype=np.float64)
