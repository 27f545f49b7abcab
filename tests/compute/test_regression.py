"""Partial normal equations against scipy.linalg.lstsq, under random chunkings (hypothesis)."""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace
from typing import ClassVar

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from daskmasker.compute.projection import project
from daskmasker.compute.regression import (
    GramSolver,
    compact_maps,
    split_maps,
)


def whole_support(maps: np.ndarray) -> np.ndarray:
    return maps.any(axis=0)


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
    whole = compact_maps(maps)
    blocks = split_maps(whole, shape, chunks[1:])
    sizes = np.vectorize(lambda b: b.size, otypes=[int])(blocks)
    # each split block is the compaction of the maps cut to that block
    bounds = [np.cumsum((0, *c)) for c in chunks[1:]]
    for idx in np.ndindex(*blocks.shape):
        sl = tuple(slice(b[i], b[i + 1]) for b, i in zip(bounds, idx, strict=True))
        direct = compact_maps(maps[(slice(None), *sl)], whole_support(maps)[sl])
        np.testing.assert_array_equal(blocks[idx].index, direct.index)
        np.testing.assert_array_equal(blocks[idx].rows, direct.rows)
    summed = project(
        da.from_array(volumes, chunks=chunks),
        blocks,
        sizes,
        k,
        batch_volumes=data.draw(st.integers(1, t)),
    )
    products, nonfinite = summed[:, :k], summed[:, k]
    assert dask.is_dask_collection(products)  # a lazy graph until computed
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


@pytest.mark.parametrize("chunks", [(3, 6, 7, 8), (4, 3, 7, 5)], ids=["whole", "split"])
def test_read_and_gather_in_one_task_equals_the_generic_path(tmp_path, chunks):
    """Products computed from a Zarr store's chunks decoded into scratch buffers (and gathered
    in the same task) equal those of the generic map_blocks path, non-finite counts included."""
    import zarr
    from zarr.codecs import BloscCodec

    from daskmasker.io.fs import Location
    from daskmasker.io.zarr import ChunkReader

    rng = np.random.default_rng(0)
    k, shape, t = 3, (6, 7, 8), 11
    maps = np.clip(rng.normal(size=(k, *shape)), 0, None)
    volumes = rng.normal(size=(t, *shape)).astype(np.float32)
    volumes[4, 1, 2, 3] = np.nan
    volumes[9, 5, 6, 7] = np.inf
    array = zarr.open_group(str(tmp_path / "s.zarr"), mode="w").create_array(
        "0", shape=volumes.shape, chunks=chunks, dtype="f4", compressors=BloscCodec(cname="lz4")
    )
    array[:] = volumes
    reader = ChunkReader.of(array, Location(str(tmp_path / "s.zarr")))
    data = da.from_array(reader, chunks=array.chunks, asarray=False, fancy=False)
    whole = compact_maps(maps)
    blocks = split_maps(whole, shape, data.chunks[1:])
    sizes = np.vectorize(lambda b: b.size, otypes=[int])(blocks)
    fused = project(data, blocks, sizes, k, batch_volumes=5, reader=reader)
    generic = project(da.from_array(volumes, chunks=chunks), blocks, sizes, k, batch_volumes=5)
    assert any(n.startswith("read-gather") for n in fused.dask.layers)
    fused, generic = dask.compute(fused, generic)
    np.testing.assert_array_equal(fused, generic)
    np.testing.assert_array_equal(fused[:, -1], [0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0])


def test_gzip_read_products_chain_equals_the_generic_path(tmp_path):
    """A .nii.gz read by batch tasks (read, gather and multiply, each batch after the previous
    one) gives the generic path's products and non-finite counts, across batches."""
    import nibabel as nib

    from daskmasker.io.image import READER_ENCODING
    from daskmasker.io.nifti import open_nifti

    rng = np.random.default_rng(1)
    k, shape, t = 3, (6, 7, 8), 23
    maps = np.clip(rng.normal(size=(k, *shape)), 0, None)
    volumes = rng.normal(size=(t, *shape)).astype(np.float32)
    volumes[4, 1, 2, 3] = np.nan
    volumes[20, 5, 6, 7] = -np.inf
    path = str(tmp_path / "run.nii.gz")
    nib.Nifti1Image(volumes.T, np.eye(4)).to_filename(path)
    image = open_nifti(path, chunks=4)
    reader = image.encoding[READER_ENCODING]
    assert reader.sequential and reader.chunks_of(image.data)
    blocks = split_maps(compact_maps(maps), shape, image.data.chunks[1:])
    sizes = np.vectorize(lambda b: b.size, otypes=[int])(blocks)
    chained = project(image.data, blocks, sizes, k, batch_volumes=8, reader=reader)
    generic = da.from_array(volumes, chunks=(5, -1, -1, -1))
    generic = project(generic, blocks, sizes, k, batch_volumes=8)
    (layer,) = [n for n in chained.dask.layers if n.startswith("read-products")]
    assert len(chained.dask.layers[layer]) == 3  # batches of 8, 8 and 7 volumes
    chained, generic = dask.compute(chained, generic)
    np.testing.assert_allclose(chained, generic, rtol=1e-12)
    expected = np.zeros(t)
    expected[[4, 20]] = 1
    np.testing.assert_array_equal(chained[:, -1], expected)


