"""Several atlases in one pass: each image is read once, whatever the number of atlases.

:func:`extract_many` fits one :class:`~daskmasker.masker.estimator.NiftiMapsMasker` per atlas with
the same parameters, links their fitted maps (:func:`~daskmasker.masker.fitting.link_fitted`) and
computes an image's signals for every atlas in one Dask computation: the image's chunks are read,
gathered on the union of the atlases' supports and multiplied by all the maps side by side once;
each atlas is then solved and cleaned on its own, as its own masker would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import dask.array as da
import nibabel as nib
import numpy as np
import xarray as xr

from daskmasker.io import load
from daskmasker.masker.estimator import NiftiMapsMasker
from daskmasker.masker.fit_cache import FIT_CACHE
from daskmasker.masker.fitting import link_fitted, prefit_maps
from daskmasker.masker.params import check_params, check_resampling_target
from daskmasker.masker.spec import ExtractionSpec
from daskmasker.runtime.scheduling import compute_images


def _is_single(imgs: Any) -> bool:
    return isinstance(imgs, nib.spatialimages.SpatialImage | str | os.PathLike | xr.DataArray)


def fit_many(maps: Sequence, imgs: Any = None, **params: Any) -> list[NiftiMapsMasker]:
    """One fitted masker per maps image, linked so their transforms share one pass per image.

    Parameters
    ----------
    maps : list of maps images
        Anything ``maps_img`` accepts, one per atlas.
    imgs : optional
        An image giving the grid (the first of a list), as ``fit``'s.
    **params
        The other parameters of :class:`~daskmasker.masker.estimator.NiftiMapsMasker`.

    Returns
    -------
    list of NiftiMapsMasker
    """
    if isinstance(maps, str | os.PathLike) or not isinstance(maps, Sequence) or not maps:
        raise TypeError(
            f"maps must be a non-empty list of maps images (one per atlas), got {maps!r:.80}"
        )
    if "maps_img" in params:
        raise TypeError("give the atlases as maps=[...], not maps_img")
    first = imgs if imgs is None or _is_single(imgs) else imgs[0]
    maskers = [NiftiMapsMasker(maps_img=m, **params) for m in maps]
    fit_together(maskers, first)
    for masker, spec in zip(maskers, link_specs(maskers), strict=True):
        masker._fitted = spec.fitted
    return maskers


def fit_together(maskers: Sequence[NiftiMapsMasker], img: Any = None) -> None:
    """Fit, on ``img``, those of the maskers not fitted yet, their atlases' maps loaded at once.

    When they share the mask, resampling target and ``keep_masked_maps`` (several atlases with
    the same parameters), their maps are fitted in parallel threads first
    (:func:`~daskmasker.masker.fitting.prefit_maps`); each masker's own ``fit`` then finds them
    cached and raises or warns as it would alone.
    """
    todo = [m for m in maskers if not hasattr(m, "n_elements_")]
    if not todo:
        return
    with FIT_CACHE.holding(len(todo)):
        if all(_same_spatial_params(todo[0], m) for m in todo[1:]):
            _prefit(todo[0], [m.maps_img for m in todo], img)
        for masker in todo:
            masker.fit(img)


def link_specs(maskers: Sequence[NiftiMapsMasker]) -> list[ExtractionSpec]:
    """The fitted maskers' extraction specs, linked so that one pass over an image serves them
    all (:func:`~daskmasker.masker.fitting.link_fitted`): each image's chunks are read and
    multiplied by every atlas's maps once; each atlas is still solved and cleaned alone.  The
    maskers are not changed."""
    specs = [m.extraction_spec() for m in maskers]
    if len(specs) < 2:
        return specs
    linked = link_fitted([spec.fitted for spec in specs])
    return [spec.with_fitted(f) for spec, f in zip(specs, linked, strict=True)]


def _same_spatial_params(a: NiftiMapsMasker, b: NiftiMapsMasker) -> bool:
    """Whether two maskers fit their maps alike (the same mask, target, masked-maps rule)."""
    same_mask = a.mask_img is b.mask_img or (
        isinstance(a.mask_img, str | os.PathLike) and a.mask_img == b.mask_img
    )
    return (
        same_mask
        and a.resampling_target == b.resampling_target
        and a.keep_masked_maps == b.keep_masked_maps
    )


def _prefit(masker: NiftiMapsMasker, maps: Sequence, imgs: Any) -> None:
    """The atlases' maps fitted in parallel into the fit cache, when the parameters are valid
    (else the first fit raises nilearn's error at once)."""
    try:
        check_params(masker.get_params(deep=False))
        check_resampling_target(masker.resampling_target)
        if masker.mask_img is None and masker.resampling_target == "mask":
            return
        data = None if imgs is None else load.load_image(imgs)
    except (TypeError, ValueError, OSError):
        return  # the first masker's fit raises it
    prefit_maps(
        list(maps), masker.mask_img, masker.resampling_target, masker.keep_masked_maps, data
    )


def extract_many(
    imgs: Any, maps: Sequence, confounds: Any = None, sample_mask: Any = None, **params: Any
) -> list:
    """Region signals of one or several images for several atlases, each image read once.

    Parameters
    ----------
    imgs : a 3D/4D image (anything ``transform`` accepts) or a list of them
    maps : list of maps images
        One per atlas; the outputs follow this order.
    confounds, sample_mask : optional
        As ``NiftiMapsMasker.transform``'s for one image; for a list of images, a list with one
        entry per image (as ``MultiNiftiMapsMasker``).
    **params
        The other parameters of :class:`~daskmasker.masker.estimator.NiftiMapsMasker` (the same
        for every atlas).

    Returns
    -------
    list
        Per atlas, the array ``transform`` returns (one image) or the list of arrays, one per
        image (a list of images); equal to each atlas's own masker's output.
    """
    first = imgs if _is_single(imgs) else (imgs[0] if len(imgs) else None)
    return transform_many(fit_many(maps, first, **params), imgs, confounds, sample_mask)


def transform_many(
    maskers: list[NiftiMapsMasker], imgs: Any, confounds: Any = None, sample_mask: Any = None
) -> list:
    """:func:`extract_many` with maskers from :func:`fit_many`."""
    single = _is_single(imgs)
    images = [imgs] if single else list(imgs)
    per_image = {"confounds": confounds, "sample_mask": sample_mask}
    for label, values in per_image.items():
        if single:
            per_image[label] = [values]
        elif values is None:
            per_image[label] = [None] * len(images)
        elif len(values) != len(images):
            raise ValueError(
                f"number of {label} ({len(values)}) unequal to number of images ({len(images)})."
            )
    specs = [m.extraction_spec() for m in maskers]
    lazies: list[list[xr.DataArray]] = []

    def graphs() -> Iterator[
        da.Array
    ]:  # one array per image: on a cluster an image's tasks stay on one worker
        inputs = zip(images, per_image["confounds"], per_image["sample_mask"], strict=True)
        for img, conf, mask in inputs:
            outs = [spec.lazy(img, conf, mask).signals for spec in specs]
            lazies.append(outs)
            yield da.concatenate([out.data for out in outs], axis=1)

    gzip = any(str(img).endswith(".gz") for img in images if isinstance(img, str | os.PathLike))
    values = compute_images(graphs(), pin=gzip)
    results: list[list[np.ndarray]] = [[] for _ in maskers]
    for joint, outs in zip(values, lazies, strict=True):
        bounds = np.cumsum([0] + [out.shape[1] for out in outs])
        for a, out in enumerate(outs):
            part = joint[:, bounds[a] : bounds[a + 1]]
            results[a].append(part.squeeze() if out.attrs["is_3d"] else part)
    return [r[0] for r in results] if single else results
