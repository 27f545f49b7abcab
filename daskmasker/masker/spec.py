"""A fitted extraction as a public, frozen value: what every layer above the estimator uses.

:meth:`NiftiMapsMasker.extraction_spec() <daskmasker.masker.estimator.NiftiMapsMasker.
extraction_spec>` returns an :class:`ExtractionSpec`: the fitted maps and mask, the parameters,
the ``clean_args``, the region names.  From it, :meth:`ExtractionSpec.lazy` builds the lazy
extraction of an image (its cleaned signals, the confounds they were cleaned with, the raw region
signals); batches, the command line, several-atlas passes and reports use it and never an
estimator's private state.  A spec pickles: it travels to the workers that run small items whole.

Examples
--------
>>> import numpy as np
>>> from daskmasker import NiftiMapsMasker
>>> from daskmasker.synthetic import make_fmri, make_maps
>>> affine = np.diag([6.0, 6, 6, 1])
>>> maps = make_maps(n_maps=3, shape=(30, 36, 30), affine=affine)
>>> img = make_fmri(maps, n_volumes=5, shape=(30, 36, 30), affine=affine)[0]
>>> spec = NiftiMapsMasker(maps, standardize=None).fit(img).extraction_spec()
>>> spec.region_names
('niftimapsmasker0', 'niftimapsmasker1', 'niftimapsmasker2')
>>> lazy = spec.lazy(img)
>>> lazy.signals.dims, lazy.signals.shape
(('time', 'region'), (5, 3))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import dask.array as da
import numpy as np
import xarray as xr

from daskmasker.masker.confounds import confounds_list
from daskmasker.masker.fitting import FittedMaps
from daskmasker.masker.transform import json_params, lazy_signals


class LazyExtraction(NamedTuple):
    """The lazy outputs of one image's extraction.

    Attributes
    ----------
    signals : xarray.DataArray
        Cleaned signals, dims (time, region); ``region`` holds the extracted maps' indices.
    confounds : dask array or None
        The confounds the signals were cleaned with (high-variance ones included).
    raw : dask array
        The region signals before cleaning, float64 ``(volumes, regions)``, all volumes.
    """

    signals: xr.DataArray
    confounds: da.Array | None
    raw: da.Array


@dataclass(frozen=True)
class ExtractionSpec:
    """Everything that makes an extraction's numbers, fixed at the time it was asked for.

    Parameters
    ----------
    fitted : FittedMaps
        The maps and mask on the fitted grid (and their preparation for each grid met).
    params : dict
        The masker's parameters (``get_params(deep=False)``).
    clean_args : dict
        The masker's ``clean_args_``.
    region_names : tuple of str
        One name per map, in map order.
    high_variance_last : bool, default=False
        Where the high-variance confounds go among the user's: first (``NiftiMapsMasker``),
        last (``MultiNiftiMapsMasker``), as nilearn orders them.
    """

    fitted: FittedMaps
    params: dict[str, Any]
    clean_args: dict[str, Any]
    region_names: tuple[str, ...]
    high_variance_last: bool = False

    @property
    def n_maps(self) -> int:
        """Number of maps of the atlas."""
        return self.fitted.n_maps

    @property
    def kept(self) -> np.ndarray:
        """Indices of the maps extracted on the fitted grid."""
        return self.fitted.kept

    @property
    def attrs(self) -> dict[str, Any]:
        """The parameters as JSON-friendly attributes (images described by their repr)."""
        return json_params(self.params)

    def names_of(self, maps: np.ndarray) -> np.ndarray:
        """The region names of the maps of these indices."""
        return np.asarray(self.region_names, dtype=object)[np.asarray(maps, dtype=int)]

    def confounds(self, user: Any = None) -> list | None:
        """The user's confounds with the high-variance ones at their place (or None)."""
        return confounds_list(
            user, self.params["high_variance_confounds"], last=self.high_variance_last
        )

    def with_fitted(self, fitted: FittedMaps) -> ExtractionSpec:
        """The same spec over other fitted maps (the linked maps of a several-atlas pass)."""
        return dataclasses.replace(self, fitted=fitted)

    def lazy(
        self,
        imgs: Any,
        confounds: Any = None,
        sample_mask: Any = None,
        *,
        log: Callable[[str], None] | None = None,
        brain_mask: Any = None,
    ) -> LazyExtraction:
        """The lazy extraction of one image: nothing is computed here.

        Parameters
        ----------
        imgs : 3D or 4D image
            Anything :func:`daskmasker.io.load.load_image` accepts.
        confounds : optional
            The user's confounds (an array, DataFrame, path or a list of them); the
            high-variance confounds are added here when the parameters ask for them.
        sample_mask : optional
            Volumes to keep.
        log : callable, optional
            Receives the verbose messages.
        brain_mask : 3D image, optional
            The run's brain mask: the maps' coverage inside it becomes the signals' ``coverage``
            coordinate, and regions below the ``min_coverage`` parameter are NaN.

        Returns
        -------
        LazyExtraction
        """
        return LazyExtraction(
            *lazy_signals(
                self.fitted,
                imgs,
                self.params,
                self.clean_args,
                confounds=self.confounds(confounds),
                sample_mask=sample_mask,
                log=log or (lambda msg: None),
                brain_mask=brain_mask,
            )
        )
