"""Provenance recorded with every output: package versions, platform, time, confound names."""

from __future__ import annotations

import datetime
import functools
import os
import platform
import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

PACKAGES = ("daskmasker", "dask", "distributed", "numpy", "scipy", "nibabel", "xarray", "zarr")


def versions() -> dict[str, str]:
    """Versions of the packages that shape the numbers, plus Python and the time of writing."""
    return {"python": platform.python_version(), "written": _now(), **_package_versions()}


@functools.cache
def _package_versions() -> dict[str, str]:
    """Looked up once per process: each lookup parses package metadata."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def confound_names(confounds: Any, n_scans: int, n_high_variance: int = 0) -> list[str]:
    """Names of the confound columns, in the order the masker stacks them.

    ``high_variance_<i>`` first, then each confound's columns: a DataFrame's column names, a
    file's header (when it has one, as nilearn skips it), else ``confound_<j>`` (``j`` counting
    all user columns).  Repeated names get a ``_<n>`` suffix.

    Parameters
    ----------
    confounds : ndarray, DataFrame, path, or a list of these, or None
    n_scans : int
    n_high_variance : int, default=0

    Returns
    -------
    list of str

    Examples
    --------
    >>> import numpy as np
    >>> confound_names([np.ones((3, 2))], 3, n_high_variance=1)
    ['high_variance_0', 'confound_0', 'confound_1']
    """
    # imported here: it brings SciPy's signal processing, which versions() (`daskmasker info`)
    # does not need
    from daskmasker.masker.confounds import load_confounds

    names = [f"high_variance_{i}" for i in range(n_high_variance)]
    parts = [] if confounds is None else confounds
    parts = parts if isinstance(parts, list | tuple) else [parts]
    j = 0
    for part in parts:
        loaded = load_confounds(part, n_scans)
        if loaded is None:
            raise TypeError(
                "a list of confounds holds None: give arrays, DataFrames or files (or confounds="
                "None alone for none)"
            )
        width = loaded.shape[1]
        given = _given_names(part, width)
        names += given if given else [f"confound_{j + i}" for i in range(width)]
        j += width
    return _unique(names)


def _given_names(part: Any, width: int) -> list[str] | None:
    if hasattr(part, "columns"):
        return [str(c) for c in part.columns]
    if isinstance(part, str | os.PathLike):
        tokens = [t for t in re.split(r"[\t,; ]+", _first_line(os.fspath(part)).strip()) if t]
        try:
            float(tokens[0])
        except (ValueError, IndexError):
            return tokens if len(tokens) == width else None
    return None


def _first_line(name: str) -> str:
    """A confounds file's first line: a URL read through fsspec, as the masker reads it."""
    if "://" in name:
        from daskmasker.io.fs import open_raw

        with open_raw(name, None) as f:
            return f.read().decode().split("\n", 1)[0]
    with open(os.path.expanduser(name)) as f:
        return f.readline()


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}_{count}")
    return out
