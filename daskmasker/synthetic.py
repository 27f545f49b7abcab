"""Realistic synthetic inputs, generated deterministically from a seed (nothing is downloaded).

* :func:`make_maps`: DiFuMo-like probabilistic maps: K overlapping, smooth, non-negative maps built
  from a few Gaussian blobs each, inside the brain, on the DiFuMo 2 mm grid by default;
* :func:`make_brain_mask`: an MNI-sized brain ellipsoid defined in millimetres, so it lands in the
  same place on any grid (the FSL MNI 2 mm grid by default);
* :func:`make_fmri` / :func:`write_fmri`: 4D runs on another grid (nilearn's MNI 2 mm grid) whose
  voxels carry baseline intensity + known latent network signals mixed through the maps + slow
  drift + motion-like confounds + noise; ``write_fmri`` streams the file volume chunk by volume
  chunk (memory holds a chunk of volumes, whatever the run's length) and gives the same numbers as
  ``make_fmri``;
* :func:`make_bids_dataset`: a BIDS-like tree of such runs with fMRIPrep-style confounds files.

An fMRIPrep derivatives tree (fMRIPrep's names, sidecars, confounds and brain masks) is made by
:mod:`daskmasker.synthetic_fmriprep` from these.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from isal import igzip
from numpy.typing import ArrayLike, DTypeLike
from scipy import ndimage
from scipy import signal as sp_signal

Progress = Callable[[int, int], object]
"""``on_progress(done, total)``."""

DIFUMO_SHAPE = (104, 123, 104)
DIFUMO_AFFINE = np.array([[2.0, 0, 0, -96], [0, 2, 0, -132], [0, 0, 2, -78], [0, 0, 0, 1]])
MNI_FSL_SHAPE = (91, 109, 91)
MNI_FSL_AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
MNI_NILEARN_SHAPE = (99, 117, 95)
MNI_NILEARN_AFFINE = np.array([[2.0, 0, 0, -98], [0, 2, 0, -134], [0, 0, 2, -72], [0, 0, 0, 1]])
BRAIN_CENTRE = np.array([0.0, -17.0, 12.0])
BRAIN_RADII = np.array([68.0, 86.0, 64.0])
BACKGROUNDS = ("masked", "noise")
CONFOUND_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


def world_coordinates(shape: Sequence[int], affine: ArrayLike) -> np.ndarray:
    """The world (mm) coordinates of every voxel centre of a grid, shape ``(*shape, 3)``."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    return (ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]).astype(np.float32)


