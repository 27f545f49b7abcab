"""Conversion of anything daskmasker opens into a Zarr image store (NIfTI-Zarr, OME-Zarr 0.5)."""

from __future__ import annotations

from typing import Any

from daskmasker.io.image import READER_ENCODING
from daskmasker.io.load import load_image
from daskmasker.io.zarr import volumes_per_chunk, write_image


def to_zarr(
    source: Any,
    store: str,
    chunks: int | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    storage_options: dict | None = None,
    compressor: Any = "default",
    maps: bool = False,
) -> str:
    """Convert a NIfTI file (path or URL) or a lazy image into a Zarr v3 store, streaming.

    Peak memory is a few chunks: volumes are read, compressed and written one chunk at a time.

    Parameters
    ----------
    source : str, path or xarray.DataArray
    store : str
        Local path or fsspec URL of the new store.
    chunks : int, optional
        Volumes (maps) per chunk (default: ``daskmasker.chunk-bytes`` of voxels, ~32 MiB).
    overwrite : bool, default=False
        Replace an existing daskmasker store.
    progress : bool, default=False
        Show a progress bar.
    storage_options : dict, optional
        fsspec options, for both the source URL and the store.
    compressor : codec, None or "default"
        Default: Blosc LZ4 with byte shuffle (fast to write and read; see
        ``benchmarks/results/2026-12-01-extraction-batch-convert.md``).
    maps : bool, default=False
        The source holds maps: store its 4th axis as channels (``c``), not time.

    Returns
    -------
    str
        The store's path or URL.
    """
    img = load_image(source, storage_options=storage_options, maps=maps)
    reader = img.encoding.get(READER_ENCODING)
    if img.ndim == 4 and getattr(reader, "sequential", False) and not hasattr(source, "dims"):
        step = volumes_per_chunk(img.shape, img.dtype, chunks)
        if set(img.data.chunks[0][:-1]) - {step}:
            # a .nii.gz opened again (its header) in the store's regular chunks: each chunk then
            # goes straight to the store, read once in order (daskmasker.io.zarr._paced_store)
            img = load_image(source, storage_options=storage_options, maps=maps, chunks=step)
    return write_image(
        img,
        store,
        chunks,
        overwrite=overwrite,
        progress=progress,
        storage_options=storage_options,
        compressor=compressor,
    )
