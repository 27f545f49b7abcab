"""An xarray backend: ``xr.open_dataset("bold.nii.gz", engine="nifti")``.

Registered under ``[project.entry-points."xarray.backends"]`` as ``nifti``.  It opens NIfTI files
(``.nii``, ``.nii.gz``; paths or fsspec URLs) and daskmasker/NIfTI-Zarr stores lazily, as a
Dataset with one variable, ``image``: the daskmasker image (dims ``time``/``component``, ``z``,
``y``, ``x``; mm and s coordinates) with its attributes made netCDF-serialisable (the affine as 16
numbers, row by row), so ``ds.to_netcdf()`` works.  Only headers are read when opening.

xarray imports every registered backend when it first opens a file: this module imports only
xarray at import time, and daskmasker's readers when it opens something.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import xarray as xr
from xarray.backends import BackendEntrypoint

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
        image = load_image(path, storage_options=storage_options, maps=maps).copy(deep=False)
        image.attrs = netcdf_attrs(image.attrs)
        for name in image.coords:
            image[name].attrs = netcdf_attrs(image[name].attrs)
        dataset = image.to_dataset(name=VARIABLE)
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
