"""The metadata of daskmasker's image stores: NIfTI-Zarr 1.0 (rc) on OME-Zarr 0.5 (Zarr v3).

Layout (one resolution level; names follow the reference implementation, ``nifti-zarr``)::

    run.zarr/        group attrs: "ome" (OME-Zarr 0.5 "multiscales": axes t|c, z, y, x in
                     second and millimeter, scale = TR and voxel sizes) and "daskmasker"
                     ({"complete": bool}: an interrupted conversion is never taken for a store)
      image/         the image, (t|c, z, y, x), C order, chunks of whole volumes;
                     ``dimension_names`` are the axes' names; attrs: the affine (16 numbers, row
                     by row), the header fields and the source's NIfTI header (base64), all
                     netCDF-serialisable
      nifti/         NIfTI-Zarr's header array: the NIfTI header of the stored array as bytes
                     (its dtype and shape, no scaling; the source's qform, sform and codes)
      x/ y/ z/ t/    coordinates in mm (axis-aligned affines) and seconds, ``units`` in attrs

Plain xarray opens it (``xr.open_zarr``) as a Dataset with one data variable, ``image``.
NIfTI-Zarr readers read the ``nifti`` array and the level listed in ``multiscales``; they key on
the axis names ``t`` and ``c``, which is why the stored dims are named so (daskmasker's own
readers name them ``time`` and ``component``).  Nothing here reads or writes voxel data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
import xarray as xr

from daskmasker.io.image import (
    CF_LABELS,
    COMPONENT_DIM,
    STORE_NAMES,
    TIME_DIM,
    cf,
    header_from_attrs,
    header_from_bytes,
    image_affine,
    image_cf,
    netcdf_attrs,
)

IMAGE = "image"
HEADER = "nifti"
HEADER_DIM = "nifti_byte"
OME_VERSION = "0.5"
_UNITS = {"space": "millimeter", "time": "second"}
# the image attrs a store keeps (with the affine and the source's header, "nifti_header")
HEADER_KEYS = (
    "t_r",
    "space_units",
    "time_units",
    "qform_code",
    "sform_code",
    "source_dtype",
    "scl_slope",
    "scl_inter",
    "source",
)


def store_dims(img: xr.DataArray) -> list[str]:
    """The stored names of an image's dims (``t`` for time, ``c`` for maps)."""
    return [STORE_NAMES.get(str(d), str(d)) for d in img.dims]


def ome_attrs(img: xr.DataArray) -> dict[str, Any]:
    """The group's ``ome`` attribute: OME-Zarr 0.5 multiscales with one level, :data:`IMAGE`."""
    affine = image_affine(img)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    axes = [{"name": d, "type": "space", "unit": _UNITS["space"]} for d in ("z", "y", "x")]
    scale = [float(zooms[2]), float(zooms[1]), float(zooms[0])]
    if img.ndim == 4 and img.dims[0] == COMPONENT_DIM:
        axes.insert(0, {"name": STORE_NAMES[COMPONENT_DIM], "type": "channel"})
        scale.insert(0, 1.0)
    elif img.ndim == 4:
        axes.insert(0, {"name": STORE_NAMES[TIME_DIM], "type": "time", "unit": _UNITS["time"]})
        scale.insert(0, float(img.attrs.get("t_r") or 1.0))
    level = {"path": IMAGE, "coordinateTransformations": [{"type": "scale", "scale": scale}]}
    return {
        "version": OME_VERSION,
        "multiscales": [{"name": IMAGE, "axes": axes, "datasets": [level]}],
    }


_CF = {
    **{STORE_NAMES.get(k, k): v for k, v in CF_LABELS.items()},
    HEADER: (
        "NIfTI header",
        "1",
        "the source's NIfTI header, byte for byte (NIfTI-Zarr): to_nifti writes it back",
    ),
    HEADER_DIM: ("header byte", "1", "position of each byte in the NIfTI header"),
}


def cf_attrs(name: str, maps: bool = False) -> dict[str, str]:
    """CF-style ``long_name``, ``units`` and ``description`` of a stored variable, so a plain
    ``xr.open_zarr`` shows what each one is (an image's intensities have no unit in NIfTI)."""
    if name == IMAGE:
        return image_cf(maps)
    if name not in _CF:
        return {}
    return cf(*_CF[name])


