"""Dask arrays from hand-built task layers (Dask's task spec: ``Task``, ``TaskRef``).

A layer written out block by block costs microseconds per task; one ``dask.delayed`` object,
``from_delayed`` and a concatenation per chunk cost about half a millisecond, most of building an
image's graph.  Keys follow Dask's array convention ``(name, *block_index)``.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
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
