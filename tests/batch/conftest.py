"""A small BIDS-like study on disk for the batch-store tests: files that can be changed."""

from __future__ import annotations

import pytest

from helpers import write_study


@pytest.fixture
def study(tmp_path):
    """Maps, a mask and two runs (40 and 45 volumes) with their confounds, as files."""
    return write_study(tmp_path)
