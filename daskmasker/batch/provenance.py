"""Provenance recorded with every output: package versions, platform, time."""

from __future__ import annotations

import datetime
import functools
import platform
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("daskmasker", "dask", "distributed", "numpy", "scipy", "nibabel", "xarray", "zarr")


def versions() -> dict[str, str]:
    """Versions of the packages that shape the numbers, plus Python and the time of writing."""
    return {"python": platform.python_version(), "written": _now(), **_package_versions()}


@functools.cache
def _package_versions() -> dict[str, str]:
    """Looked up once per process: each lookup parses package metadata (~1 ms)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
