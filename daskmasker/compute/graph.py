"""Dask arrays from hand-built task layers (Dask's task spec: ``Task``, ``TaskRef``).

A layer written out block by block costs microseconds per task; one ``dask.delayed`` object,
``from_delayed`` and a concatenation per chunk cost about half a millisecond, most of building an
image's graph.  Keys follow Dask's array convention ``(name, *block_index)``.
"""

from __future__ import annotations

from collections.abc import Callable

import dask.array as da
import numpy as np
from dask._task_spec import DataNode, Task, TaskRef
from dask.highlevelgraph import HighLevelGraph


def task_array(name: str, layer: dict, chunks: tuple, dtype, dependencies=()) -> da.Array:
    """A Dask array whose blocks are the tasks ``layer[(name, *block)]``.

    Parameters
    ----------
    name : str
        The array's name (the first element of its keys).
    layer : dict
        Tasks by key; may hold helper keys of other names that the blocks refer to.
    chunks : tuple of tuples
        Dask chunks of the array.
    dtype : dtype
    dependencies : sequence of Dask collections
        Collections whose keys the layer's tasks refer to.
    """
    graph = HighLevelGraph.from_collections(name, layer, dependencies=list(dependencies))
    return da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype=dtype))


def paced_reads(
    name: str,
    reader,
    n_chunks: int,
    consume: Callable,
    *args,
    where: tuple = (),
    tail: tuple = (),
    per_chunk: list[tuple] | None = None,
) -> dict:
    """Tasks reading chunks ``0 .. n_chunks - 1`` of a sequential reader, each consumed by a task
    of its own, ``(name, i, *tail)`` = ``consume(chunk_i, *args, *per_chunk[i])``.

    Read ``i`` waits for read ``i - 1`` (the stream's order: a ``.nii.gz`` inflates once) and for
    consumer ``i - 2`` (the pace).  A plain chain of reads let Dask's ordering run every read
    before any consumer when one thread computes (``n_jobs=1``, a 1-CPU job): the whole image in
    memory.  Paced, at most three chunks are alive whatever the number of threads, and a second
    thread still consumes a chunk while the next one is read.

    Parameters
    ----------
    name : str
        The consumers' key name; the reads are ``(name + "-read", i)``.
    reader : ChunkSource
        Read with ``reader.read_chunk((i, *where))``.
    n_chunks : int
    consume : callable
        ``consume(chunk, *args)``; ``args`` may hold task references.
    where, tail : tuple
        The chunk's position on the other axes of the reader's grid; the consumers' key tail.
    per_chunk : list of tuples, optional
        Arguments of chunk ``i``'s consumer after ``args``.

    Returns
    -------
    dict
        The layer (consumers, reads and the reader as one data node).
    """
    read, reader_key = f"{name}-read", f"{name}-reader"
    layer = {reader_key: DataNode(reader_key, reader)}
    for i in range(n_chunks):
        after = [TaskRef((read, i - 1))] if i else []
        if i >= 2:
            after.append(TaskRef((name, i - 2, *tail)))
        layer[(read, i)] = Task((read, i), _read_after, TaskRef(reader_key), (i, *where), *after)
        extra = per_chunk[i] if per_chunk is not None else ()
        layer[(name, i, *tail)] = Task((name, i, *tail), consume, TaskRef((read, i)), *args, *extra)
    return layer


def _read_after(reader, where: tuple, *after) -> np.ndarray:
    del after  # the previous read and an earlier consumer: only an ordering
    return reader.read_chunk(where)
