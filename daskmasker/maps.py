"""The maps and the mask at fit time: loading, cleaning, binarising, resampling, checking.

Arrays here are in daskmasker order: maps ``(K, z, y, x)``, masks ``(z, y, x)``.  Maps are small
enough to hold in memory (nilearn holds them too); the data never is.
"""

from __future__ import annotations

import warnings

import dask
import dask.array as da
import nibabel as nib
import numpy as np
import xarray as xr

from daskmasker import grid
from daskmasker.image import MAP_DIM, SPATIAL_DIMS, image_affine, make_image

NONFINITE_WARNING = "Non-finite values detected. These values will be replaced with zeros."


def load_maps(maps_image: xr.DataArray) -> np.ndarray:
    """Maps as a finite float array ``(K, z, y, x)`` (nilearn's ``clean_img(ensure_finite=True)``).

    Integer maps become float32 (int64 becomes float64); NaN and Inf become 0 silently.
    """
    data = maps_image.data if maps_image.ndim == 4 else maps_image.data[None]
    if hasattr(data, "compute"):
        # read here, in this process, whatever the active scheduler: the maps stay local
        (maps,) = dask.compute(data, scheduler="threads")
    else:
        maps = np.array(data, copy=True)
    if maps.dtype.kind in "iub":
        return maps.astype(np.float64 if maps.dtype.itemsize == 8 else np.float32)
    if not np.isfinite(maps).all():
        maps = np.where(np.isfinite(maps), maps, 0).astype(maps.dtype)
    return maps


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
    from daskmasker import resample

    plan = grid.integer_grid_map(maps.shape[:0:-1], affine, tuple(shape[::-1]), target_affine)
    if plan is not None:  # whole-voxel grids: copy voxels into one new array
        return grid.apply_integer_grid_map_reversed(maps, plan, tuple(shape[::-1]))
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="Resampling binary images with continuous or linear interpolation",
            category=UserWarning,
        )
        out = resample.resample_image(
            _as_maps_image(maps, affine), target_affine, tuple(shape[::-1]), "linear"
        )
        return np.asarray(out.data.compute())


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
