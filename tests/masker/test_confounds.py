"""Confound and sample_mask loading against nilearn's own readers, forms and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nilearn.signal import _sanitize_sample_mask, clean, sanitize_confounds

from daskmasker.masker.confounds import ensure_float, load_confounds, load_sample_mask

N = 12
RNG = np.random.default_rng(0)
VALUES = RNG.normal(size=(N, 3))


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def table(sep: str, header: str | None = None, values: np.ndarray = VALUES) -> str:
    lines = [sep.join(f"{v!r}" for v in row) for row in values.tolist()]
    return "\n".join(([header] if header else []) + lines) + "\n"


@pytest.fixture
def files(tmp_path):
    frame = pd.DataFrame(VALUES, columns=["trans_x", "trans_y", "rot_z"])
    frame.to_csv(tmp_path / "with_index.csv")
    frame.to_csv(tmp_path / "fmriprep.tsv", sep="\t", index=False)
    pd.DataFrame(VALUES).to_csv(tmp_path / "int_names.csv", index=False)
    return {
        "whitespace": write(tmp_path / "white.txt", table(" ")),
        "comma": write(tmp_path / "comma.csv", table(",")),
        "semicolon": write(tmp_path / "semi.csv", table(";")),
        "tab header": write(tmp_path / "head.tsv", table("\t", "a\tb\tc")),
        "fmriprep": str(tmp_path / "fmriprep.tsv"),
        "pandas index": str(tmp_path / "with_index.csv"),
        "integer header": str(tmp_path / "int_names.csv"),
        "single column": write(tmp_path / "one.txt", table(" ", values=VALUES[:, :1])),
        "unreadable": write(tmp_path / "bad.txt", "a|b\n1|2\n"),
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda f: VALUES,
        lambda f: VALUES[:, 0],
        lambda f: (VALUES * 10).astype(np.int32),
        lambda f: (VALUES * 10).astype(np.int64),
        lambda f: VALUES > 0,
        lambda f: VALUES.astype(np.float32),
        lambda f: pd.DataFrame(VALUES, columns=list("abc")),
        lambda f: [VALUES[:, 0], pd.DataFrame(VALUES[:, 1:]), (VALUES * 3).astype(np.int16)],
        lambda f: (VALUES[:, :1].astype(np.float32), VALUES[:, 1].astype(np.float32)),
        lambda f: f["whitespace"],
        lambda f: f["comma"],
        lambda f: f["semicolon"],
        lambda f: f["tab header"],
        lambda f: f["fmriprep"],
        lambda f: f["pandas index"],
        lambda f: [f["fmriprep"], VALUES],
    ],
    ids=[
        "2d",
        "1d",
        "int32",
        "int64",
        "bool",
        "float32",
        "dataframe",
        "list",
        "tuple",
        "whitespace",
        "comma",
        "semicolon",
        "tab-header",
        "fmriprep-tsv",
        "pandas-index",
        "file-and-array",
    ],
)
def test_load_confounds_matches_nilearn(files, make):
    ours = load_confounds(make(files), N)
    ref = sanitize_confounds(N, make(files))
    assert ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)


def test_pandas_index_column_becomes_a_regressor(files):
    loaded = load_confounds(files["pandas index"], N)
    np.testing.assert_array_equal(loaded[:, 0], np.arange(N))
    np.testing.assert_array_equal(loaded[:, 1:], VALUES)


def test_path_objects_and_single_column_files(files):
    np.testing.assert_array_equal(load_confounds(Path(files["comma"]), N), VALUES)
    np.testing.assert_array_equal(load_confounds([Path(files["comma"])], N), VALUES)
    with pytest.raises(IndexError):
        clean(VALUES.copy(), detrend=True, confounds=files["single column"])
    np.testing.assert_array_equal(load_confounds(files["single column"], N), VALUES[:, :1])


def test_none_is_none():
    assert load_confounds(None, N) is None
    assert load_sample_mask(None, N) is None


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda f: np.zeros((N, 2, 2)), ValueError),
        (lambda f: np.zeros((5, 2)), ValueError),
        (lambda f: [VALUES, np.zeros(5)], ValueError),
        (lambda f: pd.DataFrame(np.zeros((5, 2))), ValueError),
        (lambda f: f["integer header"], ValueError),
        (lambda f: 5, TypeError),
        (lambda f: [5], TypeError),
        (lambda f: [VALUES, pd.Series(VALUES[:, 0])], TypeError),
        (lambda f: f["unreadable"], TypeError),
        (lambda f: [], ValueError),
    ],
    ids=[
        "3d",
        "length",
        "length-in-list",
        "dataframe-length",
        "integer-header",
        "int",
        "int-in-list",
        "series",
        "no-delimiter",
        "empty-list",
    ],
)
def test_confound_errors_match_nilearn(files, make, error):
    """Same type; nilearn's message is in ours (an empty list gets a clearer message)."""
    confounds = make(files)
    with pytest.raises(error) as ref:
        sanitize_confounds(N, confounds)
    with pytest.raises(error) as ours:
        load_confounds(confounds, N)
    if not isinstance(confounds, list) or confounds:
        assert str(ref.value) in str(ours.value)


def test_confound_length_error_message():
    with pytest.raises(ValueError) as error:
        load_confounds(np.zeros(5), 12)
    assert str(error.value) == (
        "Confound signal has an incorrect length. Signal length: 12; confound length: 5."
    )


