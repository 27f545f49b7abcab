"""The image model: a NIfTI image as a lazy, labelled ``xarray.DataArray``.

A daskmasker image is an ordinary ``DataArray`` (usually backed by a Dask array):

* dims ``("time", "z", "y", "x")`` for 4D and ``("z", "y", "x")`` for 3D images; a maps image
  (an atlas of probabilistic regions) has ``("component", "z", "y", "x")``.  This is NIfTI's
  on-disk order (``x`` fastest) read as a C-ordered array, the order NIfTI-Zarr uses, so a chunk of
  whole volumes is one contiguous byte range of a ``.nii`` file.  ``x``, ``y`` and ``z`` are the
  voxel
  axes ``i``, ``j`` and ``k`` of the affine; ``img.transpose("x", "y", "z", "time")`` gives
  nibabel's
  order as a free view.
* a coordinate on every dimension: ``x``, ``y``, ``z`` in millimetres (``attrs["units"] ==
  "mm"``) when the affine is axis-aligned without axis permutation (else the voxel indices),
  ``time`` in seconds when the repetition time is known (else the volume indices),
  ``component`` the map index; each, and the image, with CF-style ``long_name``, ``units`` and
  ``description``.
* ``attrs``: ``affine`` (4x4 nested list), ``nifti_header`` (the binary NIfTI header, base64, so a
  round trip is exact), ``t_r``, ``space_units``, ``time_units``, ``qform_code``, ``sform_code``,
  ``source_dtype`` (the on-disk dtype), ``scl_slope``/``scl_inter`` (as stored; the data is already
  scaled the way nibabel scales it) and ``source`` (path or URL) where known.

Everything here is metadata: no function in this module reads voxel data.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import nibabel as nib
import numpy as np
import xarray as xr

from daskmasker.compute.grid import Grid

TIME_DIM = "time"
SPATIAL_DIMS = ("z", "y", "x")
DIMS_3D = SPATIAL_DIMS
COMPONENT_DIM = "component"
REGION_DIM = "region"
MAP_DIM = "map"
# encoding key of the chunk reader an image was opened with (Zarr chunks, .nii.gz chunks): lets
# the maps regression read and reduce each chunk in one task (see compute.projection.project)
READER_ENCODING = "chunk_reader"


def is_image(obj: Any) -> bool:
    """Whether ``obj`` is a daskmasker image (a DataArray with our dims and an affine)."""
    return (
        isinstance(obj, xr.DataArray)
        and "affine" in obj.attrs
        and tuple(obj.dims[-3:]) == SPATIAL_DIMS
        and obj.ndim in (3, 4)
    )


def image_affine(img: xr.DataArray) -> np.ndarray:
    """The 4x4 voxel-to-mm affine of an image, as a float64 array."""
    return np.asarray(img.attrs["affine"], dtype=np.float64).reshape(4, 4)


def image_grid(img: xr.DataArray) -> Grid:
    """The :class:`~daskmasker.compute.grid.Grid` of an image, from metadata only."""
    z, y, x = (int(img.sizes[d]) for d in SPATIAL_DIMS)
    return Grid((z, y, x), image_affine(img))


def as_nibabel(
    array: np.ndarray, affine: np.ndarray, header: nib.Nifti1Header | None = None
) -> nib.Nifti1Image:
    """A nibabel image (x, y, z[, k] order) of a daskmasker-ordered array, keeping the header."""
    return nib.Nifti1Image(np.asarray(array).T, np.asarray(affine, dtype=np.float64), header=header)


CF_LABELS = {
    "x": (
        "x",
        "mm",
        "world x of the voxel centres, from the affine (NIfTI's scanner or template space)",
    ),
    "y": ("y", "mm", "world y of the voxel centres, from the affine"),
    "z": ("z", "mm", "world z of the voxel centres, from the affine"),
    TIME_DIM: ("time", "s", "onset of each volume: its index times the repetition time"),
    COMPONENT_DIM: ("map index", "1", "index of each map (component) along the atlas's 4th axis"),
}
"""CF-style ``long_name``, ``units`` and ``description`` of an image's coordinates."""

