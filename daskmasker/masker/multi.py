"""``MultiNiftiMapsMasker``: nilearn's multi-subject API, all subjects in one Dask computation.

As :mod:`~daskmasker.masker.estimator`, it imports nibabel, xarray, Dask and the extraction
modules where they are first used, not when the class is (``daskmasker.maskers`` imports both
classes: constructing either pays for none of them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from daskmasker.masker.estimator import NiftiMapsMasker
from daskmasker.masker.sklearn_protocol import check_is_fitted
from daskmasker.stacklevel import reemits_warnings

if TYPE_CHECKING:
    import dask.array as da
    import numpy as np
    import pandas as pd
    import xarray as xr
    from joblib import Memory
    from numpy.typing import DTypeLike


def _is_single(imgs: Any) -> bool:
    import os

    import nibabel as nib
    import xarray as xr

    return isinstance(imgs, nib.spatialimages.SpatialImage | str | os.PathLike | xr.DataArray)


def _multi_docstring(single: str | None) -> str | None:
    """NiftiMapsMasker's docstring with this class's summary and ``n_jobs`` inserted before
    ``clean_args``, in ``__init__``'s order (nilearn's check_doc_attributes wants that order);
    None when Python runs without docstrings (``-OO``)."""
    if single is None:
        return None
    body = single[single.index("    Parameters\n") :]
    n_jobs = (
        "    n_jobs : int, default=1\n"
        "        Threads of the local scheduler (-1: all cores); ignored on a distributed "
        "cluster.\n"
    )
    body = body.replace("    clean_args : dict", n_jobs + "    clean_args : dict", 1)
    summary = (
        "Maps masker for lists of 4D images, as ``nilearn.maskers.MultiNiftiMapsMasker``.\n\n"
        "    ``transform`` of a list returns a list of arrays.  The images' graphs are computed\n"
        "    together, so their chunks run concurrently: ``n_jobs`` threads on the local\n"
        "    scheduler, or every worker of an active ``distributed.Client``.  Each image's\n"
        "    confounds may be an array, a DataFrame, a csv/tsv path, a list of these, or None;\n"
        "    high-variance confounds are appended *after* them, as nilearn's multi masker does.\n\n"
    )
    return summary + body


def _confounds_list(confounds: Any) -> list | None:
    """One image's confounds as the list the transform graph takes: None stays None; an array,
    DataFrame or csv/tsv path becomes a one-item list; a list or tuple is copied (never the
    caller's list, which nilearn extends in place with the high-variance confounds)."""
    if confounds is None:
        return None
    return list(confounds) if isinstance(confounds, list | tuple) else [confounds]


# scikit-learn's __init_subclass__ takes auto_wrap_output_keys; mypy sees object's (the masker's
# base is being rewritten, hence unused-ignore)
class MultiNiftiMapsMasker(NiftiMapsMasker, auto_wrap_output_keys=None):  # type: ignore[call-arg, unused-ignore]
    # the docstring is NiftiMapsMasker's with n_jobs before clean_args (see _multi_docstring)
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
        verbose: int = 0,
        reports: bool = True,
        cmap: str = "CMRmap_r",
        n_jobs: int | None = 1,
        clean_args: dict[str, Any] | None = None,
        region_names: Sequence[str] | None = None,
        min_coverage: float | None = None,
    ) -> None:
        super().__init__(
            maps_img=maps_img,
            mask_img=mask_img,
            allow_overlap=allow_overlap,
            smoothing_fwhm=smoothing_fwhm,
            standardize=standardize,
            standardize_confounds=standardize_confounds,
            high_variance_confounds=high_variance_confounds,
            detrend=detrend,
            low_pass=low_pass,
            high_pass=high_pass,
            t_r=t_r,
            dtype=dtype,
            resampling_target=resampling_target,
            keep_masked_maps=keep_masked_maps,
            memory=memory,
            memory_level=memory_level,
            verbose=verbose,
            reports=reports,
            cmap=cmap,
            clean_args=clean_args,
            region_names=region_names,
            min_coverage=min_coverage,
        )
        self.n_jobs = n_jobs

    __doc__ = _multi_docstring(NiftiMapsMasker.__doc__)
    _high_variance_last = True

    def fit_transform(
        self,
        imgs: Any,
        y: Any = None,
        confounds: list | None = None,
        sample_mask: list | None = None,
        **fit_params: Any,
    ) -> np.ndarray | pd.DataFrame | xr.DataArray | list[np.ndarray] | list[xr.DataArray]:
        """Fit on ``imgs`` (the first image gives the grid), then transform them."""
        return self.fit(imgs, y=y, **fit_params).transform(
            imgs, confounds=confounds, sample_mask=sample_mask
        )

    def fit(self, imgs: Any = None, y: Any = None) -> MultiNiftiMapsMasker:
        """Fit the maps; for a list of images the first one gives the reference grid."""
        several = imgs is not None and not _is_single(imgs)
        if several:
            imgs = imgs[0] if len(imgs) else None
        super().fit(imgs, y=y)
        if several and self._has_report_data() and self._reporting_data["dim"] == 4:
            # nilearn's report of a list of 4D images: the first subject's first volume, a warning
            reporting: dict[str, Any] = self._reporting_data  # maps, mask, dim, images
            reporting["dim"] = 5
            reporting["images"] = reporting["images"].first()
        return self

    def transform(
        self, imgs: Any, confounds: list | None = None, sample_mask: list | None = None
    ) -> np.ndarray | pd.DataFrame | xr.DataArray | list[np.ndarray] | list[xr.DataArray]:
        """Signals of one image (an array) or of a list of images (a list of arrays)."""
        check_is_fitted(self)
        for name, value in (("confounds", confounds), ("sample_mask", sample_mask)):
            if not (value is None or isinstance(value, list)):
                raise TypeError(
                    f"'{name}' must be a None or a list. Got {value.__class__.__name__}."
                )
        if _is_single(imgs):
            return super().transform(
                imgs,
                confounds=None if confounds is None else confounds[0],
                sample_mask=None if sample_mask is None else sample_mask[0],
            )
        return self.transform_imgs(imgs, confounds, n_jobs=self.n_jobs, sample_mask=sample_mask)

    @reemits_warnings
    def transform_imgs(
        self,
        imgs_list: Sequence[Any],
        confounds: Sequence[Any] | None = None,
        n_jobs: int | None = 1,
        sample_mask: Sequence[Any] | None = None,
    ) -> list[np.ndarray] | list[xr.DataArray]:
        """Signals of each image of a list, computed in one Dask computation (with
        ``set_output(transform="xarray")``, one lazy ``DataArray`` per image, computed by none)."""
        from daskmasker.masker.confounds import confounds_list
        from daskmasker.runtime.scheduling import compute_images

        check_is_fitted(self)
        n = len(imgs_list)
        for label, values in (("confounds", confounds), ("sample_mask", sample_mask)):
            if values is not None and len(values) != n:
                raise ValueError(
                    f"number of {label} ({len(values)}) unequal to number of images ({n})."
                )

        def lazy(i: int) -> xr.DataArray:
            conf = confounds_list(
                _confounds_list(None if confounds is None else confounds[i]),
                self.high_variance_confounds,
                last=True,
            )
            sm = None if sample_mask is None else sample_mask[i]
            return self._lazy_signals(imgs_list[i], confounds=conf, sample_mask=sm)

        if getattr(self, "_output", "default") == "xarray":  # as transform's: lazy, labelled
            return [lazy(i) for i in range(n)]
        lazies = []

        def graphs() -> Iterator[da.Array]:
            """On a cluster each image's graph is built when a worker is free for it."""
            for i in range(n):
                lazies.append(lazy(i))
                yield lazies[-1].data

        workers = None if n_jobs in (None, -1) else max(1, int(n_jobs))
        values = compute_images(graphs(), num_workers=workers)
        return [
            v.squeeze() if lazy.attrs["is_3d"] else v
            for v, lazy in zip(values, lazies, strict=True)
        ]
