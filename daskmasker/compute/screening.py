"""Screening: finding the few non-zero values of mostly-zero arrays at memory speed.

An atlas of many small maps (DiFuMo 1024: ~700 voxels a map on a 1.3 M-voxel grid) is almost all
zeros.  :func:`screen` ORs the values' bits over segments of up to 8 rows of the grid and keeps
only the segments with a bit set; :func:`sparse_nonzero` then compares only those.  A
:class:`Screener` does this piece by piece while a ``.nii.gz`` is inflated (it is the consumer
the fit gives :meth:`daskmasker.io.nifti_chunks.GzipChunks.read_pieces`), so the dense block of
maps is never made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def screen_width(size: int, segment: int, itemsize: int) -> int | None:
    """Values per screened segment of an array of ``size`` values: up to 8 runs of ``segment``
    (the grid's last axis) dividing ``size``; None when the values cannot be screened."""
    if itemsize not in (4, 8) or segment < 1 or size % segment:
        return None
    return segment * next(m for m in (8, 4, 2, 1) if size % (segment * m) == 0)


def screen(values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The segments of ``width`` values of a 1-D array that hold a set bit: their indices and
    a copy of their values ``(n_hit, width)``; every other segment holds only zeros (+0.0).

    One pass ORs the values' bits over each segment, 8 bytes at a time (4-byte values in pairs
    when ``width`` is even; OR reduces faster than max): memory speed, or cache speed
    on a piece just inflated (:class:`Screener`).
    """
    if values.dtype.itemsize == 4 and width % 2 == 0:
        bits = values.view(np.uint64).reshape(-1, width // 2)
    else:
        bits = values.view(np.uint32 if values.dtype.itemsize == 4 else np.uint64)
        bits = bits.reshape(-1, width)
    hit = np.flatnonzero(np.bitwise_or.reduce(bits, axis=1))
    return hit, values.reshape(-1, width)[hit]


@dataclass(frozen=True)
class ScreenedBlock:
    """A block of maps ``(k, z, y, x)`` held as its screened segments (:func:`screen` over the
    flattened block): the other segments are zeros.  What a ``.nii.gz`` reader gives the fit
    instead of the dense block, which is never made."""

    shape: tuple[int, ...]
    dtype: np.dtype
    width: int
    hit: np.ndarray
    segments: np.ndarray


def sparse_nonzero(flat: np.ndarray, segment: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a ``(k, V)`` array, faster when it is sparse.

    ``np.nonzero`` compares every float.  Here :func:`screen` keeps the segments
    with a bit set (up to 8 runs of ``segment`` values, a divisor of the array's size: a small
    map of a DiFuMo-like atlas sets a few in a hundred) and only those are compared.  The result is
    ``np.nonzero``'s, in its order (``-0.0`` has a bit set, so it is screened in, then compared
    equal to 0; NaN is non-zero in both).

    Examples
    --------
    >>> flat = np.zeros((2, 12), np.float32)
    >>> flat[0, 5], flat[1, 0], flat[1, 7] = 1.0, np.nan, -0.0
    >>> sparse_nonzero(flat, segment=4)
    (array([0, 1]), array([5, 0]))
    """
    width = screen_width(flat.size, segment, flat.dtype.itemsize)
    if width is None or not flat.flags.c_contiguous:
        rows, cols = np.nonzero(flat)
        return rows, cols
    hit, segments = screen(flat.reshape(-1), width)
    return screened_nonzero(hit, segments, flat.shape[1])[:2]


def screened_nonzero(
    hit: np.ndarray, segments: np.ndarray, n_columns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and values of the non-zeros of screened segments, in C order."""
    part_rows, part_cols = np.nonzero(segments)
    rows, cols = np.divmod(hit[part_rows] * segments.shape[1] + part_cols, n_columns)
    return rows, cols, segments[part_rows, part_cols]


class Screener:
    """Screens a block of maps ``(k, z, y, x)`` piece by piece as its stored bytes arrive.

    The piece consumer the fit gives a ``.nii.gz`` reader
    (:meth:`~daskmasker.io.nifti_chunks.GzipChunks.read_pieces`): each piece is screened while
    it is in the core's cache, and :meth:`result` is the block's :class:`ScreenedBlock`.

    Examples
    --------
    >>> block = np.zeros((1, 9, 2, 4), np.float32)
    >>> block[0, 5, 0, 2] = 3.0
    >>> screener = Screener.for_block(block.shape, block.dtype)
    >>> raw = block.reshape(-1).view(np.uint8)
    >>> for offset in range(0, raw.size, screener.granule):
    ...     screener.consume(offset, raw[offset : offset + screener.granule])
    >>> screened = screener.result()
    >>> screener.width, screened.hit, screened.segments[0, 2]
    (8, array([5]), np.float32(3.0))
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, width: int):
        self.shape, self.dtype, self.width = tuple(shape), np.dtype(dtype), width
        self._hits: list[np.ndarray] = []
        self._segments: list[np.ndarray] = []

    @classmethod
    def for_block(cls, shape: tuple[int, ...], dtype: Any) -> Screener | None:
        """A screener of a block of ``shape`` (the grid's last axis is the segment), or None
        when its values cannot be screened (see :func:`screen_width`)."""
        width = screen_width(int(np.prod(shape)), shape[-1], np.dtype(dtype).itemsize)
        return None if width is None else cls(shape, dtype, width)

    @property
    def granule(self) -> int:
        """Bytes of one segment: every piece but the last must be a multiple of it."""
        return self.width * self.dtype.itemsize

    def consume(self, offset: int, piece: np.ndarray) -> None:
        """Screen ``piece`` (uint8, the block's bytes from ``offset``)."""
        hit, values = screen(piece.view(self.dtype), self.width)
        self._hits.append(hit + offset // self.granule)
        self._segments.append(values)

    def result(self) -> ScreenedBlock:
        """The block's screened segments."""
        return ScreenedBlock(
            self.shape,
            self.dtype,
            self.width,
            np.concatenate(self._hits),
            np.concatenate(self._segments),
        )
