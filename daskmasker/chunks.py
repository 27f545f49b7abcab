"""Chunk planning: pure functions of shapes and byte budgets (no I/O, no Dask)."""

from __future__ import annotations

DEFAULT_CHUNK_BYTES = 32 * 2**20


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
