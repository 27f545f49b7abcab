"""Grid geometry: fields of view, whole-voxel grid maps, smoothing widths.  Pure numpy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True, eq=False)
class Grid:
    """A voxel grid (a field of view): the spatial shape in daskmasker order and the affine.

    Attributes
    ----------
    shape : tuple of int
        ``(z, y, x)``: NIfTI's ``(x, y, z)`` reversed, as daskmasker arrays are laid out.
    affine : ndarray, shape (4, 4)
        Voxel ``(i, j, k)`` (NIfTI order) to millimetres.

    Examples
    --------
    >>> a = Grid((2, 3, 4), np.eye(4))
    >>> a.shape_xyz
    (4, 3, 2)
    >>> a.same_as(Grid((2, 3, 4), np.eye(4) + 1e-9))
    True
    """

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        affine = np.array(self.affine, dtype=np.float64)
        affine.setflags(write=False)
        object.__setattr__(self, "affine", affine)

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        """The shape in NIfTI order."""
        return self.shape[::-1]

    @property
    def key(self) -> tuple:
        """A hashable identity (exact shape and affine bytes), for caches."""
        return self.shape, self.affine.tobytes()

    def same_as(self, other: Grid) -> bool:
        """nilearn's field-of-view test: equal shapes and ``np.allclose`` affines."""
        return same_fov(self.shape, self.affine, other.shape, other.affine)


def same_fov(
    shape_a: Sequence[int], affine_a: ArrayLike, shape_b: Sequence[int], affine_b: ArrayLike
) -> bool:
    """nilearn's test: equal spatial shapes and ``np.allclose`` affines."""
    return tuple(shape_a)[:3] == tuple(shape_b)[:3] and bool(np.allclose(affine_a, affine_b))


def check_same_grids(grids: dict[str, Grid], sources: dict[str, str] | None = None) -> None:
    """Raise nilearn's error listing every pair of ``{name: Grid}`` that differs.

    The message starts as nilearn's; with ``sources`` (``{name: file name}``) it goes on with
    each input's file, shape (NIfTI order) and affine, and the ``resampling_target`` values
    that would resample them onto one grid.

    Examples
    --------
    >>> check_same_grids(
    ...     {"maps": Grid((2, 3, 4), np.eye(4)), "mask": Grid((2, 3, 5), np.eye(4))},
    ...     {"maps": "maps.nii.gz", "mask": "mask.nii.gz"},
    ... )
    Traceback (most recent call last):
    ...
    ValueError: Following field of view errors were detected:
    - maps and mask do not have the same shape
    maps: maps.nii.gz, shape (4, 3, 2), affine [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
    mask: mask.nii.gz, shape (5, 3, 2), affine [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
    resampling_target is None: all must be on one grid; set it to 'data', 'mask' or 'maps'.
    """
    names = list(grids)
    errors = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if grids[a].shape != grids[b].shape:
                errors.append(f"- {a} and {b} do not have the same shape")
            if not np.allclose(grids[a].affine, grids[b].affine):
                errors.append(f"- {a} and {b} do not have the same affine")
    if not errors:
        return
    lines = ["Following field of view errors were detected:", *errors]
    if sources is not None:
        for name in names:
            where = sources.get(name, "an image in memory")
            lines.append(
                f"{name}: {where}, shape {grids[name].shape_xyz}, "
                f"affine {_affine_text(grids[name].affine)}"
            )
        lines.append(
            "resampling_target is None: all must be on one grid; "
            "set it to 'data', 'mask' or 'maps'."
        )
    raise ValueError("\n".join(lines))


def _affine_text(affine: np.ndarray) -> str:
    """The affine's top three rows, compactly (``2`` rather than ``2.0``)."""
    rows = [[float(f"{v:.4g}") for v in row] for row in np.asarray(affine)[:3]]
    return str([[int(v) if v.is_integer() else v for v in row] for row in rows])


