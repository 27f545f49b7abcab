"""daskmasker: nilearn's NiftiMapsMasker, out of core and on Dask clusters.

The public names are imported on first use (PEP 562), so ``import daskmasker`` and the CLI's
``--help`` stay fast and a module deep in the package does not pull in the whole package.

>>> from daskmasker import NiftiMapsMasker
>>> NiftiMapsMasker("difumo64.nii.gz", standardize="zscore_sample").standardize
'zscore_sample'
"""

import importlib as _importlib
import importlib.metadata as _metadata
import typing as _typing

try:
    __version__: str = _metadata.version("daskmasker")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "MultiNiftiMapsMasker": "daskmasker.maskers",
    "NiftiMapsMasker": "daskmasker.maskers",
    "connectivity": "daskmasker.batch.connectivity",
    "connectivity_measure": "daskmasker.batch.connectivity",
    "dask_client": "daskmasker.runtime.client",
    "extract_many": "daskmasker.masker.many",
    "fit_many": "daskmasker.masker.many",
    "open_nifti": "daskmasker.io.nifti",
    "open_timeseries": "daskmasker.batch.read",
    "open_zarr": "daskmasker.io.zarr",
    "reclean": "daskmasker.batch.reclean",
    "run_batch": "daskmasker.batch.run",
    "to_nifti": "daskmasker.io.nifti_write",
    "to_zarr": "daskmasker.io.convert",
}

__all__ = [  # noqa: RUF022 - __version__ first, then the exports in _EXPORTS' order
    "__version__",
    "MultiNiftiMapsMasker",
    "NiftiMapsMasker",
    "connectivity",
    "connectivity_measure",
    "dask_client",
    "extract_many",
    "fit_many",
    "open_nifti",
    "open_timeseries",
    "open_zarr",
    "reclean",
    "run_batch",
    "to_nifti",
    "to_zarr",
]

if _typing.TYPE_CHECKING:
    from daskmasker.batch.connectivity import connectivity, connectivity_measure
    from daskmasker.batch.read import open_timeseries
    from daskmasker.batch.reclean import reclean
    from daskmasker.batch.run import run_batch
    from daskmasker.io.convert import to_zarr
    from daskmasker.io.nifti import open_nifti
    from daskmasker.io.nifti_write import to_nifti
    from daskmasker.io.zarr import open_zarr
    from daskmasker.masker.estimator import NiftiMapsMasker
    from daskmasker.masker.many import extract_many, fit_many
    from daskmasker.masker.multi import MultiNiftiMapsMasker
    from daskmasker.runtime.client import dask_client


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'daskmasker' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API only (``__all__``), as tab completion and ``dir()`` should show it."""
    return sorted(__all__)
