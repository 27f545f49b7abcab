"""``NiftiMapsMasker``: nilearn's maps masker as a thin estimator over a lazy Dask graph.

The estimator only validates, loads and caches; the work is done by pure functions:
:mod:`daskmasker.niimg` (inputs → lazy images), :mod:`daskmasker.resample` and
:mod:`daskmasker.smooth` (spatial steps, chunked by volumes), :mod:`daskmasker.extraction` (partial
normal equations, tree-reduced, one solve), :mod:`daskmasker.clean` (temporal cleaning of the K
region
series) and :mod:`daskmasker.high_variance` (chunked high-variance confounds).

Differences from nilearn 0.14.1, each deliberate (nilearn's behaviour is a bug there):

* ``sample_mask`` with Butterworth filtering interpolates exactly the censored volumes (nilearn's
  ``_interpolate_volumes`` uses ``~`` on an index array and interpolates mirrored volumes);
* the caller's arrays, images and ``sample_mask`` are never modified (nilearn zeroes non-finite
values
  in the caller's array, shifts an int32 ``sample_mask`` in place, and with ``allow_overlap=False``
  clips negative weights in ``maps_img_`` in place);
* with ``allow_overlap=False`` the overlap test looks at a clipped *copy*: extraction uses the maps
  as fitted, negative weights included;
* with ``keep_masked_maps=False``, ``inverse_transform``, ``set_output`` and
  ``get_feature_names_out`` follow the maps actually extracted (nilearn breaks on them);
* regression is computed in float64 whatever the input dtype, then cast to the dtype nilearn
returns.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask.array as da
import nibabel as nib
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from daskmasker import clean, niimg, params
from daskmasker import confounds as confounds_mod
from daskmasker import maps as maps_mod
from daskmasker.cluster import active_client, compute_images, forward_warnings
from daskmasker.extraction import (
    GridMaps,
    prepare_grid_maps,
    raw_signals,
    region_signals,
    warn_nonfinite,
)
from daskmasker.image import READER_ENCODING, REGION_DIM, TIME_DIM, header_from_attrs

_OUTPUTS = ("default", "pandas", "polars", "xarray")
_RESAMPLE_TRANSFORM_HINT = (
    "To avoid this warning, make sure to pass the images "
    "you want to transform to fit() first, "
    "or directly use fit_transform()."
)
_KEEP_MASKED_MAPS_WARNING = (
    'Applying "mask_img" before signal extraction may result in empty region signals in the '
    'output. These are currently kept.\n"keep_masked_maps" parameter will be removed in version '
    '0.15. Set "keep_masked_maps=False" to silence this warning.'
)


class NiftiMapsMasker(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Extract time series of overlapping maps from 4D images, lazily and out of core.

    A drop-in replacement for ``nilearn.maskers.NiftiMapsMasker`` (nilearn 0.14.1): same parameters,
    defaults, methods, fitted attributes, warnings and errors, and the same numbers. Images may be
    anything nilearn accepts plus daskmasker images, Zarr stores and fsspec URLs; the computation
    is a
    Dask graph over chunks of whole volumes, so memory stays bounded whatever the number of volumes.

    Parameters
    ----------
    maps_img : 4D niimg-like, daskmasker image, Zarr store or URL
        Set of continuous maps, one per region.
    mask_img : 3D niimg-like, optional
        Mask applied to the maps before extraction (binarised, as nilearn does).
    allow_overlap : bool, default=True
        If False, raise when maps overlap.
    smoothing_fwhm : float, optional
        Gaussian smoothing of the data (mm) before extraction.
    standardize : {'zscore_sample', 'zscore', 'psc', True, False, None}, default=False
        Standardization of the region signals. ``'zscore'`` (ddof 0, as older nilearn) is a
        daskmasker extension.
    standardize_confounds : bool, default=True
    high_variance_confounds : bool, default=False
        Prepend the 5 high-variance confounds of the raw data (computed chunk by chunk).
    detrend : bool, default=False
    low_pass, high_pass : float, optional
        Butterworth (or cosine with ``clean_args={'filter': 'cosine'}``) cut-offs in Hz.
    t_r : float, optional
        Repetition time in seconds.
    dtype : dtype-like or 'auto', optional
        Output dtype.
    resampling_target : {'data', 'mask', 'maps', None}, default='data'
    keep_masked_maps : bool, default=False
        Deprecated in nilearn; keeps maps empty inside the mask (their signals are 0).
    memory : None, str, pathlib.Path or joblib.Memory
        Accepted for compatibility; resampled maps are cached in memory per grid.
    memory_level : int, default=0
    verbose : bool or int, default=0
    reports : bool, default=True
    cmap : str, default='CMRmap_r'
    clean_args : dict, optional
        ``filter`` ('butterworth', 'cosine' or False), ``extrapolate``, ``ensure_finite``,
        ``butterworth__order``, ``butterworth__padtype``, ``butterworth__padlen``.

    Attributes
    ----------
    maps_img_ : nibabel.Nifti1Image
        The maps as fitted (cleaned of non-finite values, resampled for the resampling target).
    mask_img_ : nibabel.Nifti1Image or None
        The binary mask on the fitted grid.
    n_elements_ : int
        Number of maps.
    clean_args_ : dict
    memory_ : joblib.Memory
    """

    def __init__(
        self,
        maps_img=None,
        mask_img=None,
        allow_overlap=True,
        smoothing_fwhm=None,
        standardize=False,
        standardize_confounds=True,
        high_variance_confounds=False,
        detrend=False,
        low_pass=None,
        high_pass=None,
        t_r=None,
        dtype=None,
        resampling_target="data",
        keep_masked_maps=False,
        memory=None,
        memory_level=0,
        verbose=0,
        reports=True,
        cmap="CMRmap_r",
        clean_args=None,
    ):
        self.maps_img = maps_img
        self.mask_img = mask_img
        self.allow_overlap = allow_overlap
        self.smoothing_fwhm = smoothing_fwhm
        self.standardize = standardize
        self.standardize_confounds = standardize_confounds
        self.high_variance_confounds = high_variance_confounds
        self.detrend = detrend
        self.low_pass = low_pass
        self.high_pass = high_pass
        self.t_r = t_r
        self.dtype = dtype
        self.resampling_target = resampling_target
        self.keep_masked_maps = keep_masked_maps
        self.memory = memory
        self.memory_level = memory_level
        self.verbose = verbose
        self.reports = reports
        self.cmap = cmap
        self.clean_args = clean_args

    # ------------------------------------------------------------------ logging
    def _log(self, method: str, msg: str) -> None:
        verbose = int(self.verbose) if self.verbose is not None else 0
        if verbose >= 1:
            print(f"[{type(self).__name__}.{method}] {msg}")

    def _log_loading(self, method: str, what: str, obj: Any) -> None:
        if obj is not None:
            self._log(method, f"Loading {what} from {niimg.describe(obj)}")

    # ------------------------------------------------------------------ fit
    def fit(self, imgs=None, y=None):
        """Load, clean and resample the maps (and mask) onto the reference grid.

        Parameters
        ----------
        imgs : 3D/4D niimg-like, optional
            Gives the reference grid for ``resampling_target='data'`` and the report background.
            Only its header and one volume (for the report) are read.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        del y
        params.check_params(self.get_params(deep=False))
        data = None
        if imgs is not None:
            self._log_loading("fit", "data", imgs)
            data = niimg.load_image(imgs)
        self.clean_args_ = dict(self.clean_args or {})
        self.memory_, level = params.check_memory(self.memory, self.memory_level)
        if level != self.memory_level:
            self.memory_level = level

        mask = None
        if self.mask_img is not None:
            self._log_loading("fit", "mask", self.mask_img)
            mask_image = niimg.load_image(self.mask_img, atleast_4d=True)
            mask = maps_mod.binarize_mask(mask_image)
            mask_fov = maps_mod.image_fov(mask_image)
        params.check_resampling_target(self.resampling_target)
        if self.mask_img is None and self.resampling_target == "mask":
            raise ValueError(
                "resampling_target has been set to 'mask' but no mask has been provided.\n"
                "Set resampling_target to something else or provide a mask."
            )

        self._log_loading("fit", "regions", self.maps_img)
        ref_fov = None if data is None else maps_mod.image_fov(data)
        key = (
            maps_mod.FitCache.identity(self.maps_img),
            maps_mod.FitCache.identity(self.mask_img),
            self.resampling_target,
            bool(self.keep_masked_maps),
            None if ref_fov is None else (ref_fov[0], ref_fov[1].tobytes()),
        )
        cached = maps_mod.FIT_CACHE.get(key)
        if cached is None:
            cached = self._fit_maps(data, mask, None if mask is None else mask_fov)
            maps_mod.FIT_CACHE.put(key, (self.maps_img, self.mask_img), cached)
        maps, maps_fov, maps_header, mask, mask_fov, grid_maps, resampled = cached
        for message in resampled:
            self._log("fit", message)

        self.maps_img_ = maps_mod.to_nifti(maps, maps_fov[1], maps_header)
        self.mask_img_ = (
            None if mask is None else maps_mod.to_nifti(mask.astype(np.int8), mask_fov[1])
        )
        self._grid_maps = grid_maps
        self._maps = maps
        self._maps_fov = maps_fov
        self._mask = mask
        self._mask_fov = None if mask is None else mask_fov
        # the regression's maps and Gram solver on the fitted grid (shared through the cache)
        self._grid_maps_for(maps_fov)
        self._report_content = {"reports_at_fit_time": self.reports, "warning_message": None}
        if self.reports:
            self._reporting_data = {
                "maps_image": self.maps_img_,
                "mask": self.mask_img_,
                "dim": None,
                "images": None,
            }
            if data is not None:
                self._reporting_data["images"] = _MiddleVolume(data)
                self._reporting_data["dim"] = tuple(data.shape[::-1])
        else:
            self._reporting_data = None
        self.n_elements_ = int(maps.shape[0])
        self._log("fit", "Finished fit")
        return self

    def _fit_maps(self, data, mask, mask_fov):
        """Load, clean and resample the maps and mask for the resampling target (cached)."""
        resampled: list[str] = []
        maps_image = niimg.load_image(self.maps_img, atleast_4d=True)
        maps_fov = maps_mod.image_fov(maps_image)
        maps_header = header_from_attrs(maps_image.attrs)

        if self.resampling_target is None:
            fovs = {"maps": maps_fov}
            if mask is not None:
                fovs["mask"] = mask_fov
            if data is not None:
                fovs["data"] = maps_mod.image_fov(data)
            maps_mod.check_same_fov(fovs)

        ref = None
        if self.resampling_target == "data" and data is not None:
            ref = maps_mod.image_fov(data)
        elif self.resampling_target == "mask":
            ref = mask_fov
        elif self.resampling_target == "maps":
            ref = maps_fov

        onto = None
        if ref is not None and self.resampling_target != "maps":
            onto = None if maps_mod.same_fov(ref, maps_fov) else ref
        maps = maps_mod.load_maps(maps_image, onto=onto)
        any_map = bool(maps.any())
        if onto is not None:
            resampled.append("Resampling regions")
            maps_fov = ref
            if not any_map:
                raise ValueError("No map left after resampling maps_img.")
        if ref is not None and mask is not None and not maps_mod.same_fov(ref, mask_fov):
            resampled.append("Resampling mask")
            mask = maps_mod.resample_mask(mask, mask_fov[1], *ref)
            mask_fov = ref

        if not any_map:
            raise ValueError("maps_img contains no map.")
        if mask is not None and ref is not None and not any(m[mask].any() for m in maps):
            raise ValueError("No map left after applying mask to the maps image.")

        return maps, maps_fov, maps_header, mask, mask_fov, {}, tuple(resampled)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "maps_img_") and hasattr(self, "n_elements_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags

    # ------------------------------------------------------------------ transform
    def fit_transform(self, imgs, y=None, confounds=None, sample_mask=None):
        """Fit to ``imgs``, then transform them (bit for bit ``fit`` then ``transform``)."""
        return self.fit(imgs).transform(imgs, confounds=confounds, sample_mask=sample_mask)

    def transform(self, imgs, confounds=None, sample_mask=None):
        """Extract the region signals of ``imgs``.

        Parameters
        ----------
        imgs : 3D/4D niimg-like, daskmasker image, Zarr store or URL
        confounds : ndarray, DataFrame, csv/tsv path, or a list of these, optional
        sample_mask : indices or booleans (or a list holding one), optional

        Returns
        -------
        ndarray of shape (n_volumes, n_maps)
            ``(n_maps,)`` for a 3D image.  With ``set_output(transform="pandas")`` a DataFrame and
            with ``set_output(transform="xarray")`` a lazy ``DataArray`` with dims time and region.
        """
        check_is_fitted(self)
        if self.standardize in [True, False]:  # nilearn's test: 1, 0 and np.True_ warn too
            warnings.warn(clean.STANDARDIZE_BOOL_WARNING, FutureWarning, stacklevel=2)
        all_confounds = None
        if confounds is not None or self.high_variance_confounds:
            all_confounds = []
            if self.high_variance_confounds:
                all_confounds.append(_HighVariance())
            if confounds is not None:
                all_confounds += confounds if isinstance(confounds, list) else [confounds]
        return self.transform_single_imgs(imgs, confounds=all_confounds, sample_mask=sample_mask)

    def transform_single_imgs(self, imgs, confounds=None, sample_mask=None):
        """Extract the signals of one 3D or 4D image (the worker behind :meth:`transform`)."""
        check_is_fitted(self)
        lazy = self._lazy_signals(imgs, confounds=confounds, sample_mask=sample_mask)
        return self._finalize_output(lazy)

    def _lazy_signals(self, imgs, confounds=None, sample_mask=None) -> xr.DataArray:
        return self._lazy_outputs(imgs, confounds, sample_mask)[0]

    def _attrs_params(self) -> dict:
        """The constructor parameters as JSON-friendly attributes for outputs."""
        return _json_params(self.get_params(deep=False))

    def _lazy_outputs(self, imgs, confounds=None, sample_mask=None):
        """Lazy cleaned signals (DataArray) and the lazy confounds they were cleaned with."""
        method = "transform"
        self._log_loading(method, "data", imgs)
        img = niimg.load_image(imgs)
        is_3d = img.ndim == 3
        if is_3d:
            img = img.expand_dims(TIME_DIM)
        raw = img
        source_dtype = niimg.source_dtype(img)
        data_fov = maps_mod.image_fov(img)
        n_scans = int(img.shape[0])

        target = self.resampling_target
        if target is None:
            fovs = {"maps": self._maps_fov, "data": data_fov}
            if self._mask is not None:
                fovs["mask"] = self._mask_fov
            maps_mod.check_same_fov(fovs)
        elif target == "data":
            if not maps_mod.same_fov(data_fov, self._maps_fov):
                warnings.warn(
                    "Resampling maps at transform time...\n" + _RESAMPLE_TRANSFORM_HINT,
                    UserWarning,
                    stacklevel=4,
                )
            if self._mask is not None and not maps_mod.same_fov(data_fov, self._mask_fov):
                warnings.warn(
                    "Resampling mask at transform time...\n" + _RESAMPLE_TRANSFORM_HINT,
                    UserWarning,
                    stacklevel=4,
                )
        elif target == "maps" and not maps_mod.same_fov(data_fov, self._maps_fov):
            warnings.warn(
                "Resampling images at transform time...\n"
                "To avoid this warning, make sure to resample the images you want to transform "
                "to the shape of the maps or set resampling_target to 'data'.",
                UserWarning,
                stacklevel=4,
            )
        grid_maps = self._grid_maps_for(data_fov if target == "data" else self._maps_fov)
        if not self.allow_overlap:
            maps_mod.check_overlap(grid_maps.maps)

        if target in ("maps", "mask") and not maps_mod.same_fov(data_fov, self._maps_fov):
            from daskmasker import resample

            self._log(method, "Resampling images")
            img = resample.resample_image(
                img, self._maps_fov[1], tuple(self._maps_fov[0][::-1]), "continuous"
            )
        if self.smoothing_fwhm is not None:
            from daskmasker import smooth

            self._log(method, "Smoothing images")
            img = smooth.smooth_image(img, self.smoothing_fwhm)
        data = img.data if isinstance(img.data, da.Array) else da.from_array(img.data)
        pipeline_dtype = np.result_type(data.dtype, self._maps.dtype)

        self._log(method, "Extracting region signals")
        if self.keep_masked_maps and self._mask is not None:
            warnings.warn(_KEEP_MASKED_MAPS_WARNING, FutureWarning, stacklevel=4)
        elif grid_maps.dropped:
            warnings.warn(
                "After applying mask to the maps image, maps with the following indices were "
                f"removed: {set(grid_maps.dropped)}. Out of {self.n_elements_} maps, the masked "
                f"map image only contains {grid_maps.kept.size} maps.",
                UserWarning,
                stacklevel=4,
            )
        # data used as read (not resampled, smoothed, or also read for high-variance
        # confounds) is reduced in the task that reads it (see regression.project)
        reader = raw.encoding.get(READER_ENCODING) if img is raw else None
        if reader is not None and (self.high_variance_confounds or not reader.chunks_of(data)):
            reader = None
        if reader is not None and reader.sequential and active_client() is None:
            # locally another thread gathers a .nii.gz chunk while the next one inflates (10 %
            # faster); on a cluster an image runs on one worker, where fewer tasks count more
            reader = None
        products = raw_signals(data, grid_maps, reader=reader)

        conf = self._confounds(confounds, raw, n_scans)
        mask_idx = confounds_mod.load_sample_mask(sample_mask, n_scans)
        self._log(method, "Cleaning extracted signals")
        out_dtype = _output_dtype(pipeline_dtype, source_dtype, self.dtype)
        n_out = n_scans if mask_idx is None else int(mask_idx.size)
        # one block, named up front: a cluster's compute forwards its warnings by this name
        n_kept = int(grid_maps.kept.size)
        # t, s and c are contracted: the task concatenates the blocks itself, and the confounds keep
        # their own time chunks (a shared index would rechunk them to the products' batches)
        args = [products, "tk"] + ([conf, "sc"] if conf is not None else [])
        options = dict(
            operator=grid_maps.solver.operator,
            mask_idx=mask_idx,
            kwargs=self._clean_kwargs(),
            out_dtype=out_dtype,
        )
        name = f"clean_block-{tokenize(*args, options)}"
        cleaned = da.blockwise(
            _clean_block,
            "jk",
            *args,
            name=name,
            concatenate=True,
            new_axes={"j": n_out},
            adjust_chunks={"k": (n_kept,)},
            dtype=out_dtype,
            meta=np.empty((0, 0), dtype=out_dtype),
            collection=name,
            **options,
        )
        t_r = self.t_r or img.attrs.get("t_r")
        frames = np.arange(n_scans) if mask_idx is None else np.asarray(mask_idx)
        coords = {
            REGION_DIM: ("region", grid_maps.kept),
            "frame": ("time", frames),
        }
        if t_r:
            coords[TIME_DIM] = ("time", frames * float(t_r), {"units": "s"})
        signals_da = xr.DataArray(
            cleaned,
            dims=(TIME_DIM, REGION_DIM),
            coords=coords,
            name="signals",
            attrs={"is_3d": int(is_3d), **self._attrs_params()},
        )
        signals_da.encoding["source"] = raw.attrs.get("source")
        return signals_da, conf

    def _finalize_output(self, lazy: xr.DataArray):
        output = getattr(self, "_output", "default")
        if output == "xarray":
            return lazy
        # a .nii.gz is one sequential stream: on a cluster its tasks stay on one worker
        gzip = str(lazy.encoding.get("source", "")).endswith(".gz")
        (values,) = compute_images([lazy.data], pin=gzip)
        if output == "default":
            return values.squeeze() if lazy.attrs["is_3d"] else values
        columns = self.get_feature_names_out()
        if output == "pandas":
            return pd.DataFrame(values, columns=columns)
        import polars as pl

        return pl.DataFrame(values, schema=list(columns))

    def _confounds(self, confounds, raw: xr.DataArray, n_scans: int) -> da.Array | None:
        """User confounds (validated now) and the lazy high-variance ones, in nilearn's order."""
        if confounds is None:
            return None
        parts = []
        user = [c for c in confounds if not isinstance(c, _HighVariance)]
        for item in confounds:
            if isinstance(item, _HighVariance):
                from daskmasker import high_variance

                if raw.shape[0] == 1:
                    raise niimg.DimensionError(4, 3)
                parts.append(high_variance.high_variance_confounds(raw))
            elif item is user[0]:
                loaded = confounds_mod.load_confounds(user, n_scans)
                if loaded is not None:
                    values = np.atleast_2d(loaded.T).T
                    # named after the image too: images given the same confounds must not
                    # share a key, which would tie each image's job to another's on a cluster
                    name = f"confounds-{tokenize(values, getattr(raw.data, 'name', None))}"
                    parts.append(da.from_array(values, name=name))
        if not parts:
            return None
        return da.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def _clean_kwargs(self) -> dict:
        args = dict(self.clean_args_)
        kwargs = {
            "detrend": self.detrend,
            "standardize": self.standardize,
            "standardize_confounds": self.standardize_confounds,
            "t_r": self.t_r,
            "low_pass": self.low_pass,
            "high_pass": self.high_pass,
        }
        renames = {
            "butterworth__order": "butterworth_order",
            "butterworth__padtype": "padtype",
            "butterworth__padlen": "padlen",
        }
        for key, value in args.items():
            kwargs[renames.get(key, key)] = value
        return kwargs

    def _grid_maps_for(self, fov) -> GridMaps:
        """The maps (and mask) on the grid ``fov = (shape_zyx, affine)``, prepared once per grid."""
        key = (tuple(fov[0]), np.asarray(fov[1], dtype=np.float64).tobytes())
        if key not in self._grid_maps:
            maps, mask = self._maps, self._mask
            if not maps_mod.same_fov(fov, self._maps_fov):
                maps = maps_mod.resample_maps(maps, self._maps_fov[1], *fov)
                if not maps.any():
                    raise ValueError("No map left after resampling maps_img.")
            if mask is not None and not maps_mod.same_fov(fov, self._mask_fov):
                mask = maps_mod.resample_mask(mask, self._mask_fov[1], *fov)
            self._grid_maps[key] = prepare_grid_maps(maps, mask, bool(self.keep_masked_maps))
        return self._grid_maps[key]

    # ------------------------------------------------------------------ outputs
    def set_output(self, *, transform=None):
        """Choose the container of ``transform``: 'default' (numpy), 'pandas', 'polars' or 'xarray'.

        'xarray' returns a lazy ``DataArray`` (dims time and region) that computes nothing until
        ``.compute()``.
        """
        if transform is None:
            return self
        if transform not in _OUTPUTS:
            raise ValueError(f"output config must be one of {_OUTPUTS}, got {transform!r}")
        self._output = transform
        return self

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``niftimapsmasker0`` ... in map order."""
        del input_features
        check_is_fitted(self)
        kept = self._kept_maps()
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{k}" for k in kept], dtype=object)

    def _kept_maps(self) -> np.ndarray:
        """Indices of the maps ``transform`` returns on the fitted grid."""
        return self._grid_maps_for(self._maps_fov).kept

    def inverse_transform(self, region_signals):
        """Voxel signals ``Σ_k s_k · map_k`` on the fitted maps' grid, zero outside the support.

        Accepts the width ``transform`` returned: all maps, or only the kept ones when
        ``keep_masked_maps=False`` dropped some (nilearn raises there).
        """
        check_is_fitted(self)
        signals = _check_inverse_input(region_signals)
        kept = self._kept_maps()
        if signals.shape[-1] not in (self.n_elements_, kept.size):
            expected = (
                (self.n_elements_,) if signals.ndim == 1 else (signals.shape[0], self.n_elements_)
            )
            raise ValueError(
                "Input to 'inverse_transform' has wrong shape.\n"
                f"Expected {expected}.\nGot {signals.shape}."
            )
        self._log("inverse_transform", "Computing image from signals")
        maps = self._maps if signals.shape[-1] == self.n_elements_ else self._maps[kept]
        if self._mask is not None:
            support = np.zeros(maps.shape[1:], dtype=bool)
            for m in self._maps[kept]:
                support |= m != 0
            support &= self._mask
        else:
            support = np.ones(maps.shape[1:], dtype=bool)
        flat = np.flatnonzero(support)
        rows = maps.reshape(maps.shape[0], -1)[:, flat]
        values = np.atleast_2d(signals) @ rows
        out = np.zeros((values.shape[0], support.size), dtype=values.dtype)
        out[:, flat] = values
        out = out.reshape((values.shape[0], *support.shape))
        target = params.target_dtype(signals.dtype, self.dtype) or signals.dtype
        data = out[0] if signals.ndim == 1 else out
        img = nib.Nifti1Image(np.asarray(data.T, dtype=target), self.maps_img_.affine)
        img.set_data_dtype(target)
        return img

    # ------------------------------------------------------------------ reports
    def generate_report(self, displayed_maps=10, title=None):
        """An HTML report of the fitted maps (see :mod:`daskmasker.report`)."""
        from daskmasker import report

        return report.generate_report(self, displayed_maps=displayed_maps, title=title)


class _HighVariance:
    """Marks where the high-variance confounds of the raw image go in the confounds list."""


class _MiddleVolume:
    """The volume nilearn shows in reports (the middle one of a 4D image), read on first use:
    ``fit`` reads no voxel data, a report reads this one volume."""

    def __init__(self, img: xr.DataArray):
        self._volume = img[img.shape[0] // 2] if img.ndim == 4 else img
        self._affine = np.asarray(img.attrs["affine"])
        self._image = None

    def load(self) -> nib.Nifti1Image:
        if self._image is None:
            self._image = maps_mod.to_nifti(np.asarray(self._volume.data), self._affine)
        return self._image


def _json_params(values: dict) -> dict:
    """Masker parameters as attrs: JSON-friendly values, images described by their repr."""
    out = {}
    for key, value in values.items():
        if value is None or isinstance(value, bool | int | float | str):
            out[key] = value if value is not None else "None"
        elif isinstance(value, dict):
            out[key] = repr(value)
        else:
            out[key] = niimg.describe(value)
    return out


def _check_inverse_input(signals) -> np.ndarray:
    """nilearn's checks on ``inverse_transform`` input (DataFrames, NaN, dimensions, bools)."""
    if hasattr(signals, "to_numpy"):
        signals = signals.to_numpy().squeeze()
    signals = np.atleast_1d(np.asarray(signals))
    if signals.ndim > 2:
        raise ValueError(f"Found array with dim {signals.ndim}. None expected <= 2.")
    if signals.dtype.kind == "b":
        warnings.warn("Casting boolean input to int32", UserWarning, stacklevel=3)
        signals = signals.astype(np.int32)
    if signals.dtype.kind in "fc" and not np.isfinite(signals).all():
        raise ValueError("Input contains NaN.")
    return signals


@forward_warnings
def _clean_block(products, conf=None, *, operator, mask_idx, kwargs, out_dtype):
    signals, nonfinite = region_signals(products, operator)
    warn_nonfinite(nonfinite)
    cleaned = clean.clean_signals(signals, confounds=conf, sample_mask=mask_idx, **kwargs)
    return np.asarray(cleaned).astype(out_dtype, copy=False)


def _output_dtype(pipeline_dtype, source_dtype, dtype) -> np.dtype:
    """nilearn's output dtype: the pipeline's float dtype, or the requested one (§3.5)."""
    pipeline = np.dtype(pipeline_dtype)
    if pipeline.kind != "f":
        pipeline = np.dtype(np.float32 if pipeline.itemsize <= 4 else np.float64)
    if dtype is None:
        return pipeline
    target = params.target_dtype(source_dtype, dtype)
    return np.dtype(source_dtype if target is None else target)