@pytest.mark.parametrize(
    ("chunks", "step", "expected"),
    [
        ((7,) * 6 + (5,), 14, [[0, 1], [2, 3], [4, 5, 6]]),  # a 5-volume straggler joins
        ((7,) * 5, 14, [[0, 1], [2, 3], [4]]),  # 7 ≥ 14 / 2 stays its own batch
        ((100,), 32, [[0]]),
        ((40, 40, 3), 32, [[0], [1, 2]]),
        ((), 5, []),
    ],
)
def test_batch_chunks_groups_consecutive_chunks(chunks, step, expected):
    from daskmasker.compute.plan import batch_chunks

    batches = batch_chunks(chunks, step)
    assert batches == expected
    assert [i for b in batches for i in b] == list(range(len(chunks)))


def test_block_without_support_still_counts_its_nonfinite_values():
    """A spatial block outside every map adds no product, but its NaNs are counted."""
    rng = np.random.default_rng(2)
    k, shape, t = 2, (4, 5, 6), 7
    maps = np.zeros((k, *shape))
    maps[:, :2] = rng.random((k, 2, *shape[1:]))
    volumes = rng.normal(size=(t, *shape))
    volumes[3, 3, 0, 0] = np.nan  # in the second z block, which no map reaches
    chunks = ((3, 4), (2, 2), (5,), (6,))
    whole = compact_maps(maps)
    blocks = split_maps(whole, shape, chunks[1:])
    sizes = np.vectorize(lambda b: b.size, otypes=[int])(blocks)
    assert sizes.ravel().tolist() == [60, 0]
    summed = project(da.from_array(volumes, chunks=chunks), blocks, sizes, k).compute()
    np.testing.assert_array_equal(summed[:, -1], [0, 0, 0, 1, 0, 0, 0])
    expected = volumes[:, :2].reshape(t, -1) @ maps[:, :2].reshape(k, -1).T
    np.testing.assert_allclose(summed[:, :k], expected, rtol=1e-12)


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def blas(monkeypatch):
    """A stand-in BLAS with threadpoolctl's semantics (a limiter saves the thread count when
    made and sets it back when restored), installed once the real limit a previous test left
    pending is lifted; ``Blas.made`` lists the limits made.

    Whether OpenBLAS obeys depends on the process's past (after some tests of this suite, its
    limit had no effect at all); the bookkeeping does not.
    """
    from daskmasker.compute import regression

    monkeypatch.setattr(regression, "RELEASE_DELAY", 0.0)
    with regression._ONE_THREAD_IDLE:
        regression._ONE_THREAD_IDLE.notify()
    _wait_for(lambda: regression._one_thread_limit is None)

    class Blas:
        threads = 2
        made: ClassVar[list[int]] = []

        def limit(self, limits, user_api):
            assert user_api == "blas"
            saved, Blas.threads = Blas.threads, limits
            Blas.made.append(limits)
            return SimpleNamespace(restore_original_limits=lambda: setattr(Blas, "threads", saved))

    monkeypatch.setattr(regression, "_blas_controller", Blas)
    monkeypatch.setattr(regression, "RELEASE_DELAY", 0.3)
    return Blas


def test_one_thread_limit_outlives_a_block_by_the_release_delay(blas):
    """Blocks that follow each other within ``RELEASE_DELAY`` (the tasks of one computation)
    run under one limit: BLAS's threads are not woken between them (the cost measured in
    benchmarks/results/2026-12-07-connectivity.md); after the delay BLAS gets its threads back.
    """
    from daskmasker.compute import regression

    for _ in range(5):
        with regression.one_blas_thread():
            assert blas.threads == 1
        time.sleep(0.05)  # a gap between two tasks, well inside the delay
        assert blas.threads == 1  # held between blocks
    assert blas.made == [1]  # one limit for the five blocks
    _wait_for(lambda: blas.threads == 2)
    with regression.one_blas_thread():
        assert blas.threads == 1
    assert blas.made == [1, 1]
    _wait_for(lambda: blas.threads == 2)


def test_a_block_closed_by_a_finalizer_under_the_lock_ends(blas):
    """A block's exit can run in a finalizer (the garbage collector closing an abandoned
    generator) on a thread that holds the limit's lock; it must neither deadlock nor start a
    thread there (a timer started from the collector hung a test process), and the limit is
    still lifted after the delay.
    """
    import threading

    from daskmasker.compute import regression

    def held():
        with regression.one_blas_thread():
            yield

    abandoned = held()
    next(abandoned)
    assert blas.threads == 1

    def collect():
        with regression._ONE_THREAD_LOCK:
            abandoned.close()

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    collector.join(10)
    assert not collector.is_alive(), "the block's exit deadlocked under the lock"
    _wait_for(lambda: blas.threads == 2)


def test_overlapping_one_thread_blocks_restore_blas_threads(blas):
    """Two threads' blocks interleaved (A in, B in, A out, B out): BLAS keeps one thread until
    the last block ends, then gets its threads back.  threadpoolctl's own limiter used the same
    way (the control) leaves BLAS on one thread for good.
    """
    from daskmasker.compute import regression

    a, b = regression.one_blas_thread(), regression.one_blas_thread()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert blas.threads == 1  # B still runs
    b.__exit__(None, None, None)
    _wait_for(lambda: blas.threads == 2)
    first = blas().limit(limits=1, user_api="blas")
    second = blas().limit(limits=1, user_api="blas")
    first.restore_original_limits()
    second.restore_original_limits()
    assert blas.threads == 1  # the control: stuck
