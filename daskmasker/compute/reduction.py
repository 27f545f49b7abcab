"""Reductions as data: chunk → combine → finalize (flox's ``Aggregation``), and their one graph
builder.

A :class:`Reduction` names three numpy functions:

* ``chunk`` turns one block of the input into a small *partial* array;
* ``combine`` merges partials stacked along a new first axis into one partial, in order (it is
  associative, so Dask may merge them in a tree);
* ``finalize`` turns the merged partial into the answer.

:func:`combine_partials` is the one graph builder of the combine tree: it stacks the partials of
the blocks along the reduced axis and merges them with a tree reduction
(``dask.array.reduction``; ``split_every`` sets its fan-in).  :func:`block_partials` maps
``chunk`` over the blocks of an array's first axis (with extra arguments: arrays chunked alike,
or a ``Delayed`` such as an iterate), and :func:`reduce_blocks` strings chunk, the tree and
``finalize`` together.

The reductions described this way: an extraction's
:data:`~daskmasker.compute.regression.NORMAL_EQUATIONS` (per batch and spatial block ``XᵀM``,
summed over the blocks, solved with the Gram matrix) and
:data:`~daskmasker.compute.variance.DETRENDED_VARIANCE` (per chunk of volumes its moments,
merged with Chan's stable formula, the detrended variance of each voxel); a study's
connectivity (:mod:`~daskmasker.compute.connectivity_graph`): the group mean of the matrices,
and the tangent space's geometric mean, its start and each of its descent steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask import delayed
from dask.base import tokenize
from dask.delayed import Delayed


@dataclass(frozen=True)
class Reduction:
    """A reduction described as data.

    Attributes
    ----------
    name : str
        Names the graph's keys (with the inputs' names: one name per ``chunk`` function).
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


def block_partials(
    reduction: Reduction,
    data: da.Array,
    *args: Any,
    partial_shape: tuple[int, ...],
    dtype: Any = np.float64,
) -> da.Array:
    """``reduction.chunk(block, *args)`` of each block of ``data``'s first axis, stacked: the
    partials as :func:`combine_partials` takes them.

    Parameters
    ----------
    reduction : Reduction
    data : dask array
        Chunked along its first axis only (whole along the others).
    *args
        Dask arrays chunked as ``data`` along their first axis (each block is given its own
        block of them), or anything else (a ``Delayed``, such as an iterate, or a plain value),
        given whole to every block.
    partial_shape : tuple of int
        The shape of one block's partial.
    dtype : dtype, default=float64

    Returns
    -------
    dask array, shape (data.numblocks[0], *partial_shape)
        One partial per block, one block per partial.

    Examples
    --------
    >>> total = Reduction("total", chunk=np.sum, combine=sum_stacked, finalize=float)
    >>> block_partials(total, da.arange(7.0, chunks=3), partial_shape=()).compute()
    array([ 3., 12.,  6.])
    """
    if any(len(c) != 1 for c in data.chunks[1:]):
        raise ValueError(
            f"{reduction.name}: the data must be chunked along its first axis only, got chunks "
            f"{data.chunks}"
        )
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    pairs: list[Any] = [data, "r" + "".join(next(letters) for _ in data.shape[1:])]
    for arg in args:
        if isinstance(arg, da.Array):
            if arg.chunks[0] != data.chunks[0] or any(len(c) != 1 for c in arg.chunks[1:]):
                raise ValueError(
                    f"{reduction.name}: an argument chunked {arg.chunks} does not follow the "
                    f"data's blocks {data.chunks[0]}"
                )
            pairs += [arg, "r" + "".join(next(letters) for _ in arg.shape[1:])]
        else:
            pairs += [arg, None]
    partial_axes = "".join(next(letters) for _ in partial_shape)
    return da.blockwise(
        functools.partial(_chunk_partial, reduction.chunk),
        "r" + partial_axes,
        *pairs,
        new_axes=dict(zip(partial_axes, partial_shape, strict=True)),
        adjust_chunks={"r": 1},
        concatenate=False,  # one block along the other axes: no copy (concatenate3 copies)
        dtype=dtype,
        name=f"{reduction.name}-chunk-{tokenize(reduction.name, *map(_identity, pairs[::2]))}",
        meta=np.empty((0,) * (1 + len(partial_shape)), dtype=dtype),
    )


