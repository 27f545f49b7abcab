"""An xarray backend: ``xr.open_dataset("bold.nii.gz", engine="nifti")``.

Registered under ``[project.entry-points."xarray.backends"]`` as ``nifti``.  It opens NIfTI files
(``.nii``, ``.nii.gz``; paths or fsspec URLs) and daskmasker/NIfTI-Zarr stores lazily, as a
Dataset with one variable, ``image``: the daskmasker image (dims ``time``/``component``, ``z``,
``y``, ``x``; mm and s coordinates) with its attributes made netCDF-serialisable (the affine as 16
numbers, row by row), so ``ds.to_netcdf()`` works.  Only headers are read when opening; as with
xarray's own engines, the variable is lazily indexed (a selection reads only the volumes it
needs), and ``chunks={}`` makes it a Dask array chunked as daskmasker reads the file.

xarray imports every registered backend when it first opens a file: this module imports only
xarray at import time, and daskmasker's readers when it opens something.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import xarray as xr
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

if TYPE_CHECKING:
    import dask.array as da

VARIABLE = "image"
_SUFFIXES = (".nii", ".nii.gz")


class NiftiBackendEntrypoint(BackendEntrypoint):
    """Open NIfTI files and daskmasker/NIfTI-Zarr stores with ``engine="nifti"``.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.open_dataset("bold.nii.gz", engine="nifti")  # doctest: +SKIP
    >>> ds["image"].mean("time")  # doctest: +SKIP
    """

    description = "NIfTI files and NIfTI-Zarr stores as lazy images (daskmasker)"
    open_dataset_parameters: ClassVar[tuple[str, ...]] = (
        "filename_or_obj",
        "drop_variables",
        "maps",
        "storage_options",
    )

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: Any = None,
        maps: bool = False,
        storage_options: dict | None = None,
    ) -> xr.Dataset:
        """The image at ``filename_or_obj`` as a lazy Dataset with one variable, ``image``.

        Parameters
        ----------
        filename_or_obj : str or path-like
            A ``.nii``/``.nii.gz`` file or a Zarr image store (path or fsspec URL).
        drop_variables : str or list of str, optional
            Variables to leave out (xarray's convention).
        maps : bool, default=False
            The image holds maps: its 4th axis is ``component``, not ``time``.
        storage_options : dict, optional
            fsspec options for URLs.

        Returns
        -------
        xarray.Dataset
        """
        from daskmasker.io.image import netcdf_attrs
        from daskmasker.io.load import load_image

        path = os.fspath(filename_or_obj)
        image = load_image(path, storage_options=storage_options, maps=maps)
        lazy = xr.Variable(
            image.dims,
            indexing.LazilyIndexedArray(_ImageArray(image.data)),
            netcdf_attrs(image.attrs),
            encoding={"preferred_chunks": dict(zip(image.dims, image.data.chunks, strict=True))},
        )
        coords = {
            name: xr.Variable(c.dims, c.values, netcdf_attrs(c.attrs))
            for name, c in image.coords.items()
        }
        dataset = xr.Dataset({VARIABLE: lazy}, coords=coords)
        if drop_variables is not None:
            dataset = dataset.drop_vars(drop_variables, errors="ignore")
        return dataset

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """Whether ``filename_or_obj`` names a NIfTI file (``.nii``, ``.nii.gz``)."""
        try:
            name = os.fspath(filename_or_obj)
        except TypeError:
            return False
        return isinstance(name, str) and name.lower().endswith(_SUFFIXES)


class _ImageArray(BackendArray):
    """A daskmasker image's Dask array behind xarray's lazy indexing: a selection computes only
    the chunks it touches."""

    def __init__(self, array: da.Array) -> None:
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self._getitem
        )

    def _getitem(self, key: tuple) -> np.ndarray:
        return np.asarray(self.array[key])
