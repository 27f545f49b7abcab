"""daskmasker: nilearn's NiftiMapsMasker, out of core and on Dask clusters."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("daskmasker")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
