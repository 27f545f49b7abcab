"""A run's Dataset, confound names and packed bytes refuse inputs they cannot hold, by name, when
they are made (not later, when the run is read back)."""

from __future__ import annotations

import numpy as np
import pytest

from daskmasker.batch.dataset import run_dataset
from daskmasker.batch.pack import ATTRS, pack_arrays, unpack_arrays
from daskmasker.batch.provenance import confound_names


def _run(confound_names: list[str] | None) -> dict:
    return dict(
        frames=np.arange(4),
        region=np.arange(2),
        region_names=["a", "b"],
        confound_names=confound_names,
        t_r=2.0,
        attrs={},
    )


def test_confounds_without_their_names_are_refused():
    signals, raw, confounds = np.zeros((4, 2)), np.zeros((4, 2)), np.ones((4, 3))
    with pytest.raises(ValueError, match=r"confounds of shape \(4, 3\) given without their names"):
        run_dataset(signals, raw, confounds, **_run(None))
    ds = run_dataset(signals, raw, confounds, **_run(["x", "y", "z"]))
    assert ds["confound"].values.tolist() == ["x", "y", "z"]
    assert ds["confounds"].shape == (4, 3)


def test_a_list_of_confounds_holding_none_is_refused():
    with pytest.raises(TypeError, match="a list of confounds holds None"):
        confound_names([np.ones((3, 2)), None], 3)
    assert confound_names([np.ones((3, 2))], 3) == ["confound_0", "confound_1"]


def test_a_run_that_would_need_pickles_is_refused_when_packed():
    arrays = {"signals": np.zeros((2, 2)), "frame": np.arange(2)}
    with pytest.raises(ValueError, match="allow_pickle"):
        pack_arrays({**arrays, "extra": np.array([{"a": 1}], dtype=object)}, {"t_r": 2.0})
    unpacked = unpack_arrays(pack_arrays(arrays, {"t_r": 2.0}))
    assert unpacked[ATTRS] == {"t_r": 2.0}
    np.testing.assert_array_equal(unpacked["frame"], arrays["frame"])
