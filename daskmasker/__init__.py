"""daskmasker: nilearn's NiftiMapsMasker, out of core and on Dask clusters.

>>> from daskmasker import NiftiMapsMasker
>>> NiftiMapsMasker("difumo64.nii.gz", standardize="zscore_sample").standardize
'zscore_sample'
"""

from importlib.metadata import PackageNotFoundError, version

from daskmasker.batch.run import run_batch
from daskmasker.io.convert import to_zarr
from daskmasker.io.nifti import open_nifti, to_nifti
from daskmasker.io.zarr import open_zarr
from daskmasker.masker.estimator import NiftiMapsMasker
from daskmasker.masker.multi import MultiNiftiMapsMasker
from daskmasker.runtime.client import dask_client

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