def _identity(arg: Any) -> Any:
    """What names an argument in a key: a collection's name or key (cheap, where tokenizing
    the functions of a layer pickles them), else the value."""
    if isinstance(arg, da.Array):
        return arg.name
    return arg.key if isinstance(arg, Delayed) else arg


def _chunk_partial(chunk: Callable[..., Any], block: Any, *args: Any) -> np.ndarray:
    """A block's partial, with the stacking axis."""
    return np.asarray(chunk(_only(block), *(_only(a) for a in args)))[np.newaxis]


def _only(block: Any) -> Any:
    """The one block that ``blockwise`` gives in nested lists along the axes the output drops."""
    while isinstance(block, list):
        (block,) = block
    return block


def combine_partials(
    reduction: Reduction,
    partials: Sequence[da.Array] | da.Array,
    *,
    split_every: int | None = None,
) -> da.Array:
    """The partials of the blocks along a reduced axis, merged by ``reduction.combine`` in a
    tree: the one builder of a reduction's combine tasks.

    Parameters
    ----------
    reduction : Reduction
    partials : sequence of dask arrays, or one dask array
        One partial array per block of the reduced axis, all of the same shape and chunks (each
        of their chunks is merged with the matching chunks of the others); or the partials
        already stacked along a first axis (as :func:`block_partials` returns them).
    split_every : int, optional
        Fan-in of the tree (Dask's default when None).

    Returns
    -------
    dask array
        The merged partial, chunked as each of ``partials``; the only one itself when there is
        only one.
    """
    count = partials.shape[0] if isinstance(partials, da.Array) else len(partials)
    if not count:
        raise ValueError(f"{reduction.name}: no partial to combine")
    if count == 1:
        return partials[0]
    stacked = partials if isinstance(partials, da.Array) else da.stack(partials)
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


def reduce_blocks(
    reduction: Reduction,
    data: da.Array,
    *args: Any,
    partial_shape: tuple[int, ...],
    finalize_args: tuple[Any, ...] = (),
    split_every: int | None = None,
) -> Delayed:
    """A whole reduction of ``data``'s blocks along its first axis: :func:`block_partials`,
    :func:`combine_partials`, then ``reduction.finalize(merged, *finalize_args)`` in one task.

    Parameters
    ----------
    reduction : Reduction
    data : dask array
        Chunked along its first axis only.
    *args
        ``chunk``'s arguments after the block (see :func:`block_partials`).
    partial_shape : tuple of int
        The shape of one block's partial.
    finalize_args : tuple
        ``finalize``'s arguments after the merged partial (``Delayed`` or dask arrays among
        them are computed first).
    split_every : int, optional
        Fan-in of the combine tree.

    Returns
    -------
    Delayed
        The answer (``da.from_delayed`` makes an array of it).

    Examples
    --------
    >>> total = Reduction("total", chunk=np.sum, combine=sum_stacked, finalize=float)
    >>> reduce_blocks(total, da.arange(7.0, chunks=3), partial_shape=()).compute()
    21.0
    """
    partials = block_partials(reduction, data, *args, partial_shape=partial_shape)
    merged = combine_partials(reduction, partials, split_every=split_every)
    # the merged partial is one chunk (the partials have one); as its Delayed, not the array
    # (a dask array given to ``delayed`` is optimized whole: each step of an unrolled descent
    # would optimize every step before it)
    (whole,) = merged.to_delayed(optimize_graph=False).ravel()
    key = f"{reduction.name}-finalize-{tokenize(merged.name, finalize_args)}"
    return delayed(reduction.finalize, pure=True)(whole, *finalize_args, dask_key_name=key)


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
