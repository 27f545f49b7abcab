"""Reductions as data: chunk → combine → finalize (flox's ``Aggregation``), and their one graph
builder.

A :class:`Reduction` names three numpy functions:

* ``chunk`` turns one block of the input into a small *partial* array;
* ``combine`` merges partials stacked along a new first axis into one partial, in order (it is
  associative, so Dask may merge them in a tree);
* ``finalize`` turns the merged partial into the answer.

:func:`combine_partials` is the one graph builder: it stacks the partials of the blocks along
the reduced axis and merges them with a tree reduction (``dask.array.reduction``; ``split_every``
sets its fan-in).  The two reductions of an extraction are described this way:
:data:`~daskmasker.compute.regression.NORMAL_EQUATIONS` (per batch and spatial block ``XᵀM``,
summed over the blocks, solved with the Gram matrix) and
:data:`~daskmasker.compute.variance.DETRENDED_VARIANCE` (per chunk of volumes its moments,
merged with Chan's stable formula, the detrended variance of each voxel).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np


@dataclass(frozen=True)
class Reduction:
    """A reduction described as data.

    Attributes
    ----------
    name : str
        Names the graph's keys.
    chunk : callable
        ``chunk(block, *args) -> partial``: a block's partial array.
    combine : callable
        ``combine(stacked) -> partial``: partials stacked along a new first axis, merged in
        order into one (associative).
    finalize : callable
        ``finalize(partial, *args) -> result``: the answer from the merged partial.

    Examples
    --------
    >>> total = Reduction("total", chunk=np.sum, combine=sum_stacked, finalize=float)
    >>> blocks = [np.arange(3.0), np.arange(4.0)]
    >>> total.finalize(total.combine(np.stack([total.chunk(b) for b in blocks])))
    9.0
    """

    name: str
    chunk: Callable[..., Any]
    combine: Callable[[np.ndarray], np.ndarray]
    finalize: Callable[..., Any]


def sum_stacked(stacked: np.ndarray) -> np.ndarray:
    """The ``combine`` of partials that add up: their sum along the first axis (in order)."""
    return np.sum(stacked, axis=0)


def combine_partials(
    reduction: Reduction,
    partials: Sequence[da.Array],
    *,
    split_every: int | None = None,
) -> da.Array:
    """The partials of the blocks along a reduced axis, merged by ``reduction.combine`` in a
    tree.

    Parameters
    ----------
    reduction : Reduction
    partials : sequence of dask arrays
        One partial array per block of the reduced axis, all of the same shape and chunks (each
        of their chunks is merged with the matching chunks of the others).
    split_every : int, optional
        Fan-in of the tree (Dask's default when None).

    Returns
    -------
    dask array
        The merged partial, chunked as each of ``partials``; the first one itself when there is
        only one.
    """
    if not partials:
        raise ValueError(f"{reduction.name}: no partial to combine")
    if len(partials) == 1:
        return partials[0]
    stacked = da.stack(partials)
    merge = functools.partial(_merge, reduction.combine)
    return da.reduction(
        stacked,
        chunk=_as_is,
        combine=merge,
        aggregate=merge,
        axis=0,
        split_every=split_every,
        dtype=stacked.dtype,
        concatenate=True,
        name=reduction.name,
        meta=np.empty((0,) * (stacked.ndim - 1), dtype=stacked.dtype),
    )


def _as_is(block: np.ndarray, axis: Any = None, keepdims: bool = True, **kwargs: Any) -> np.ndarray:
    """A block of stacked partials (one along the reduced axis) is its own partial."""
    del axis, keepdims, kwargs
    return block


def _merge(
    combine: Callable[[np.ndarray], np.ndarray],
    stacked: np.ndarray,
    axis: Any = None,
    keepdims: bool = False,
    **kwargs: Any,
) -> np.ndarray:
    """``combine`` in ``dask.array.reduction``'s calling convention (reduced axis 0)."""
    del axis, kwargs
    merged = combine(stacked)
    return merged[np.newaxis] if keepdims else merged
