"""The reduction builder: Dask's tree merge equals the numpy merge under random chunkings, and
building the graph computes nothing (flox's tests)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daskmasker.compute.reduction import (
    Reduction,
    block_partials,
    combine_partials,
    reduce_blocks,
    sum_stacked,
)
from daskmasker.compute.regression import NORMAL_EQUATIONS
from daskmasker.compute.variance import DETRENDED_VARIANCE


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(2, 5), st.integers(1, 4), st.integers(0, 2**16))
def test_tree_merge_equals_the_numpy_merge(n_parts, split_every, n_chunks, seed):
    """Moments of random series merged by Dask in a tree of any fan-in equal the moments merged
    in one go, to rounding; sums are bit for bit when the tree is one level."""
    rng = np.random.default_rng(seed)
    n_scans = 4 * n_parts
    series = 1e3 + rng.normal(size=(n_scans, 6))
    parts = [
        DETRENDED_VARIANCE.chunk(series[4 * i : 4 * i + 4], 4 * i, n_scans) for i in range(n_parts)
    ]
    lazy = [da.from_array(p) for p in parts]  # whole: column 0 holds each chunk's count
    merged = combine_partials(DETRENDED_VARIANCE, lazy, split_every=split_every).compute()
    want = DETRENDED_VARIANCE.combine(np.stack(parts))
    np.testing.assert_allclose(merged, want, rtol=1e-13, atol=1e-10)
    # products chunked along time: each chunk merges with the same chunk of the others
    products = [rng.normal(size=(5 * n_chunks, 3)) for _ in range(n_parts)]
    summed = combine_partials(NORMAL_EQUATIONS, [da.from_array(p, chunks=5) for p in products])
    total = NORMAL_EQUATIONS.combine(np.stack(products))
    if n_parts <= 4:  # Dask's default fan-in: one level, the numpy order
        np.testing.assert_array_equal(summed.compute(), total)
    else:
        np.testing.assert_allclose(summed.compute(), total, rtol=1e-13, atol=1e-13)


def test_building_computes_nothing_and_one_partial_is_returned_as_is():
    calls = []

    def chunk(block):
        calls.append(block)
        return block

    counting = Reduction("counting", chunk=chunk, combine=sum_stacked, finalize=float)
    meta = np.empty((0, 0))
    parts = [da.ones((4, 3), chunks=2).map_blocks(chunk, meta=meta) for _ in range(3)]
    merged = combine_partials(counting, parts, split_every=2)
    assert calls == [] and merged.name.startswith("counting")
    np.testing.assert_array_equal(merged.compute(scheduler="sync"), np.full((4, 3), 3.0))
    assert len(calls) == 4  # negative control: computing calls it (the parts share 4 blocks)
    assert combine_partials(counting, parts[:1]) is parts[0]
    with pytest.raises(ValueError, match="counting: no partial to combine"):
        combine_partials(counting, [])


def test_the_variance_merge_is_chan_not_a_plain_sum():
    """Two chunks with far apart means: a plain sum of the moments misses the spread between
    them (the break this test catches)."""
    series = np.concatenate([np.zeros((3, 1)), np.full((3, 1), 10.0)])
    parts = np.stack([DETRENDED_VARIANCE.chunk(series[a : a + 3], a, 6) for a in (0, 3)])
    moments = DETRENDED_VARIANCE.combine(parts)
    variance = DETRENDED_VARIANCE.finalize(moments, 6, detrend=False)
    np.testing.assert_allclose(variance, [50.0], rtol=1e-15)  # mean of squares: 6 × 100 / 12
    with dask.config.set(scheduler="sync"):
        lazy = combine_partials(DETRENDED_VARIANCE, [da.from_array(p) for p in parts])
        np.testing.assert_array_equal(lazy.compute(), moments)


def test_reduce_blocks_passes_aligned_blocks_and_a_delayed_state():
    """``chunk`` gets each block with the matching block of an aligned array and a Delayed
    whole; ``finalize`` gets the merged partial and its own arguments (the descent's shape)."""
    data = np.arange(24.0).reshape(8, 3)
    weights = np.arange(8.0)
    state = dask.delayed(np.float64)(10.0)
    weighted = Reduction(
        "weighted",
        chunk=lambda block, w, offset: (block * w[:, None]).sum(0) + offset,
        combine=sum_stacked,
        finalize=lambda total, offset, n: (total - n * offset) / weights.sum(),
    )
    lazy = reduce_blocks(
        weighted,
        da.from_array(data, chunks=(3, -1)),
        da.from_array(weights, chunks=3),
        state,
        partial_shape=(3,),
        finalize_args=(state, 3),  # 3 blocks: the offset was added 3 times
        split_every=2,
    )
    want = (data * weights[:, None]).sum(0) / weights.sum()
    np.testing.assert_allclose(lazy.compute(), want, rtol=1e-15)
    with pytest.raises(AssertionError):  # negative control: 2 blocks, a wrong offset count
        np.testing.assert_allclose(
            reduce_blocks(
                weighted,
                da.from_array(data, chunks=(4, -1)),
                da.from_array(weights, chunks=4),
                state,
                partial_shape=(3,),
                finalize_args=(state, 3),
            ).compute(),
            want,
            rtol=1e-15,
        )
    with pytest.raises(ValueError, match=r"weighted: the data must be chunked along its first"):
        block_partials(weighted, da.from_array(data, chunks=(3, 2)), partial_shape=(3,))
    with pytest.raises(ValueError, match=r"does not follow the data's blocks \(3, 3, 2\)"):
        block_partials(
            weighted, da.from_array(data, chunks=(3, -1)), da.ones(8, chunks=4), partial_shape=(3,)
        )
