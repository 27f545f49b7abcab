"""Seeded inputs of the scale benchmarks, generated once into a data folder (nothing downloaded).

* :func:`write_small_maps`: K DiFuMo-1024-like maps (one or two Gaussian blobs of 4.5-7 mm, cut at
  15 % of their peak, ~700 voxels each) on the DiFuMo 2 mm grid, streamed map by map into a
  ``.nii.gz`` (a 1024-map atlas is 5.4 GB of float32 uncompressed, never held in memory);
* :func:`prepare`: that atlas for each K asked, the FSL MNI mask and a T-volume float32 run on
  nilearn's MNI grid (its signal comes from the 64-map synthetic atlas: the run's content does not
  change the cost of an extraction);
* :func:`write_3d_series`: the run's first volumes as one 3D ``.nii.gz`` per volume.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip

from daskmasker import synthetic


def write_small_maps(
    path: Path,
    n_maps: int,
    seed: int = 0,
    shape: tuple[int, ...] = synthetic.DIFUMO_SHAPE,
    affine: np.ndarray = synthetic.DIFUMO_AFFINE,
) -> float:
    """Write ``n_maps`` small maps (on the DiFuMo 2 mm grid unless told); returns their mean
    number of non-zero voxels."""
    step = np.abs(np.diag(affine)[:3])
    rng = np.random.default_rng(seed)
    xyz = synthetic._world(shape, affine)
    inside = synthetic.brain_inside(xyz)
    header = nib.Nifti1Header()
    header.set_data_shape((*shape, n_maps))
    header.set_data_dtype(np.float32)
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=4)
    header.set_xyzt_units("mm")
    header.set_data_offset(352)
    tmp = path.with_name(path.name + ".partial")
    counts = []
    with open(tmp, "wb") as raw, igzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as out:
        out.write(header.binaryblock + b"\x00" * 4)
        for _ in range(n_maps):
            value = np.zeros(shape, dtype=np.float32)
            for _ in range(rng.integers(1, 3)):
                centre = synthetic.BRAIN_CENTRE + rng.uniform(-0.7, 0.7, 3) * synthetic.BRAIN_RADII
                width = rng.uniform(4.5, 7.0)
                # the blob's box only (3 widths): the whole grid per blob would take minutes
                lo = np.maximum(
                    np.floor((centre - 3 * width - affine[:3, 3]) / step).astype(int), 0
                )
                hi = np.minimum(
                    np.ceil((centre + 3 * width - affine[:3, 3]) / step).astype(int), shape
                )
                box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
                d2 = ((xyz[box] - centre) ** 2).sum(-1)
                value[box] += rng.uniform(0.5, 1.0) * np.exp(-d2 / (2 * width**2))
            value -= 0.15 * value.max()
            value = np.clip(value, 0, None) * inside
            peak = value.max()
            if peak > 0:
                value *= rng.uniform(0.004, 0.012) / peak
            counts.append(np.count_nonzero(value))
            out.write(np.asfortranarray(value).tobytes(order="F"))
    tmp.replace(path)
    return float(np.mean(counts))


def prepare(data_dir: Path, ks: list[int], volumes: int) -> dict:
    """Generate (once) the atlases of ``ks`` maps, the mask and the run; their paths."""
    data_dir.mkdir(parents=True, exist_ok=True)
    files = {"maps": {}}
    for k in ks:
        path = data_dir / f"maps-{k}.nii.gz"
        if not path.exists():
            mean = write_small_maps(path, k, seed=k)
            print(f"wrote {path}: {k} maps, {mean:.0f} voxels each on average", flush=True)
        files["maps"][k] = str(path)
    mask = data_dir / "mask.nii.gz"
    if not mask.exists():
        synthetic.make_brain_mask().to_filename(mask)
    files["mask"] = str(mask)
    run = data_dir / f"run-{volumes}_bold.nii.gz"
    if not run.exists():
        signal_maps = synthetic.make_maps(n_maps=64, seed=0)
        synthetic.write_fmri(run, signal_maps, volumes, seed=0)
    files["run"] = str(run)
    return files


def write_3d_series(run: str, folder: Path, n_images: int) -> list[str]:
    """``n_images`` 3D ``.nii.gz`` files cycling through the volumes of ``run`` (written once;
    the run is read whole: give a short one)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"vol-{i:04d}.nii.gz" for i in range(n_images)]
    if not all(p.exists() for p in paths):
        img = nib.load(run)
        data = np.asarray(img.dataobj, dtype=np.float32)
        for i, p in enumerate(paths):
            if not p.exists():
                nib.Nifti1Image(data[..., i % data.shape[3]], img.affine).to_filename(p)
    return [str(p) for p in paths]