_INDEX_LABELS = {
    TIME_DIM: ("volume index", "1", "index of each volume (no repetition time in the header)"),
    **{
        name: (
            f"voxel index {ijk}",
            "1",
            f"voxel index {ijk} (the affine is oblique: no axis has a single world coordinate)",
        )
        for name, ijk in (("x", "i"), ("y", "j"), ("z", "k"))
    },
}


def cf(long_name: str, units: str, description: str) -> dict[str, str]:
    """CF-style attributes: what a plain ``xr.open_zarr`` or ``print`` shows of a variable."""
    return {"long_name": long_name, "units": units, "description": description}


def image_cf(maps: bool = False) -> dict[str, str]:
    """The CF-style attributes of an image's values (NIfTI records no unit for them)."""
    what = "map weights" if maps else "image intensity"
    return cf(
        what,
        "1",
        f"{what} in the source's units (NIfTI records none); the affine and header fields are "
        "in these attributes",
    )


def spatial_coords(affine: np.ndarray, shape_xyz: tuple[int, int, int]) -> dict[str, Any]:
    """Coordinates for ``x``, ``y`` and ``z``: millimetres when the affine is axis-aligned, else
    (oblique or axis-permuting affines, where a voxel axis has no single world coordinate) the
    voxel indices, ``units`` 1."""
    affine = np.asarray(affine, dtype=np.float64)
    rot = affine[:3, :3]
    aligned = not (np.count_nonzero(rot - np.diag(np.diag(rot))) or not np.all(np.diag(rot)))
    coords = {}
    for axis, name in enumerate(("x", "y", "z")):
        if aligned:
            values = affine[axis, axis] * np.arange(shape_xyz[axis]) + affine[axis, 3]
            coords[name] = xr.Variable(name, values, attrs=cf(*CF_LABELS[name]))
        else:
            values = np.arange(shape_xyz[axis])
            coords[name] = xr.Variable(name, values, attrs=cf(*_INDEX_LABELS[name]))
    return coords


def header_attrs(header: nib.Nifti1Header) -> dict[str, Any]:
    """The user-facing header fields of a NIfTI header, JSON-serialisable, for ``attrs``."""
    space_units, time_units = header.get_xyzt_units()
    zooms = header.get_zooms()
    t_r = None
    # a TR only with a time unit: nibabel writes pixdim[4] = 1 with unknown units by default
    scale = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}.get(time_units)
    if len(zooms) > 3 and zooms[3] > 0 and scale is not None:
        t_r = float(zooms[3]) * scale
    slope, inter = header["scl_slope"], header["scl_inter"]
    return {
        "t_r": t_r,
        "space_units": space_units,
        "time_units": time_units,
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
        "source_dtype": np.dtype(header.get_data_dtype()).str,
        "scl_slope": float(slope),
        "scl_inter": float(inter),
        "nifti_header": base64.b64encode(header.binaryblock).decode("ascii"),
    }


def header_from_attrs(attrs: Mapping[str, Any]) -> nib.Nifti1Header | None:
    """Rebuild the exact NIfTI header stored in ``attrs["nifti_header"]``, or None."""
    blob = attrs.get("nifti_header")
    if not blob:
        return None
    return header_from_bytes(base64.b64decode(blob))


