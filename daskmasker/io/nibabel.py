"""nibabel images (in memory or proxies of files) as lazy daskmasker images, never copied."""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import nibabel as nib
import numpy as np
import xarray as xr
from numpy.typing import DTypeLike

from daskmasker.compute.plan import plan_extraction
from daskmasker.io.image import DimensionError, make_image


def from_nibabel(
    img: nib.spatialimages.SpatialImage, chunks: int | tuple[int, ...] | None = None
) -> xr.DataArray:
    """A lazy image reading ``img``'s data by chunks of whole volumes (nothing is read now)."""
    proxy = img.dataobj
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (3, 4):
        raise DimensionError(len(shape), 4)
    if 0 in shape:
        raise ValueError("The image is empty.")
    dtype = _nibabel_dtype(img)
    if len(shape) == 3:
        data = da.from_array(_Reversed(proxy, shape, dtype), chunks=-1, asarray=False)
    else:
        volume = int(np.prod(shape[:3])) * dtype.itemsize
        sizes = plan_extraction(shape[3], volume).time_chunks if chunks is None else chunks
        data = da.from_array(
            _Reversed(proxy, shape, dtype), chunks=(sizes, -1, -1, -1), asarray=False
        )
    header = img.header if isinstance(img.header, nib.Nifti1Header) else None
    attrs = {} if header is not None else {"t_r": None}
    return make_image(data, img.affine, header=header, attrs=attrs)


def _nibabel_dtype(img: nib.spatialimages.SpatialImage) -> np.dtype:
    proxy = img.dataobj
    if isinstance(proxy, np.ndarray):
        return proxy.dtype
    from nibabel.volumeutils import apply_read_scaling

    slope = getattr(proxy, "slope", 1.0)
    inter = getattr(proxy, "inter", 0.0)
    # nibabel's ArrayLike protocol leaves out the dtype that its proxies and arrays have
    raw = np.dtype(proxy.dtype)  # type: ignore[attr-defined]
    if slope == 1.0 and inter == 0.0:
        return raw
    return apply_read_scaling(np.zeros(1, dtype=raw), slope, inter).dtype


class _Reversed:
    """A nibabel array proxy seen in daskmasker order (reversed axes), read lazily by slices."""

    def __init__(
        self, proxy: nib.arrayproxy.ArrayLike, shape: Sequence[int], dtype: DTypeLike
    ) -> None:
        self.proxy = proxy
        self.shape = tuple(reversed(shape))
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)

    def __getitem__(self, key: int | slice | tuple[int | slice, ...]) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        nib_key = tuple(reversed(key))
        if len(self.proxy.shape) > self.ndim:
            nib_key = nib_key + (0,) * (len(self.proxy.shape) - self.ndim)
        arr = np.asanyarray(self.proxy[nib_key])
        return np.array(arr.T, dtype=self.dtype, copy=True)
