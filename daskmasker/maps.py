"""The maps and the mask at fit time: loading, cleaning, binarising, resampling, checking.

Arrays here are in daskmasker order: maps ``(K, z, y, x)``, masks ``(z, y, x)``.  Maps are small
enough to hold in memory (nilearn holds them too); the data never is.
"""

from __future__ import annotations

import warnings

import dask.array as da
import nibabel as nib
import numpy as np
import xarray as xr

from daskmasker import grid
from daskmasker.image import MAP_DIM, SPATIAL_DIMS, image_affine, make_image

NONFINITE_WARNING = "Non-finite values detected. These values will be replaced with zeros."


def load_maps(maps_image: xr.DataArray, onto=None) -> np.ndarray:
    """Maps as a finite float array ``(K, z, y, x)`` (nilearn's ``clean_img(ensure_finite=True)``).

    Integer maps become float32 (int64 becomes float64); NaN and Inf become 0 silently.

    Parameters
    ----------
    maps_image : xarray.DataArray
        The (lazy) maps image.
    onto : ``(shape_zyx, affine)``, optional
        Resample the maps onto this grid (linear interpolation) while loading them.

    Notes
    -----
    The maps stream chunk by chunk (a few maps at a time) into one preallocated array of the
    target grid: the source maps are never held whole, and no chunk is copied twice.  On this
    kind of machine a fresh page of memory costs about as much as decompressing it, so for a
    64-map DiFuMo atlas this halves the fit.
    """
    img = maps_image if maps_image.ndim == 4 else maps_image.expand_dims(MAP_DIM)
    data = img.data
    if not hasattr(data, "compute"):
        data = da.from_array(np.asarray(data), chunks=(1, -1, -1, -1))
    dtype = _float_dtype(data.dtype)
    # cleaned before resampling, as nilearn does (a NaN must not spread through interpolation)
    img = img.copy(data=data.map_blocks(_finite, dtype=dtype, meta=np.empty((0,) * 4, dtype)))
    if onto is not None and not same_fov(onto, image_fov(img)):
        from daskmasker import resample

        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message="Resampling binary images with continuous or linear interpolation",
                category=UserWarning,
            )
            img = resample.resample_image(img, onto[1], tuple(onto[0][::-1]), "linear")
    out = np.empty(img.shape, dtype=img.dtype)
    # computed here, in this process, whatever the active scheduler: the maps stay local
    da.store(img.data, out, lock=False, scheduler="threads")
    return out


def _float_dtype(dtype: np.dtype) -> np.dtype:
    """Integer maps become float32 (int64 becomes float64); floats stay as they are."""
    if dtype.kind in "iub":
        return np.dtype(np.float64 if dtype.itemsize == 8 else np.float32)
    return np.dtype(dtype)


def _finite(block: np.ndarray) -> np.ndarray:
    if block.dtype.kind in "iub":
        return block.astype(_float_dtype(block.dtype))
    if block.dtype.kind == "f" and not np.isfinite(np.add.reduce(block, axis=None)):
        block = np.where(np.isfinite(block), block, 0).astype(block.dtype)
    return block


def binarize_mask(mask_image: xr.DataArray) -> np.ndarray:
    """nilearn's mask binarisation: finite, ``astype(bool)``, ``all`` over volumes; then checked."""
    data = np.asarray(mask_image.data)
    if data.ndim == 3:
        data = data[None]
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        warnings.warn(NONFINITE_WARNING, UserWarning, stacklevel=3)
        data = np.where(np.isfinite(data), data, 0)
    mask = data.astype(bool).all(axis=0)
    check_mask(mask)
    return mask


def check_mask(mask: np.ndarray) -> None:
    """Raise nilearn's error for an empty mask."""
    if not mask.any():
        raise ValueError("The mask is invalid as it is empty: it masks all data.")


def _as_maps_image(maps: np.ndarray, affine: np.ndarray) -> xr.DataArray:
    chunks = (max(1, min(len(maps), 16)), -1, -1, -1)
    img = make_image(da.from_array(maps, chunks=chunks, name=False), affine)
    return img.rename({img.dims[0]: MAP_DIM})


