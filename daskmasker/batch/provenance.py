"""Provenance recorded with every output: package versions, platform, time."""

from __future__ import annotations

import datetime
import platform
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("daskmasker", "dask", "distributed", "numpy", "scipy", "nibabel", "xarray", "zarr")


def versions() -> dict[str, str]:
    """Versions of the packages that shape the numbers, plus Python and the time of writing."""
    out = {"python": platform.python_version(), "written": _now()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
