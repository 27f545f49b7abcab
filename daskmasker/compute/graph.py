"""Dask arrays from hand-built task layers: the one module that touches Dask's task spec.

A layer written out block by block costs microseconds per task; one ``dask.delayed`` object,
``from_delayed`` and a concatenation per chunk cost about half a millisecond, most of building an
image's graph.  Keys follow Dask's array convention ``(name, *block_index)``.

Dask's task spec (``dask._task_spec``: ``Task``, ``TaskRef``, ``DataNode``, ``List``) is
private API; it is imported here only, and the rest of the package builds layers with
:func:`task`, :func:`ref`, :func:`data_node`, :func:`task_list` and :func:`graph_input`, so a
change of Dask's internals is mended in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

import dask.array as da
import numpy as np
from dask._task_spec import DataNode, List, Task, TaskRef, convert_legacy_graph, parse_input
from dask.base import clone_key
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

Key = Hashable
"""A graph key: a string, or a tuple ``(name, *index)``."""


def task(key: Key, func: Callable, *args: Any) -> Any:
    """The task ``key`` = ``func(*args)``; ``args`` may hold :func:`ref` references."""
    return Task(key, func, *args)


def ref(key: Key) -> Any:
    """A reference to the output of the task ``key``, as an argument of another task."""
    return TaskRef(key)  # type: ignore[arg-type]  # any hashable key


def data_node(key: Key, value: Any) -> Any:
    """``value`` as the graph node ``key``: one object the tasks share by reference."""
    return DataNode(key, value)


def task_list(items: Iterable[Any]) -> Any:
    """A list argument whose items (references among them) are resolved before the call."""
    return List(*items)


def graph_input(value: Any) -> Any:
    """``value`` as a task argument; a Dask future (scattered data) becomes a reference to it."""
    return parse_input(value)


def task_array(
    name: str,
    layer: dict,
    chunks: tuple,
    dtype: Any,
    dependencies: Iterable[Any] = (),
) -> da.Array:
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
    reader: Any,
    n_chunks: int,
    consume: Callable,
    *args: Any,
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
    layer: dict[Any, Any] = {reader_key: DataNode(reader_key, reader)}
    for i in range(n_chunks):
        after = [TaskRef((read, i - 1))] if i else []
        if i >= 2:
            after.append(TaskRef((name, i - 2, *tail)))
        layer[(read, i)] = Task((read, i), _read_after, TaskRef(reader_key), (i, *where), *after)
        extra = per_chunk[i] if per_chunk is not None else ()
        layer[(name, i, *tail)] = Task((name, i, *tail), consume, TaskRef((read, i)), *args, *extra)
    return layer


def _read_after(reader: Any, where: tuple, *after: Any) -> np.ndarray:
    del after  # the previous read and an earlier consumer: only an ordering
    return reader.read_chunk(where)


def _after(value: Any, *done: Any) -> Any:
    """``value``, once the tasks ``done`` are (only an ordering)."""
    del done
    return value


def reread(data: da.Array, seed: str, after: Delayed | None = None) -> da.Array:
    """A copy of ``data`` under new keys: its chunks are read again rather than shared.

    ``dask.graph_manipulation.clone`` and ``bind`` do this for tuple graphs, but they rename
    the keys of a layer of ``Task`` objects without renaming the tasks (Dask then refuses to
    fuse them: "Cannot fuse tasks with multiple outputs"), and leave their ``TaskRef``
    arguments pointing at the original keys.  Here every task is renamed with its references.

    Parameters
    ----------
    data : dask array
    seed : str
        Makes the new keys (the same seed, the same keys).
    after : Delayed, optional
        The copy's source tasks (those that depend on no other task) wait for it.
    """
    graph = convert_legacy_graph(dict(data.__dask_graph__()))
    subs = {key: clone_key(key, seed) for key in graph}
    layer = {}
    for key, node in graph.items():
        new = node.substitute(subs, key=subs[key])
        if after is not None and not node.dependencies:
            new = Task(subs[key], _after, new, TaskRef(after.key))
        layer[subs[key]] = new
    name = clone_key(data.name, seed)
    dependencies: list[Any] = [after] if after is not None else []
    hlg = HighLevelGraph.from_collections(name, layer, dependencies=dependencies)
    return da.Array(hlg, name, data.chunks, meta=data._meta)
