"""Partial normal equations against scipy.linalg.lstsq, under random chunkings (hypothesis)."""

from __future__ import annotations

import itertools

import dask
import dask.array as da
import numpy as np
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from daskmasker.regression import GramSolver, compact_maps, maps_block_array, project


def _chunks(n: int, draw) -> tuple[int, ...]:
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=3))) if n > 1 else []
    bounds = [0, *cuts, n]
    return tuple(b - a for a, b in itertools.pairwise(bounds))


@settings(max_examples=30, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**16), empty_map=st.booleans())
def test_chunked_products_and_solve_equal_lstsq(data, seed, empty_map):
    rng = np.random.default_rng(seed)
    k, shape, t = 4, (5, 6, 7), 9
    maps = np.clip(rng.normal(size=(k, *shape)), 0, None)
    if empty_map:
        maps[1] = 0
    volumes = rng.normal(size=(t, *shape)).astype(np.float32)
    chunks = tuple(_chunks(n, data.draw) for n in (t, *shape))
    grid = tuple(len(c) for c in chunks[1:])
    blocks = np.empty(grid, dtype=object)
    bounds = [np.cumsum((0, *c)) for c in chunks[1:]]
    for idx in np.ndindex(*grid):
        sl = tuple(slice(b[i], b[i + 1]) for b, i in zip(bounds, idx, strict=True))
        blocks[idx] = compact_maps(maps[(slice(None), *sl)])
    products, nonfinite = project(
        da.from_array(volumes, chunks=chunks), maps_block_array(blocks, chunks[1:]), k
    )
    assert dask.is_dask_collection(products)  # a lazy graph until computed
    whole = compact_maps(maps)
    solver = GramSolver(whole.rows.T @ whole.rows, whole.index.size)
    coefs = solver.solve(products.compute())
    a = maps.reshape(k, -1).T
    support = a.any(axis=1)
    expected = scipy.linalg.lstsq(a[support], volumes.reshape(t, -1).T[support].astype(float))[0].T
    np.testing.assert_allclose(coefs, expected, atol=1e-10)
    assert np.all(nonfinite.compute() == 0)
    if empty_map:
        assert np.all(coefs[:, 1] == 0), "an empty map gets exactly 0"


def test_rank_deficient_set_gives_minimum_norm():
    rng = np.random.default_rng(1)
    a = np.clip(rng.normal(size=(200, 3)), 0, None)
    a = np.c_[a, a[:, 0]]  # a duplicated map
    x = rng.normal(size=(200, 5))
    solver = GramSolver(a.T @ a, 200)
    assert solver.rank == 3
    coefs = solver.solve((a.T @ x).T)
    np.testing.assert_allclose(coefs, scipy.linalg.lstsq(a, x)[0].T, atol=1e-10)
