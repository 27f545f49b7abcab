"""daskmasker: nilearn's NiftiMapsMasker, out of core and on Dask clusters.

>>> from daskmasker import NiftiMapsMasker, open_nifti, to_zarr, open_zarr  # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from daskmasker.batch import run_batch
from daskmasker.cluster import dask_client
from daskmasker.masker import NiftiMapsMasker
from daskmasker.multi import MultiNiftiMapsMasker
from daskmasker.nifti import open_nifti, to_nifti
from daskmasker.store import open_zarr, to_zarr

try:
    __version__ = version("daskmasker")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "MultiNiftiMapsMasker",
    "NiftiMapsMasker",
    "__version__",
    "dask_client",
    "open_nifti",
    "open_zarr",
    "run_batch",
    "to_nifti",
    "to_zarr",
]