def brain_inside(xyz: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Whether mm coordinates fall inside the brain ellipsoid (scaled by ``scale``)."""
    return (((xyz - BRAIN_CENTRE) / (BRAIN_RADII * scale)) ** 2).sum(-1) < 1.0


def _axis_coordinates(shape: Sequence[int], affine: ArrayLike) -> list[np.ndarray] | None:
    """The mm coordinate of each index along each axis when the affine does not rotate (each
    world axis depends on one voxel axis), else None."""
    affine = np.asarray(affine, float)
    if np.count_nonzero(affine[:3, :3] - np.diag(np.diag(affine[:3, :3]))):
        return None
    return [
        (np.arange(n) * affine[a, a] + affine[a, 3]).astype(np.float32) for a, n in enumerate(shape)
    ]


def _gaussian(
    xyz: np.ndarray, axes: list[np.ndarray] | None, centre: np.ndarray, width: float
) -> np.ndarray:
    """``exp(-|x - centre|² / 2 width²)`` on the grid; on an unrotated grid as the outer product
    of three 1D Gaussians (the same values to float32 rounding, without the 3D exponential)."""
    if axes is None:
        d2 = ((xyz - centre) ** 2).sum(-1)
        return np.exp(-d2 / (2 * width**2))
    gx, gy, gz = (
        np.exp(-((c - m) ** 2) / (2 * width**2)) for c, m in zip(axes, centre, strict=True)
    )
    return (gx[:, None, None] * gy[None, :, None]) * gz[None, None, :]


def make_brain_mask(
    shape: tuple[int, int, int] = MNI_FSL_SHAPE, affine: ArrayLike = MNI_FSL_AFFINE
) -> nib.Nifti1Image:
    """A brain mask (uint8, 0/1) of MNI size and position on any grid."""
    mask = brain_inside(world_coordinates(shape, affine)).astype(np.uint8)
    img = nib.Nifti1Image(mask, np.asarray(affine, float))
    img.header.set_xyzt_units("mm")
    return img


def make_maps(
    n_maps: int = 64,
    shape: tuple[int, int, int] = DIFUMO_SHAPE,
    affine: ArrayLike = DIFUMO_AFFINE,
    seed: int = 0,
    dtype: DTypeLike = np.float32,
    on_progress: Progress | None = None,
) -> nib.Nifti1Image:
    """DiFuMo-like maps: smooth, overlapping, non-negative, mostly zero, full rank.

    ``on_progress(done, n_maps)``, if given, is called after each map.

    Examples
    --------
    >>> maps = make_maps(n_maps=8, shape=(30, 36, 30), affine=np.diag([6.0, 6, 6, 1]))
    >>> maps.shape
    (30, 36, 30, 8)
    """
    rng = np.random.default_rng(seed)
    xyz = world_coordinates(shape, affine)
    inside = brain_inside(xyz)
    axes = _axis_coordinates(shape, affine)
    # one map after the other into contiguous memory, the maps' axis slowest: the (x, y, z, K)
    # view is Fortran-ordered, NIfTI's order (writing each map across a C-ordered (x, y, z, K)
    # array, K fastest, was most of the demo's map generation)
    maps = np.zeros((n_maps, *shape[::-1]), dtype=dtype)
    out = maps.transpose(3, 2, 1, 0)
    for k in range(n_maps):
        value = np.zeros(shape, dtype=np.float32)
        for _ in range(rng.integers(1, 4)):
            centre = BRAIN_CENTRE + rng.uniform(-0.7, 0.7, 3) * BRAIN_RADII
            width = rng.uniform(8.0, 18.0)
            value += rng.uniform(0.5, 1.0) * _gaussian(xyz, axes, centre, width)
        value -= 0.15 * value.max()
        value = np.clip(value, 0, None) * inside
        peak = value.max()
        maps[k] = (value / peak * rng.uniform(0.004, 0.012) if peak > 0 else value).T
        if on_progress is not None:
            on_progress(k + 1, n_maps)
    img = nib.Nifti1Image(out, np.asarray(affine, float))
    img.header.set_xyzt_units("mm")
    return img


def save(img: nib.Nifti1Image, path: str | os.PathLike[str]) -> Path:
    """Write ``img`` to ``.nii``/``.nii.gz``; gzip by ISA-L at level 1 (nibabel's level,
    faster than zlib's), through a ``.partial`` file renamed when complete."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    if path.suffix == ".gz":
        with igzip.open(tmp, "wb", compresslevel=1) as f:
            f.write(img.to_bytes())
    else:
        tmp.write_bytes(img.to_bytes())
    tmp.replace(path)
    return path


def _maps_on_grid(
    maps_img: nib.Nifti1Image, shape: Sequence[int], affine: ArrayLike, voxels: np.ndarray
) -> np.ndarray:
    """The maps at the target grid's ``voxels`` (C-order flat indices), ``(len(voxels), K)``:
    copied when the grids share voxel centres, else linearly interpolated; zero outside."""
    maps = np.asarray(maps_img.dataobj, dtype=np.float32)
    ijk = np.stack(np.unravel_index(voxels, tuple(shape)), -1).astype(float)
    world = ijk @ np.asarray(affine, float)[:3, :3].T + np.asarray(affine, float)[:3, 3]
    src = (world - maps_img.affine[:3, 3]) @ np.linalg.inv(maps_img.affine[:3, :3]).T
    nearest = np.rint(src)
    if np.allclose(src, nearest, atol=1e-6):
        index = nearest.astype(np.intp)
        inside = np.all((index >= 0) & (index < np.array(maps.shape[:3])), axis=1)
        out = np.zeros((len(voxels), maps.shape[3]), dtype=np.float32)
        out[inside] = maps[tuple(index[inside].T)]
        return out
    return np.stack(
        [ndimage.map_coordinates(maps[..., k], src.T, order=1) for k in range(maps.shape[3])], -1
    )


_BLOCK = 16


class _Generator:
    """The signal model, evaluated slab by slab (deterministic per volume).

    Only the voxels that are not zeroed (``active``) are computed: with ``background="masked"``
    a fifth of the grid, so a volume costs a fifth of its noise draws and products.
    """

    def __init__(
        self,
        maps_img: nib.Nifti1Image,
        n_volumes: int,
        shape: tuple[int, int, int],
        affine: ArrayLike,
        t_r: float,
        seed: int,
        noise: float,
        amplitude: float,
        background: str,
    ) -> None:
        if background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
        self.shape, self.t_r, self.seed, self.noise = tuple(shape), t_r, seed, noise
        rng = np.random.default_rng(seed)
        xyz = world_coordinates(shape, affine)
        inside = brain_inside(xyz)
        n_voxels = int(np.prod(shape))
        # HCP-style preprocessed runs are brain-masked (exact zeros outside a slightly dilated
        # brain); fMRIPrep-style runs keep the noisy background of the whole field of view.
        active = (
            brain_inside(xyz, scale=1.08).reshape(-1)
            if background == "masked"
            else np.ones(n_voxels, dtype=bool)
        )
        # the active voxels' positions in nibabel's on-disk order (x fastest), where they go
        self.to_disk = np.flatnonzero(active.reshape(shape).transpose(2, 1, 0).reshape(-1))
        # C-order (x, y, z) flat indices of the same voxels, in the same (disk) order
        c_index = np.arange(n_voxels).reshape(shape).transpose(2, 1, 0).reshape(-1)[self.to_disk]
        maps = _maps_on_grid(maps_img, shape, affine, c_index)
        self.support = np.flatnonzero(maps.any(axis=1))
        self.maps = np.ascontiguousarray(maps[self.support] * np.float32(amplitude))
        k = maps.shape[-1]
        sos = sp_signal.butter(
            3, [0.01, min(0.1, 0.45 / t_r)], btype="band", fs=1.0 / t_r, output="sos"
        )
        white = rng.standard_normal((n_volumes + 200, k))
        mixing = np.eye(k) + 0.3 * rng.standard_normal((k, k)) / np.sqrt(k)
        latent = sp_signal.sosfiltfilt(sos, white @ mixing, axis=0)[100 : 100 + n_volumes]
        self.latent = latent / latent.std(axis=0)
        motion = np.cumsum(rng.standard_normal((n_volumes, 6)) * 0.02, axis=0)
        self.confounds = pd.DataFrame(motion, columns=list(CONFOUND_COLUMNS))
        patterns = rng.standard_normal((6, n_voxels)).astype(np.float32) * np.float32(2.0)
        self.motion_patterns = np.ascontiguousarray(patterns[:, c_index])
        radial = 1.0 - (((xyz - BRAIN_CENTRE) / BRAIN_RADII) ** 2).sum(-1)
        baseline = np.where(inside, 800 + 400 * np.clip(radial, 0, 1), 20.0)
        self.baseline = baseline.astype(np.float32).reshape(-1)[c_index]
        t = np.arange(n_volumes) / max(n_volumes - 1, 1)
        self.drift = 1 + 0.01 * t + 0.005 * np.cos(np.pi * t)

    def volumes(self, start: int, stop: int) -> np.ndarray:
        """Volumes ``start:stop`` as (t, x*y*z) float32, in nibabel's voxel order (x fastest)."""
        # float32 matrix products over blocks of _BLOCK volumes aligned on the run (a volume's
        # numbers never depend on how the run is cut into slabs: make_fmri == write_fmri);
        # per-volume float64 products of the maps took ~0.2 s a volume
        first = start - start % _BLOCK
        blocks = []
        for lo in range(first, stop, _BLOCK):
            hi = min(lo + _BLOCK, len(self.drift))
            block = self.baseline[None, :] * self.drift[lo:hi, None].astype(np.float32)
            block += self.confounds.to_numpy()[lo:hi].astype(np.float32) @ self.motion_patterns
            block[:, self.support] += self.latent[lo:hi].astype(np.float32) @ self.maps.T
            blocks.append(block)
        values = np.concatenate(blocks)[start - first : stop - first]
        for i, t in enumerate(range(start, stop)):
            rng = np.random.default_rng((self.seed, t))
            values[i] += rng.standard_normal(values.shape[1], dtype=np.float32) * self.noise
        if values.shape[1] == int(np.prod(self.shape)):
            return values
        out = np.zeros((stop - start, int(np.prod(self.shape))), dtype=np.float32)
        out[:, self.to_disk] = values
        return out


def make_fmri(
    maps_img: nib.Nifti1Image,
    n_volumes: int,
    shape: tuple[int, int, int] = MNI_NILEARN_SHAPE,
    affine: ArrayLike = MNI_NILEARN_AFFINE,
    t_r: float = 2.0,
    seed: int = 0,
    noise: float = 10.0,
    amplitude: float = 3000.0,
    background: str = "masked",
) -> tuple[nib.Nifti1Image, pd.DataFrame, np.ndarray]:
    """A synthetic run in memory: ``(img, confounds DataFrame, latent signals T × K)``.

    ``background`` is ``"masked"`` (zeros outside the brain, as HCP's preprocessed runs) or
    ``"noise"`` (the whole field of view noisy, as fMRIPrep's); see :func:`write_fmri`.
    """
    gen = _Generator(maps_img, n_volumes, shape, affine, t_r, seed, noise, amplitude, background)
    data = gen.volumes(0, n_volumes).reshape((n_volumes, *shape[::-1])).transpose(3, 2, 1, 0)
    img = nib.Nifti1Image(data, np.asarray(affine, float))
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = t_r
    return img, gen.confounds, gen.latent


def write_fmri(
    path: str | os.PathLike[str],
    maps_img: nib.Nifti1Image,
    n_volumes: int,
    shape: tuple[int, int, int] = MNI_NILEARN_SHAPE,
    affine: ArrayLike = MNI_NILEARN_AFFINE,
    t_r: float = 2.0,
    seed: int = 0,
    noise: float = 10.0,
    amplitude: float = 3000.0,
    chunk_volumes: int = 32,
    background: str = "masked",
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Write a synthetic run to ``.nii``/``.nii.gz`` slab by slab, with its confounds TSV.

    ``background="masked"`` zeroes the voxels outside a slightly dilated brain, as HCP's
    minimally preprocessed runs are (they gzip about 3.5:1); ``"noise"`` keeps a noisy background
    over the whole field of view, as fMRIPrep's unmasked outputs (float32 noise barely
    compresses, so gunzip takes about twice as long).  ``.nii.gz`` is written at compression
    level 1, nibabel's default.  ``on_progress(done, total)``, if given, is called with the
    volumes written after each slab.

    Returns
    -------
    dict
        ``{"bold": path, "confounds": tsv path, "latent": T × K array}``.
    """
    path = Path(path)
    gen = _Generator(maps_img, n_volumes, shape, affine, t_r, seed, noise, amplitude, background)
    header = nib.Nifti1Header()
    header.set_data_shape((*shape, n_volumes))
    header.set_data_dtype(np.float32)
    header.set_qform(np.asarray(affine, float), code=1)
    header.set_sform(np.asarray(affine, float), code=4)
    header.set_xyzt_units("mm", "sec")
    header["pixdim"][4] = t_r
    header.set_data_offset(352)
    tmp = path.with_name(path.name + ".partial")
    raw = open(tmp, "wb")
    stream = (
        igzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) if path.suffix == ".gz" else raw
    )
    try:
        stream.write(header.binaryblock + b"\x00" * 4)
        for start in range(0, n_volumes, chunk_volumes):
            stop = min(start + chunk_volumes, n_volumes)
            stream.write(gen.volumes(start, stop).data.cast("B"))
            if on_progress is not None:
                on_progress(stop, n_volumes)
    finally:
        if stream is not raw:
            stream.close()
        raw.close()
    tmp.replace(path)
    stem = path.name.split(".nii")[0].removesuffix("_bold")
    tsv = path.with_name(f"{stem}_desc-confounds_timeseries.tsv")
    gen.confounds.to_csv(tsv, sep="\t", index=False)
    return {"bold": path, "confounds": tsv, "latent": gen.latent}


def make_bids_dataset(
    root: str | os.PathLike[str],
    n_subjects: int = 3,
    n_volumes: int = 60,
    maps_img: nib.Nifti1Image | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> list[dict]:
    """A BIDS-like dataset: ``sub-XX/func/sub-XX_task-rest_bold.nii.gz`` and confounds TSVs."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "daskmasker synthetic", "BIDSVersion": "1.9.0"}, indent=2)
    )
    maps_img = maps_img if maps_img is not None else make_maps(seed=seed)
    records = []
    for sub in range(1, n_subjects + 1):
        func = root / f"sub-{sub:02d}" / "func"
        func.mkdir(parents=True, exist_ok=True)
        out = write_fmri(
            func / f"sub-{sub:02d}_task-rest_bold.nii.gz",
            maps_img,
            n_volumes,
            seed=seed + sub,
            **kwargs,
        )
        records.append({"subject": f"{sub:02d}", **out})
    return records
