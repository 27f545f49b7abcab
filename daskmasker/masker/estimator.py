"""``NiftiMapsMasker``: nilearn's maps masker as a thin estimator over a lazy Dask graph.

The estimator only validates, loads and caches; the work is done by pure functions:
:mod:`daskmasker.masker.fitting` (the maps and mask on the fitted grid) and
:mod:`daskmasker.masker.transform` (an image → the lazy graph of its cleaned region signals),
themselves thin layers over the array code of :mod:`daskmasker.compute`.

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
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from daskmasker.masker import labels, params
from daskmasker.masker.sklearn_protocol import (
    SklearnProtocol,
    adopt_sklearn_bases,
    check_is_fitted,
    load_sklearn,
)
from daskmasker.stacklevel import find_stack_level, reemits_warnings

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import nibabel as nib
    import xarray as xr
    from joblib import Memory
    from numpy.typing import DTypeLike
    from sklearn.utils import Tags
    from typing_extensions import Self

    from daskmasker.masker.spec import ExtractionSpec
    from daskmasker.report.html import Report

# Dask, xarray, zarr, nibabel, pandas, the extraction modules and scikit-learn are imported where
# they are first used (fit, transform...; scikit-learn only by its own features: tags, repr, the
# HTML diagram, NotFittedError), not when the class is: a one-shot job (a CLI call, a SLURM array
# task) constructs, fits and transforms its masker without paying for scikit-learn, and for the
# rest only when it fits (benchmarks/bench_startup.py).  The class is a scikit-learn estimator
# (TransformerMixin, BaseEstimator) as soon as anyone imports sklearn.base: see sklearn_protocol.

_OUTPUTS = ("default", "pandas", "polars", "xarray")


@adopt_sklearn_bases
class NiftiMapsMasker(SklearnProtocol, auto_wrap_output_keys=None):
    """Extract time series of overlapping maps from 4D images, lazily and out of core.

    A drop-in replacement for ``nilearn.maskers.NiftiMapsMasker`` (nilearn 0.14.1): same parameters,
    defaults, methods, fitted attributes, warnings and errors, and the same numbers. Images may be
    anything nilearn accepts plus daskmasker images, Zarr stores and fsspec URLs; the computation
    is a Dask graph over chunks of whole volumes, so memory stays bounded whatever the number of
    volumes.

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
    low_pass : float, optional
        Low-pass cut-off of the Butterworth filter, in Hz.
    high_pass : float, optional
        High-pass cut-off in Hz: Butterworth, or cosine drifts with
        ``clean_args={'filter': 'cosine'}``.
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
    region_names : list of str or path of a labels file, optional
        A daskmasker extension: one name per map (a ``.txt`` file with one per line, or a
        ``.tsv``/``.csv`` with a ``name`` column), used by ``get_feature_names_out``, so by
        pandas/polars outputs and batch stores. Default: nilearn's ``niftimapsmasker<k>``.
    min_coverage : float in [0, 1], optional
        A daskmasker extension (default None: off, as nilearn): a region whose map has less than
        this fraction of its weight inside the mask (the masker's, and a run's brain mask in
        batches, see :mod:`daskmasker.masker.coverage`) gets NaN signals, with a warning naming
        it, as xcp_d's ``min_coverage``.

    Attributes
    ----------
    clean_args_ : dict
        ``clean_args``, or an empty dict.
    maps_img_ : nibabel.Nifti1Image
        The maps as fitted (cleaned of non-finite values, resampled for the resampling target).
    mask_img_ : nibabel.Nifti1Image or None
        The binary mask on the fitted grid.
    memory_ : joblib.Memory
    n_elements_ : int
        Number of maps.
    """

    __module__ = "daskmasker.maskers"  # the public path, as nilearn.maskers (see maskers.py)

    def __init__(
        self,
        maps_img: Any = None,
        mask_img: Any = None,
        allow_overlap: bool = True,
        smoothing_fwhm: float | None = None,
        standardize: Literal["zscore_sample", "zscore", "psc"] | bool | None = False,
        standardize_confounds: bool = True,
        high_variance_confounds: bool = False,
        detrend: bool = False,
        low_pass: float | None = None,
        high_pass: float | None = None,
        t_r: float | None = None,
        dtype: DTypeLike | None = None,
        resampling_target: Literal["data", "mask", "maps"] | None = "data",
        keep_masked_maps: bool = False,
        memory: Memory | str | Path | None = None,
        memory_level: int = 0,
        verbose: bool | int = 0,
        reports: bool = True,
        cmap: str = "CMRmap_r",
        clean_args: dict[str, Any] | None = None,
        region_names: Sequence[str] | str | Path | None = None,
        min_coverage: float | None = None,
    ) -> None:
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
        self.region_names = region_names
        self.min_coverage = min_coverage

    # ------------------------------------------------------------------ logging
    def _log(self, method: str, msg: str) -> None:
        verbose = int(self.verbose) if self.verbose is not None else 0
        if verbose >= 1:
            print(f"[{type(self).__name__}.{method}] {msg}")

    def _log_loading(self, method: str, what: str, obj: Any) -> None:
        if obj is not None:
            from daskmasker.io import load

            self._log(method, f"Loading {what} from {load.describe(obj)}")

    # ------------------------------------------------------------------ fit
    @reemits_warnings
    def fit(self, imgs: Any = None, y: None = None) -> Self:
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
        from daskmasker.io import load
        from daskmasker.io.image import as_nibabel
        from daskmasker.masker.fitting import fit_maps
        from daskmasker.report import content as report_content

        params.check_params(self.get_params(deep=False))
        data = None
        if imgs is not None:
            self._log_loading("fit", "data", imgs)
            data = load.load_image(imgs)
        self.clean_args_ = dict(self.clean_args or {})
        self.memory_, level = params.check_memory(self.memory, self.memory_level)
        if level != self.memory_level:
            self.memory_level = level

        if self.mask_img is not None:
            self._log_loading("fit", "mask", self.mask_img)
        params.check_resampling_target(self.resampling_target)
        if self.mask_img is None and self.resampling_target == "mask":
            raise ValueError(
                "resampling_target has been set to 'mask' but no mask has been provided.\n"
                "Set resampling_target to something else or provide a mask."
            )
        self._log_loading("fit", "regions", self.maps_img)
        fitted = fit_maps(
            self.maps_img, self.mask_img, self.resampling_target, self.keep_masked_maps, data
        )
        for message in fitted.messages:
            self._log("fit", message)

        self.maps_img_ = _in_memory(fitted.maps_image())
        self.mask_img_ = None
        if fitted.mask is not None and fitted.mask_grid is not None:  # set together
            mask = as_nibabel(fitted.mask.astype(np.int8), fitted.mask_grid.affine)
            self.mask_img_ = _in_memory(mask)
        self._fitted = fitted
        self._region_names = labels.region_names(self.region_names, fitted.n_maps)
        # the regression's maps and Gram solver on the fitted grid (shared through the cache)
        fitted.on_grid(fitted.maps_grid)
        self._report_content = report_content.initial_content()
        self._report_content["reports_at_fit_time"] = self.reports
        if hasattr(self, "_reporting_data"):
            del self._reporting_data
        if self.reports:
            self._reporting_data: dict[str, Any] = {
                "maps_image": self.maps_img_,
                "mask": self.mask_img_,
                "dim": None,
                "images": None,
            }
            if data is not None:
                self._reporting_data["images"] = _MiddleVolume(data)
                self._reporting_data["dim"] = data.ndim
        self.n_elements_ = fitted.n_maps
        self._log("fit", "Finished fit")
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "maps_img_") and hasattr(self, "n_elements_")

    def __sklearn_tags__(self) -> Tags:
        """scikit-learn tags as nilearn 0.14.1's maskers declare them: a "masker" taking images.

        nilearn's estimator checks (``nilearn._utils.estimator_checks``) select their checks by
        these tags (``estimator_type == "masker"``, ``input_tags.niimg_like``).
        """
        load_sklearn()  # this class's bases are then TransformerMixin and BaseEstimator
        from daskmasker.masker.image_tags import ImageInputTags

        tags = super().__sklearn_tags__()  # type: ignore[misc]  # BaseEstimator's, once rebased
        tags.input_tags = ImageInputTags()
        tags.estimator_type = "masker"
        return tags

    def _more_tags(self) -> Tags:
        """The tags again, under the name nilearn's checks compare them with (``check_tags``)."""
        return self.__sklearn_tags__()

    # ------------------------------------------------------------------ transform
    def fit_transform(
        self, imgs: Any, y: None = None, confounds: Any = None, sample_mask: Any = None
    ) -> Any:
        """Fit to ``imgs``, then transform them (bit for bit ``fit`` then ``transform``)."""
        return self.fit(imgs).transform(imgs, confounds=confounds, sample_mask=sample_mask)

    def transform(self, imgs: Any, confounds: Any = None, sample_mask: Any = None) -> Any:
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
        from daskmasker.compute.clean import STANDARDIZE_BOOL_WARNING
        from daskmasker.masker.confounds import confounds_list

        check_is_fitted(self)
        if self.standardize in [True, False]:  # nilearn's test: 1, 0 and np.True_ warn too
            warnings.warn(STANDARDIZE_BOOL_WARNING, FutureWarning, stacklevel=find_stack_level())
        all_confounds = confounds_list(confounds, self.high_variance_confounds)
        return self.transform_single_imgs(imgs, confounds=all_confounds, sample_mask=sample_mask)

    @reemits_warnings
    def transform_single_imgs(
        self, imgs: Any, confounds: Any = None, sample_mask: Any = None
    ) -> Any:
        """Extract the signals of one 3D or 4D image (the worker behind :meth:`transform`)."""
        check_is_fitted(self)
        lazy = self._lazy_signals(imgs, confounds=confounds, sample_mask=sample_mask)
        return self._finalize_output(lazy)

    def extraction_spec(self) -> ExtractionSpec:
        """The fitted extraction, frozen: a :class:`~daskmasker.masker.spec.ExtractionSpec`.

        Batches, the command line and several-atlas passes build their lazy extractions from it;
        it holds the fitted maps and mask, the current parameters, ``clean_args_`` and the region
        names.

        Returns
        -------
        ExtractionSpec
        """
        from daskmasker.masker.spec import ExtractionSpec

        check_is_fitted(self)
        return ExtractionSpec(
            fitted=self._fitted,
            params=dict(self.get_params(deep=False)),
            clean_args=dict(self.clean_args_),
            region_names=tuple(str(n) for n in self._region_names_of(np.arange(self.n_elements_))),
            high_variance_last=self._high_variance_last,
        )

    _high_variance_last = False  # nilearn's multi masker puts them after the user's confounds

    def _lazy_signals(
        self, imgs: Any, confounds: Any = None, sample_mask: Any = None
    ) -> xr.DataArray:
        """Lazy signals of one image; ``confounds`` already in nilearn's order (HighVariance
        marked, :func:`~daskmasker.masker.confounds.confounds_list`)."""
        from daskmasker.masker.transform import lazy_signals

        self._log_loading("transform", "data", imgs)
        return lazy_signals(
            self._fitted,
            imgs,
            self.get_params(deep=False),
            self.clean_args_,
            confounds=confounds,
            sample_mask=sample_mask,
            log=lambda msg: self._log("transform", msg),
        )[0]

    def _finalize_output(self, lazy: xr.DataArray) -> Any:
        output = getattr(self, "_output", "default")
        if output == "xarray":
            return lazy
        # a .nii.gz is one sequential stream: on a cluster its tasks stay on one worker
        from daskmasker.runtime.scheduling import compute_images

        gzip = str(lazy.encoding.get("source", "")).endswith(".gz")
        (values,) = compute_images([lazy.data], pin=gzip)
        if output == "default":
            return values.squeeze() if lazy.attrs["is_3d"] else values
        columns = self.get_feature_names_out()
        if output == "pandas":
            import pandas as pd

            return pd.DataFrame(values, columns=columns)
        import polars as pl

        return pl.DataFrame(values, schema=list(columns))

    # ------------------------------------------------------------------ outputs
    def set_output(self, *, transform: str | None = None) -> Self:
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

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns: ``niftimapsmasker0`` ... in map order (or the
        ``region_names`` of the kept maps)."""
        del input_features
        check_is_fitted(self)
        return self._region_names_of(self._kept_maps())

    def _region_names_of(self, maps: np.ndarray) -> np.ndarray:
        """The names of the maps of these indices (``region_names``, else nilearn's)."""
        names = getattr(self, "_region_names", None)
        if names is not None:
            return names[np.asarray(maps, dtype=int)]
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{k}" for k in maps], dtype=object)

    def _kept_maps(self) -> np.ndarray:
        """Indices of the maps ``transform`` returns on the fitted grid."""
        return self._fitted.kept

    def inverse_transform(self, region_signals: Any) -> nib.Nifti1Image:
        """Voxel signals ``Σ_k s_k · map_k`` on the fitted maps' grid, zero outside the support.

        Accepts the width ``transform`` returned: all maps, or only the kept ones when
        ``keep_masked_maps=False`` dropped some (nilearn raises there).
        """
        from daskmasker.masker import inverse

        check_is_fitted(self)
        signals = inverse.check_signals(region_signals)
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
        target = params.target_dtype(signals.dtype, self.dtype) or signals.dtype
        return inverse.signals_to_image(
            signals, self._fitted, kept, self.maps_img_.affine, np.dtype(target)
        )

    # ------------------------------------------------------------------ reports
    # nilearn's class-level default, read by its report checks before any fit or report
    _report_content: dict[str, Any] = {}  # noqa: RUF012 (replaced, never mutated, by fit)

    def generate_report(
        self,
        engine: str = "matplotlib",
        title: str | None = None,
        displayed_maps: int | Sequence[int] | np.ndarray | str = 10,
    ) -> Report:
        """An HTML report of the fitted maps, as nilearn's (see :mod:`daskmasker.report.html`).

        Parameters
        ----------
        engine : {'matplotlib'}, default='matplotlib'
        title : str, optional
            Default: the class name.
        displayed_maps : int, list or array of ints, or 'all', default=10
            The maps shown one by one (an overview shows all of them).

        Returns
        -------
        nilearn.reporting.HTMLReport
            A daskmasker :class:`~daskmasker.report.html.Report`, which also saves to URLs.
        """
        from daskmasker.report import figures

        try:
            from daskmasker.report import html
        except ImportError as exc:  # nilearn (the plotting extra) is not installed
            raise ImportError(figures.MISSING) from exc
        return html.generate_report(self, displayed_maps=displayed_maps, title=title, engine=engine)

    def _has_report_data(self) -> bool:
        """Whether fit kept what a report draws (nilearn's name)."""
        return hasattr(self, "_reporting_data")

    @property
    def _report_warnings(self) -> list[str]:
        """The report's warnings, sorted and without duplicates (nilearn's name)."""
        return sorted(set(self._report_content.get("warning_messages", [])))

    # ------------------------------------------------------------------ documentation
    # sklearn's HTML repr links the class to its documentation: nilearn's page of the class that
    # daskmasker's replaces (same parameters, attributes and methods)
    _doc_link_module = "daskmasker"
    _doc_link_template = (
        "https://nilearn.github.io/stable/modules/generated/nilearn.maskers.{estimator_name}.html"
    )

    def _doc_link_url_param_generator(self, *args: Any) -> dict[str, str]:
        del args
        return {"estimator_name": type(self).__name__}


class _MiddleVolume:
    """The volume nilearn shows in reports (the middle one of a 4D image), read on first use:
    ``fit`` reads no voxel data, a report reads this one volume."""

    def __init__(self, img: xr.DataArray, index: int | None = None) -> None:
        if index is None:
            index = img.shape[0] // 2 if img.ndim == 4 else None
        self._img = img
        self._volume = img if index is None else img[index]
        self._affine = np.asarray(img.attrs["affine"])
        self._image: nib.Nifti1Image | None = None

    def first(self) -> _MiddleVolume:
        """The first volume instead (nilearn shows it for a list of 4D images)."""
        return _MiddleVolume(self._img, 0)

    def load(self) -> nib.Nifti1Image:
        if self._image is None:
            from daskmasker.io.image import as_nibabel

            self._image = as_nibabel(np.asarray(self._volume.data), self._affine)
        return self._image


def _in_memory(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """The image with its array cached, as nilearn's fitted images are after its ``get_data``
    (nibabel's ``_data_cache``): reading the data then leaves the image, and its joblib hash,
    unchanged (nilearn's check_masker_joblib_cache)."""
    if isinstance(img.dataobj, np.ndarray):  # sparse maps stay behind their lazy proxy
        img._data_cache = img.dataobj
    return img
