"""Validation of the masker's parameters, with nilearn 0.14.1's error types and messages."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from joblib import Memory

from daskmasker.stacklevel import find_stack_level

_NUMBER = "float | numpy.floating | int | numpy.integer | None"
STANDARDIZE_VALUES = ("zscore_sample", "psc", True, False, None)
TARGETS = ("mask", "maps", "data", None)


def _is_number(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    )


def _type_error(name: str, types: str, value: Any) -> TypeError:
    return TypeError(f"'{name}' must be of type(s): '{types}'.\nGot: '{type(value).__name__}'")


def check_params(params: dict) -> None:
    """Check a NiftiMapsMasker's parameters as nilearn's ``check_params`` does at fit.

    ``standardize='zscore'`` (ddof 0) is accepted in addition to nilearn 0.14.1's values.
    """
    for name in ("smoothing_fwhm", "low_pass", "high_pass", "t_r"):
        if name in params and not _is_number(params[name]):
            raise _type_error(name, _NUMBER, params[name])
    for name in ("standardize_confounds", "detrend", "keep_masked_maps"):
        if name in params and not isinstance(params[name], bool | np.bool_):
            raise _type_error(name, "<class 'bool'>", params[name])
    if "memory_level" in params:
        level = params["memory_level"]
        if isinstance(level, bool) or not isinstance(level, int | np.integer):
            raise _type_error("memory_level", "int | numpy.integer", level)
    if "verbose" in params:
        verbose = params["verbose"]
        if not isinstance(verbose, bool | int | np.integer):
            raise _type_error("verbose", "bool | int | numpy.integer", verbose)
    if "memory" in params:
        from joblib import Memory

        memory = params["memory"]
        if not (memory is None or isinstance(memory, Memory | str | Path)):
            raise _type_error("memory", "joblib.memory.Memory | str | pathlib.Path | None", memory)
    if "standardize" in params:
        check_standardize(params["standardize"])
    if "dtype" in params:
        check_dtype(params["dtype"])
    if params.get("min_coverage") is not None:
        from daskmasker.masker.coverage import check_min_coverage

        check_min_coverage(params["min_coverage"])


def check_standardize(value: Any) -> None:
    """nilearn's accepted values (``1`` and ``0`` slip through ``in`` as there), plus 'zscore'."""
    if isinstance(value, str) and value == "zscore":
        return
    try:
        accepted = value in STANDARDIZE_VALUES
    except (TypeError, ValueError):
        accepted = False
    if not accepted:
        raise ValueError(
            f"'standardize' must be one of {STANDARDIZE_VALUES}.\n'{value}' was provided."
        )


def check_resampling_target(value: Any) -> None:
    """One of 'mask', 'maps', 'data' or None."""
    if value not in TARGETS:
        raise ValueError(f"'resampling_target' must be one of {TARGETS}.\n'{value}' was provided.")


def check_dtype(dtype: Any) -> None:
    """``bool`` is rejected as nilearn does; so is anything numpy cannot read as a dtype."""
    if dtype is bool or dtype is np.bool_:
        raise TypeError("'dtype' cannot be bool")
    if dtype is None or (isinstance(dtype, str) and dtype == "auto"):
        return
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"'dtype' must be None, 'auto' or a numpy dtype, got {dtype!r}") from exc
    if resolved == np.bool_:
        raise TypeError("'dtype' cannot be bool")


def check_memory(memory: Any, memory_level: int) -> tuple[Memory, int]:
    """A ``joblib.Memory`` and the effective memory level (nilearn's rules and warning)."""
    from joblib import Memory

    if memory is None:
        memory = Memory(location=None, verbose=0)
    elif isinstance(memory, str | Path):
        location = Path(memory).expanduser()
        if not location.parent.exists():
            raise ValueError(
                f"Given cache path parent directory doesn't exists, you gave '{location.parent}'."
            )
        memory = Memory(location=str(location), verbose=0)
    if memory.location is not None and memory_level == 0:
        warnings.warn(
            "memory_level is currently set to 0 but a Memory object has been provided. "
            "Setting memory_level to 1.",
            UserWarning,
            stacklevel=find_stack_level(),
        )
        memory_level = 1
    return memory, memory_level


def target_dtype(source: Any, dtype: Any) -> np.dtype | None:
    """nilearn's ``get_target_dtype``: None when no cast is needed."""
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype == "auto":
        target = np.dtype(np.int32 if np.dtype(source).kind == "i" else np.float32)
    else:
        target = np.dtype(dtype)
    return None if target == np.dtype(source) else target
