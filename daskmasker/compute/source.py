"""What the projection graph needs of a source of chunks: the :class:`ChunkSource` protocol.

The readers of :mod:`daskmasker.io` implement it (a Zarr store's
:class:`~daskmasker.io.zarr.ChunkReader`, a ``.nii.gz``'s
:class:`~daskmasker.io.nifti_chunks.GzipChunks`) so that
:func:`~daskmasker.compute.projection.project` can read and reduce each chunk in the same task,
and raw volumes never travel between tasks.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ChunkSource(Protocol):
    """A reader of the chunks of one 4D array, by their position in the chunk grid.

    Attributes
    ----------
    sequential : bool
        Read the chunks in order, one task after the other (a gzip stream), rather than in
        any order and in parallel.
    """

    sequential: bool

    def chunks_of(self, data: Any) -> bool:
        """Whether ``data`` (a Dask array) is this source's array, chunk for chunk."""

    def read_chunk(self, where: tuple[int, ...]) -> np.ndarray:
        """The chunk at grid position ``where`` (possibly in a per-thread scratch buffer)."""

    def __dask_tokenize__(self) -> Any:
        """A cheap, deterministic token (the source's identity, never its data)."""
