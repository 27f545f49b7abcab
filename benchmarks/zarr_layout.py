"""Zarr layouts for fMRI, measured: chunk shape × codec → write time, read patterns, size.

Reads a generated run (``bench_masker.py --prepare N`` makes one) and writes it with each layout,
then times reading it as the masker does (every chunk of whole volumes) and as per-voxel time
operations do (a 16³ block of voxels across all volumes).

    python benchmarks/zarr_layout.py --volumes 200
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

CODECS = {
    "none": None,
    "blosc-lz4+shuffle": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    "zstd-1": ZstdCodec(level=1),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/daskmasker-bench"))
    args = parser.parse_args(argv)
    from daskmasker import open_nifti

    src = args.data_dir / f"sub-00_vols-{args.volumes}_bold.nii"
    data = open_nifti(src).values  # (t, z, y, x) float32, in memory once for a fair comparison
    t = data.shape[0]
    layouts = {
        "slabs of 15 volumes": (15, *data.shape[1:]),
        "spatial blocks 32³ × all volumes": (t, 32, 32, 32),
    }
    print(f"{src.name}: {data.nbytes / 1e9:.2f} GB")
    print("| chunks | codec | write | read all (slabs) | read 16³ voxels × T | size |")
    print("|---|---|---|---|---|---|")
    for chunk_name, chunks in layouts.items():
        for codec_name, codec in CODECS.items():
            path = args.data_dir / "layout.zarr"
            shutil.rmtree(path, ignore_errors=True)
            start = time.perf_counter()
            array = zarr.create_array(
                str(path),
                shape=data.shape,
                chunks=chunks,
                dtype=data.dtype,
                compressors=None if codec is None else [codec],
            )
            array[:] = data
            write = time.perf_counter() - start
            start = time.perf_counter()
            for a in range(0, t, 15):
                np.asarray(array[a : a + 15])
            read_slabs = time.perf_counter() - start
            start = time.perf_counter()
            np.asarray(array[:, 40:56, 50:66, 40:56])
            read_voxels = time.perf_counter() - start
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9
            print(
                f"| {chunk_name} | {codec_name} | {write:.2f} s | {read_slabs:.2f} s | "
                f"{read_voxels:.2f} s | {size:.2f} GB |",
                flush=True,
            )
    shutil.rmtree(args.data_dir / "layout.zarr", ignore_errors=True)


if __name__ == "__main__":
    main()