def resample_maps(
    maps: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], target_affine: np.ndarray
) -> np.ndarray:
    """Maps resampled with linear interpolation onto a grid (``shape`` in z, y, x order)."""
    return load_maps(_as_maps_image(maps, affine), onto=(tuple(shape), target_affine))


def resample_mask(
    mask: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], target_affine: np.ndarray
) -> np.ndarray:
    """A boolean mask resampled with nearest-neighbour interpolation, then checked."""
    from daskmasker import resample

    img = make_image(da.from_array(mask.astype(np.int8)), affine)
    out = resample.resample_image(img, target_affine, tuple(shape[::-1]), "nearest")
    resampled = np.asarray(out.data.compute()).astype(bool)
    check_mask(resampled)
    return resampled


def check_overlap(maps: np.ndarray) -> None:
    """nilearn's ``allow_overlap=False`` test, on a clipped copy (the maps are not modified)."""
    count = np.zeros(maps.shape[1:], dtype=np.int32)
    eps = np.finfo(maps.dtype).eps
    for m in maps:
        count += m >= eps
    if np.any(count > 1):
        raise ValueError(
            "Overlap detected in the maps. The overlap may be due to the atlas itself or "
            "possibly introduced by resampling."
        )


def same_fov(fov_a, fov_b) -> bool:
    """nilearn's field-of-view test on ``(shape, affine)`` pairs."""
    return grid.same_fov(fov_a[0], fov_a[1], fov_b[0], fov_b[1])


def check_same_fov(fovs: dict) -> None:
    """Raise nilearn's error listing every pair of ``{name: (shape, affine)}`` that differs."""
    names = list(fovs)
    errors = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if tuple(fovs[a][0]) != tuple(fovs[b][0]):
                errors.append(f"- {a} and {b} do not have the same shape")
            if not np.allclose(fovs[a][1], fovs[b][1]):
                errors.append(f"- {a} and {b} do not have the same affine")
    if errors:
        raise ValueError("Following field of view errors were detected:\n" + "\n".join(errors))


def to_nifti(array: np.ndarray, affine: np.ndarray, header=None) -> nib.Nifti1Image:
    """A nibabel image (x, y, z[, k] order) of a daskmasker-ordered array, keeping the header."""
    img = nib.Nifti1Image(np.asarray(array).T, np.asarray(affine, dtype=np.float64), header=header)
    return img


def image_fov(img: xr.DataArray) -> tuple[tuple[int, int, int], np.ndarray]:
    """``(shape_zyx, affine)`` of an image, from metadata only."""
    return tuple(int(img.sizes[d]) for d in SPATIAL_DIMS), image_affine(img)  # type: ignore[return-value]


class FitCache:
    """A small process-wide cache of fitted maps, keyed by the inputs' identity and the grid.

    A second masker fitting the same maps and mask for the same grid (the many-subjects case) reuses
    the loaded, resampled maps and their prepared Gram solvers instead of reading them again.
    Files are identified by path, size and modification time; in-memory objects by their id (the
    cache keeps a reference, so the id cannot be reused while cached).
    """

    def __init__(self, size: int = 2):
        self.size = size
        self._entries: dict = {}

    @staticmethod
    def identity(obj) -> tuple:
        import os

        if obj is None:
            return (None,)
        if isinstance(obj, str | os.PathLike) and "://" not in str(obj):
            path = os.path.abspath(os.path.expanduser(str(obj)))
            try:
                st = os.stat(path)
            except OSError:
                return ("path", path)
            return ("file", path, st.st_size, st.st_mtime_ns)
        if isinstance(obj, str):
            return ("url", obj)
        return ("object", id(obj))

    def get(self, key):
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._entries[key] = entry
            return entry[1]
        return None

    def put(self, key, objects, value) -> None:
        self._entries[key] = (objects, value)
        while len(self._entries) > self.size:
            self._entries.pop(next(iter(self._entries)))


FIT_CACHE = FitCache()