def integer_grid_map(
    src_shape: Sequence[int],
    src_affine: ArrayLike,
    tgt_shape: Sequence[int],
    tgt_affine: ArrayLike,
    atol: float = 1e-6,
) -> tuple | None:
    """Plan a resampling that only copies voxels, or None.

    When ``inv(src_affine) @ tgt_affine`` maps target voxel indices to source voxel indices by a
    signed axis permutation plus an integer shift, every target voxel is exactly one source voxel
    (or outside the source), so linear and nearest interpolation reduce to slicing.

    Returns
    -------
    tuple or None
        ``(perm, signs, shifts)``: target axis ``a`` reads source axis ``perm[a]`` at index
        ``signs[a] * i + shifts[a]``.
    """
    transform = np.linalg.inv(np.asarray(src_affine, float)) @ np.asarray(tgt_affine, float)
    matrix, offset = transform[:3, :3], transform[:3, 3]
    rounded = np.round(matrix)
    if not np.allclose(matrix, rounded, atol=atol) or not np.allclose(
        offset, np.round(offset), atol=atol
    ):
        return None
    if not np.all(np.abs(rounded).sum(axis=0) == 1) or not np.all(np.abs(rounded).sum(axis=1) == 1):
        return None
    perm = tuple(int(np.flatnonzero(rounded[:, a])[0]) for a in range(3))
    signs = tuple(int(rounded[perm[a], a]) for a in range(3))
    shifts = tuple(int(np.round(offset[perm[a]])) for a in range(3))
    return perm, signs, shifts


def grid_map_slices(
    plan: tuple, src_shape: Sequence[int], tgt_shape: Sequence[int]
) -> tuple | None:
    """Per axis (x, y, z), the target and source slices of an integer grid map, or None when the
    two grids do not overlap.  Source axes are taken in ``plan``'s permuted order."""
    perm, signs, shifts = plan
    dst_slices, src_slices = [], []
    for a in range(3):
        n_src = src_shape[perm[a]]
        idx = signs[a] * np.arange(tgt_shape[a]) + shifts[a]
        valid = np.flatnonzero((idx >= 0) & (idx < n_src))
        if valid.size == 0:
            return None
        lo, hi = valid[0], valid[-1] + 1
        dst_slices.append(slice(lo, hi))
        first, last = idx[lo], idx[hi - 1]
        stop = last + signs[a]
        src_slices.append(slice(first, None if stop < 0 else stop, signs[a]))
    return tuple(dst_slices), tuple(src_slices)


def apply_integer_grid_map(volume: np.ndarray, plan: tuple, tgt_shape: Sequence[int]) -> np.ndarray:
    """Copy a source volume (x, y, z order, optional trailing axes) onto an integer grid map's
    target grid."""
    src = np.transpose(volume, (*plan[0], *range(3, volume.ndim)))
    out = np.zeros((*tuple(tgt_shape), *volume.shape[3:]), dtype=volume.dtype)
    slices = grid_map_slices(plan, volume.shape, tgt_shape)
    if slices is not None:
        out[slices[0]] = src[slices[1]]
    return out


def apply_integer_grid_map_reversed(
    block: np.ndarray, plan: tuple, tgt_shape: Sequence[int]
) -> np.ndarray:
    """The same copy for a block in daskmasker order ``(lead, z, y, x)``; one strided copy when
    the map does not permute axes."""
    if tuple(plan[0]) != (0, 1, 2):
        moved = apply_integer_grid_map(block.transpose(3, 2, 1, 0), plan, tgt_shape)
        return np.ascontiguousarray(moved.transpose(3, 2, 1, 0))
    out = np.zeros((block.shape[0], *tuple(tgt_shape)[::-1]), dtype=block.dtype)
    slices = grid_map_slices(plan, block.shape[:0:-1], tgt_shape)
    if slices is not None:
        lead = (slice(None),)
        out[lead + slices[0][::-1]] = block[lead + slices[1][::-1]]
    return out


def fwhm_to_sigma(fwhm: ArrayLike, affine: np.ndarray) -> np.ndarray:
    """Per-axis Gaussian sigma in voxels for a FWHM in mm, one for all axes or one per axis
    (nilearn's ``_fwhm2sigma`` per axis)."""
    vox = np.sqrt(np.sum(np.asarray(affine, float)[:3, :3] ** 2, axis=0))
    return np.asarray(fwhm, float) / (np.sqrt(8 * np.log(2)) * vox)
