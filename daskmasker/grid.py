"""Grid geometry: fields of view, whole-voxel grid maps, smoothing widths.  Pure numpy."""

from __future__ import annotations

import numpy as np


def same_fov(shape_a, affine_a, shape_b, affine_b) -> bool:
    """nilearn's test: equal spatial shapes and ``np.allclose`` affines."""
    return tuple(shape_a)[:3] == tuple(shape_b)[:3] and bool(np.allclose(affine_a, affine_b))


def integer_grid_map(src_shape, src_affine, tgt_shape, tgt_affine, atol: float = 1e-6):
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


def apply_integer_grid_map(volume: np.ndarray, plan, tgt_shape) -> np.ndarray:
    """Copy a source volume (x, y, z order) onto the target grid of an integer grid map."""
    perm, signs, shifts = plan
    src = np.transpose(volume, perm)
    out = np.zeros(tuple(tgt_shape), dtype=volume.dtype)
    dst_slices, src_slices = [], []
    for a in range(3):
        n_src = src.shape[a]
        idx = signs[a] * np.arange(tgt_shape[a]) + shifts[a]
        valid = np.flatnonzero((idx >= 0) & (idx < n_src))
        if valid.size == 0:
            return out
        lo, hi = valid[0], valid[-1] + 1
        dst_slices.append(slice(lo, hi))
        first, last = idx[lo], idx[hi - 1]
        step = signs[a]
        stop = last + step
        src_slices.append(slice(first, None if stop < 0 else stop, step))
    out[tuple(dst_slices)] = src[tuple(src_slices)]
    return out


def fwhm_to_sigma(fwhm: float, affine: np.ndarray) -> np.ndarray:
    """Per-axis Gaussian sigma in voxels for a FWHM in mm (nilearn's ``_fwhm2sigma`` per axis)."""
    vox = np.sqrt(np.sum(np.asarray(affine, float)[:3, :3] ** 2, axis=0))
    return np.asarray(fwhm, float) / (np.sqrt(8 * np.log(2)) * vox)
