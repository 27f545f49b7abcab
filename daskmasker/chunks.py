"""Chunk planning: pure functions of shapes and byte budgets (no I/O, no Dask)."""

from __future__ import annotations

DEFAULT_CHUNK_BYTES = 32 * 2**20
DEFAULT_GEMM_BYTES = 64 * 2**20
MAX_GEMM_VOLUMES = 64


def time_chunks(
    n_volumes: int, volume_nbytes: int, target_nbytes: int = DEFAULT_CHUNK_BYTES
) -> tuple[int, ...]:
    """Split ``n_volumes`` whole volumes into chunks of about ``target_nbytes`` each.

    Every chunk holds at least one volume; the chunks are as even as possible and none exceeds
    the budget unless a single volume does.

    Examples
    --------
    >>> time_chunks(10, 30, target_nbytes=100)
    (3, 3, 2, 2)
    """
    if n_volumes < 0 or volume_nbytes < 0 or target_nbytes <= 0:
        raise ValueError(
            f"invalid chunk plan: n_volumes={n_volumes}, volume_nbytes={volume_nbytes}, "
            f"target_nbytes={target_nbytes}"
        )
    if n_volumes == 0:
        return ()
    per_chunk = max(1, target_nbytes // max(volume_nbytes, 1))
    n_chunks = -(-n_volumes // per_chunk)
    base, extra = divmod(n_volumes, n_chunks)
    return tuple(base + 1 if i < extra else base for i in range(n_chunks))


def gemm_volumes(
    n_support: int,
    n_volumes: int,
    target_nbytes: int = DEFAULT_GEMM_BYTES,
    max_volumes: int = MAX_GEMM_VOLUMES,
    itemsize: int = 8,
) -> int:
    """Volumes per batch of the maps products.

    At most ``target_nbytes`` of gathered support voxels (of ``itemsize`` bytes) and
    ``max_volumes`` volumes: a batch reads the maps once, so larger batches are cheaper per
    volume (0.55 ms per volume at 35 volumes, 0.45 at 70, 0.41 at 140 for 184 000 support
    voxels and 64 maps, on one core), but they hold more memory while they wait for their chunks.

    Examples
    --------
    >>> gemm_volumes(250_000, 600)
    33
    >>> gemm_volumes(250_000, 600, itemsize=4)
    64
    >>> gemm_volumes(1_000_000, 600)
    8
    >>> gemm_volumes(250_000, 10)
    10
    """
    per_batch = max(1, target_nbytes // max(itemsize * n_support, 1))
    return int(max(1, min(per_batch, max_volumes, n_volumes)))