def image_attrs(img: xr.DataArray) -> dict[str, Any]:
    """The image array's attrs: affine, header fields and source header, netCDF-serialisable;
    ``coordinates`` makes xarray show the ``nifti`` header array as a coordinate."""
    attrs = {k: img.attrs[k] for k in (*HEADER_KEYS, "nifti_header") if k in img.attrs}
    attrs["affine"] = image_affine(img).tolist()
    cf = cf_attrs(IMAGE, maps=COMPONENT_DIM in img.dims)
    return {**netcdf_attrs(attrs), **cf, "coordinates": HEADER}


def store_header(img: xr.DataArray) -> bytes:
    """The binary NIfTI header of the stored array (NIfTI-Zarr's ``nifti`` array).

    The source's header (``attrs["nifti_header"]``) with the stored dtype and shape and no
    scaling (the store holds the values nibabel presents); a new NIfTI-1 header with the affine
    as qform and sform (code 1) for an image without one.  Maps have NIfTI-Zarr's shape
    ``(x, y, z, 1, n)``: one time point, ``n`` channels.

    Raises
    ------
    ValueError
        For dtypes NIfTI has no code for (bool, float16).
    """
    header = header_from_attrs(img.attrs)
    if header is None:
        header = nib.Nifti1Header()
        header.set_qform(image_affine(img), code=1)
        header.set_sform(image_affine(img), code=1)
        header.set_xyzt_units("mm", "sec")
    else:
        header = header.copy()
    shape = [int(s) for s in img.shape[::-1]]
    if img.ndim == 4 and img.dims[0] == COMPONENT_DIM:
        shape = [*shape[:3], 1, shape[3]]
    try:
        header.set_data_dtype(img.dtype)
    except nib.spatialimages.HeaderDataError as exc:
        raise ValueError(
            f"an image of dtype {img.dtype} cannot be stored: NIfTI-Zarr needs a NIfTI data "
            "type (cast it first, e.g. img.astype('uint8') for a boolean mask)"
        ) from exc
    header.set_data_shape(shape)
    if img.ndim == 4 and img.dims[0] == TIME_DIM and img.attrs.get("t_r"):
        header["pixdim"][4] = float(img.attrs["t_r"]) / {"msec": 1e-3, "usec": 1e-6}.get(
            header.get_xyzt_units()[1], 1.0
        )
    header.set_slope_inter(None, None)
    return header.binaryblock


@dataclass(frozen=True)
class Layout:
    """Where an image store keeps its image: the array's path and dims, the header, the state.

    Attributes
    ----------
    path : str
        The level-0 array.
    dims : tuple of str
        The array's dims in daskmasker's names (``time``, ``component``, ``z``, ``y``, ``x``).
    header : nibabel header or None
        NIfTI-Zarr's header of the stored array (the ``nifti`` array, or a 0.1 ``nifti``
        attribute).
    meta : dict or None
        The ``daskmasker`` group attribute (None for stores written by other tools).
    """

    path: str
    dims: tuple[str, ...]
    header: nib.Nifti1Header | None
    meta: dict | None


def read_layout(group: Any, store: str) -> Layout:
    """The :class:`Layout` of an opened Zarr group (metadata only).

    Raises
    ------
    ValueError
        If the group is neither a daskmasker nor a NIfTI-Zarr image store.
    """
    attrs = dict(group.attrs)
    multiscales = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales")
    header = None
    if HEADER in group:
        header = header_from_bytes(np.asarray(group[HEADER][...], dtype=np.uint8).tobytes())
    elif isinstance(attrs.get(HEADER), dict) and "base64" in attrs[HEADER]:  # NIfTI-Zarr 0.1
        header = header_from_attrs({"nifti_header": attrs[HEADER]["base64"]})
    meta = attrs.get("daskmasker")
    if meta is None and header is None:
        raise ValueError(
            f"'{store}' is not a daskmasker or NIfTI-Zarr image store (no 'daskmasker' "
            "attribute, no 'nifti' header)"
        )
    if multiscales:
        path = multiscales[0]["datasets"][0]["path"]
        names = [axis["name"] for axis in multiscales[0]["axes"]]
    else:
        path, names = "0", None
    if path not in group:
        raise ValueError(f"'{store}' has no image array '{path}'")
    if names is None:  # no multiscales: NIfTI-Zarr's order, time before channels
        names = {3: ["z", "y", "x"], 4: ["t", "z", "y", "x"]}.get(
            group[path].ndim, ["t", "c", "z", "y", "x"]
        )
    inverse = {v: k for k, v in STORE_NAMES.items()}
    return Layout(path, tuple(inverse.get(n, n) for n in names), header, meta)