def header_from_bytes(raw: bytes) -> nib.Nifti1Header:
    """A NIfTI-1 or NIfTI-2 header from its bytes (either byte order; trailing bytes ignored)."""
    size = nib.Nifti2Header.sizeof_hdr
    nifti2 = size in (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big"))
    klass = nib.Nifti2Header if nifti2 else nib.Nifti1Header
    return klass(binaryblock=raw[: klass.sizeof_hdr])


def make_image(
    data: Any,
    affine: np.ndarray,
    *,
    header: nib.Nifti1Header | None = None,
    attrs: Mapping[str, Any] | None = None,
    name: str = "image",
    maps: bool = False,
) -> xr.DataArray:
    """Wrap a 3D or 4D array in daskmasker order as an image DataArray.

    Parameters
    ----------
    data : numpy or dask array
        Shape ``(z, y, x)`` or ``(time, z, y, x)``: NIfTI's ``(x, y, z[, t])`` reversed.
    affine : ndarray of shape (4, 4)
        Voxel-to-mm affine of the voxel axes ``(i, j, k) = (x, y, z)``.
    header : nibabel header, optional
        Source of ``t_r``, units, codes, dtype and scaling fields (see :func:`header_attrs`).
    attrs : mapping, optional
        Extra attributes; they win over the header's.
    name : str, default="image"
        Name of the DataArray (the variable's name in a Dataset or netCDF file).
    maps : bool, default=False
        The 4th axis holds maps (``component``), not volumes in time.

    Returns
    -------
    xarray.DataArray
    """
    if data.ndim not in (3, 4):
        raise ValueError(f"an image must be 3D or 4D, got an array of shape {tuple(data.shape)}")
    dims = (COMPONENT_DIM if maps else TIME_DIM, *SPATIAL_DIMS) if data.ndim == 4 else DIMS_3D
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"the affine must be 4x4, got shape {affine.shape}")
    shape_xyz = tuple(int(s) for s in data.shape[::-1][:3])
    all_attrs: dict[str, Any] = {}
    if header is not None:
        all_attrs.update(header_attrs(header))
    all_attrs.update(attrs or {})
    all_attrs["affine"] = affine.tolist()
    coords = spatial_coords(affine, shape_xyz)  # type: ignore[arg-type]
    t_r = all_attrs.get("t_r")
    if data.ndim == 4:  # every dimension has a coordinate: time in seconds where the TR is known
        first = dims[0]
        steps = np.arange(data.shape[0])
        if maps:
            coords[first] = xr.Variable(first, steps, attrs=cf(*CF_LABELS[first]))
        elif t_r:
            coords[first] = xr.Variable(first, steps * float(t_r), attrs=cf(*CF_LABELS[first]))
        else:
            coords[first] = xr.Variable(first, steps, attrs=cf(*_INDEX_LABELS[first]))
    all_attrs = {**image_cf(maps and data.ndim == 4), **all_attrs}
    return xr.DataArray(data, dims=dims, coords=coords, attrs=all_attrs, name=name)


def as_maps(img: xr.DataArray) -> xr.DataArray:
    """The image with its 4th axis read as maps (``component``) rather than time."""
    if img.ndim != 4 or img.dims[0] == COMPONENT_DIM:
        return img
    maps = img.drop_vars([img.dims[0]], errors="ignore").rename({img.dims[0]: COMPONENT_DIM})
    index = xr.Variable(COMPONENT_DIM, np.arange(img.shape[0]), cf(*CF_LABELS[COMPONENT_DIM]))
    return maps.assign_coords({COMPONENT_DIM: index}).assign_attrs(image_cf(maps=True))


# NIfTI-Zarr and OME-Zarr name the time and channel axes "t" and "c"
STORE_NAMES = {TIME_DIM: "t", COMPONENT_DIM: "c"}


def from_xarray(array: xr.DataArray) -> xr.DataArray:
    """An image opened by plain xarray (a NIfTI-Zarr store) or the ``nifti`` engine as a
    daskmasker image: ``t``/``c`` dims renamed ``time``/``component``, the affine as 4x4."""
    names = {v: k for k, v in STORE_NAMES.items() if v in array.dims}
    image = array.rename(names) if names else array
    if "affine" in image.attrs:
        image = image.assign_attrs(affine=image_affine(image).tolist())
    return image


def netcdf_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` as netCDF can store them: no None, the affine as 16 numbers (row by row)."""
    out = {k: v for k, v in attrs.items() if v is not None}
    if "affine" in out:
        out["affine"] = np.asarray(out["affine"], dtype=np.float64).reshape(-1).tolist()
    return out


_DOC_URL = "https://nilearn.github.io/stable/manipulating_images/input_output.html"


class DimensionError(TypeError):
    """nilearn's error for images of the wrong dimensionality (a TypeError, as there)."""

    def __init__(self, file_dimension: int, required_dimension: int, what: str = "image"):
        self.file_dimension = file_dimension
        self.required_dimension = required_dimension
        super().__init__(
            "Input data has incompatible dimensionality: Expected dimension is "
            f"{required_dimension}D and you provided a {what if what != 'image' else ''}"
            f"{file_dimension}D image. See {_DOC_URL}"
            if what == "image"
            else "Input data has incompatible dimensionality: Expected dimension is "
            f"{required_dimension}D and you provided {what} ({file_dimension}D). See {_DOC_URL}"
        )