def test_missing_confounds_file_is_named(tmp_path):
    missing = tmp_path / "nope.tsv"
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        load_confounds(str(missing), N)
    with pytest.raises(FileNotFoundError):
        sanitize_confounds(N, str(missing))


def test_confounds_are_copies():
    array, frame = VALUES.copy(), pd.DataFrame(VALUES.copy())
    loaded = load_confounds([array, frame], N)
    loaded[:] = 0
    np.testing.assert_array_equal(array, VALUES)
    np.testing.assert_array_equal(frame.to_numpy(), VALUES)
    assert not np.shares_memory(load_confounds(array, N), array)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.int8, np.float32),
        (np.uint16, np.float32),
        (np.int32, np.float32),
        (np.int64, np.float64),
        (np.uint64, np.float64),
        (np.float16, np.float16),
        (np.float32, np.float32),
        (bool, np.float32),
    ],
)
def test_ensure_float(dtype, expected):
    assert ensure_float(np.zeros(3, dtype=dtype)).dtype == expected


def nilearn_sample_mask(sample_mask, n_scans=N):
    return _sanitize_sample_mask(n_scans, 1, None, sample_mask)


@pytest.mark.parametrize(
    "sample_mask",
    [
        np.array([0, 2, 3, 11]),
        np.array([5, 1, 1], dtype=np.uint8),
        np.arange(N, dtype=np.int32),
        np.array([0.0, 4.0]),
        np.arange(N) % 3 > 0,
        [np.array([1, 2, 4])],
        [[1, 2, 4]],
        [[i % 2 == 0 for i in range(N)]],
        (np.arange(N) < 5,),
    ],
    ids=[
        "int64",
        "uint8-unsorted",
        "int32-all",
        "whole-floats",
        "bool",
        "list",
        "nested",
        "nested-bools",
        "tuple-bools",
    ],
)
def test_load_sample_mask_matches_nilearn(sample_mask):
    ours = load_sample_mask(sample_mask, N)
    ref = nilearn_sample_mask(sample_mask)
    assert ours.dtype == ref.dtype == np.int32
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize(
    ("sample_mask", "error", "message"),
    [
        (3, TypeError, "'sample_masks' must be of type(s)"),
        ([True] * N, TypeError, "'bool' object is not iterable"),
        ([1, 2, 3], TypeError, "'int' object is not iterable"),
        (
            [np.arange(3), np.arange(4)],
            ValueError,
            "Number of sample_mask (2) not matching number of runs (1).",
        ),
        (np.array([-1, 2]), ValueError, "sample_mask should not contain negative values."),
        (
            np.array([1, N + 1]),
            IndexError,
            f"sample_mask 1 of 1 contains invalid index [{N + 1}]. The signal contains {N} time",
        ),
        (np.arange(N + 1), IndexError, "is has more timepoints than the current run"),
        (np.array([], dtype=int), ValueError, None),
        (np.zeros(N, dtype=bool), ValueError, None),
    ],
    ids=[
        "int",
        "flat-bools",
        "flat-ints",
        "two-masks",
        "negative",
        "too-large",
        "too-long",
        "empty",
        "all-false",
    ],
)
def test_sample_mask_errors_match_nilearn(sample_mask, error, message):
    with pytest.raises(error) as ref:
        nilearn_sample_mask(sample_mask)
    with pytest.raises(error) as ours:
        load_sample_mask(sample_mask, N)
    if message is not None:
        assert message in str(ref.value)
        assert message in str(ours.value)


@pytest.mark.parametrize(
    ("sample_mask", "error", "match"),
    [
        (np.array([1, N]), IndexError, rf"invalid index \[{N}\]. The signal contains {N}"),
        (np.ones(N - 2, dtype=bool), IndexError, f"has {N - 2} values but .* {N} time points"),
        (np.ones(N + 1, dtype=bool), IndexError, f"has {N + 1} values"),
        (np.array([1.5, 2.0]), ValueError, r"whole numbers, got \[1.5\]"),
        (np.array([np.nan]), ValueError, "whole numbers"),
        (np.array(["a"]), TypeError, "integer indices or booleans"),
        (np.ones((2, 3), dtype=int), ValueError, r"1D, got .* \(2, 3\)"),
    ],
    ids=["index-n", "short-bools", "long-bools", "fractional", "nan", "strings", "2d"],
)
def test_sample_masks_nilearn_mishandles_are_rejected(sample_mask, error, match):
    """nilearn accepts the index T (numpy fails later), short boolean masks and fractions."""
    with pytest.raises(error, match=match):
        load_sample_mask(sample_mask, N)


def test_sample_mask_is_a_copy():
    mask = np.arange(3, N, dtype=np.int32)
    loaded = load_sample_mask(mask, N)
    loaded -= 3
    np.testing.assert_array_equal(mask, np.arange(3, N))


@given(st.lists(st.booleans(), min_size=N, max_size=N).filter(any))
def test_boolean_masks_are_their_true_indices(flags):
    mask = np.array(flags)
    np.testing.assert_array_equal(load_sample_mask(mask, N), np.flatnonzero(mask))
    np.testing.assert_array_equal(load_sample_mask([flags], N), nilearn_sample_mask([flags]))
