"""The extraction plan: every budget from shapes and byte budgets, its memory bounds hammered by
hypothesis without files (rechunker's way)."""

from __future__ import annotations

import dask
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daskmasker.compute.plan import (
    MAX_ITEMS_PER_JOB,
    MIN_SLAB_WIDTH,
    Budgets,
    plan_connectivity,
    plan_extraction,
)

budgets_strategy = st.builds(
    Budgets,
    chunk_bytes=st.integers(1, 2**28),
    gemm_bytes=st.integers(1, 2**28),
    gemm_max_volumes=st.integers(1, 256),
    slab_bytes=st.integers(1, 2**22),
    whole_item_bytes=st.integers(1, 2**26),
)


@st.composite
def images(draw):
    n_volumes = draw(st.integers(0, 3000))
    volume_nbytes = draw(st.integers(0, 2**24))
    n_support = draw(st.integers(0, 2**21))
    itemsize = draw(st.sampled_from([4, 8]))
    return n_volumes, volume_nbytes, n_support, itemsize


@settings(max_examples=300, deadline=None)
@given(images(), budgets_strategy, st.integers(0, 5000), st.integers(1, 64))
def test_plan_holds_its_memory_bounds(image, budgets, n_items, slots):
    n_volumes, volume_nbytes, n_support, itemsize = image
    plan = plan_extraction(
        n_volumes,
        volume_nbytes,
        n_support=n_support,
        gathered_itemsize=itemsize,
        n_items=n_items,
        slots=slots,
        budgets=budgets,
    )
    chunks = plan.time_chunks
    # time chunks: whole volumes covering the image, even, within the chunk budget
    assert sum(chunks) == n_volumes and all(c >= 1 for c in chunks)
    if chunks:
        assert max(chunks) - min(chunks) <= 1
        assert max(chunks) * volume_nbytes <= max(budgets.chunk_bytes, volume_nbytes)
    # product batches: consecutive whole chunks; the aim within the gathered-bytes budget
    assert [i for batch in plan.batches for i in batch] == list(range(len(chunks)))
    gathered = n_support * itemsize
    assert 1 <= plan.batch_volumes <= max(1, min(budgets.gemm_max_volumes, n_volumes))
    assert plan.batch_volumes * gathered <= max(budgets.gemm_bytes, gathered)
    # a batch stops at the first chunk that reaches the aim; a short last one joins the batch
    # before it: at most 1.5 aims and a chunk of volumes gathered at once
    longest = max(chunks, default=0)
    for size in plan.batch_sizes:
        assert size < 1.5 * plan.batch_volumes + longest
    # slabs: within the slab budget unless at the fewest voxels a slab holds
    for size, dense, sparse in zip(
        plan.batch_sizes, plan.slab_widths, plan.sparse_slab_widths, strict=True
    ):
        assert dense == MIN_SLAB_WIDTH or dense * 8 * size <= budgets.slab_bytes
        assert sparse == MIN_SLAB_WIDTH or sparse * 8 * size <= 8 * budgets.slab_bytes
        assert dense >= MIN_SLAB_WIDTH and sparse >= dense
    # jobs: never empty, never more than the cap, several per thread when there are enough
    assert 1 <= plan.items_per_job <= MAX_ITEMS_PER_JOB
    assert plan.items_per_job == 1 or plan.items_per_job * 4 * slots <= n_items
    assert plan.runs_whole == (n_volumes * volume_nbytes <= budgets.whole_item_bytes)


def test_given_budgets_make_the_plan_a_pure_function():
    budgets = Budgets(chunk_bytes=1000, gemm_bytes=4000, gemm_max_volumes=8, slab_bytes=8192)
    plan = plan_extraction(100, 300, n_support=50, budgets=budgets)
    with dask.config.set({"daskmasker.chunk-bytes": 10, "daskmasker.gemm-max-volumes": 1}):
        assert plan_extraction(100, 300, n_support=50, budgets=budgets) == plan
        assert plan_extraction(100, 300, n_support=50) != plan  # the settings apply otherwise
    assert plan.time_chunks == (3,) * 32 + (2, 2) and plan.batch_volumes == 8


def test_the_settings_are_the_default_budgets():
    with dask.config.set({"daskmasker.chunk-bytes": 300, "daskmasker.slab-bytes": 4096}):
        plan = plan_extraction(10, 100)
    assert plan.time_chunks == (3, 3, 2, 2)
    assert plan.budgets.slab_bytes == 4096


def test_repr_shows_every_budget():
    budgets = Budgets(chunk_bytes=2**20, gemm_bytes=2**21, gemm_max_volumes=64, slab_bytes=2**15)
    text = repr(plan_extraction(600, 2**16, n_support=10_000, budgets=budgets))
    assert text.splitlines()[0] == "ExtractionPlan(600 volumes × 64.0 KiB)"
    for shown in ("38 × ≤ 16 volumes", "≤ 1.0 MiB each", "aiming at 26", "2.0 MiB of support"):
        assert shown in text
    assert "(16, 16, 16, ..., 15, 15)" in text  # long tuples elided


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_volumes=-1, volume_nbytes=4), "n_volumes=-1"),
        (dict(n_volumes=10, volume_nbytes=4, time_chunks=(5, 4)), r"\(5, 4\) do not split 10"),
        (dict(n_volumes=10, volume_nbytes=4, gathered_itemsize=0), "gathered_itemsize=0"),
    ],
)
def test_bad_shapes_are_refused_with_their_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_extraction(**kwargs)


def test_bad_budgets_are_refused_with_their_values():
    with pytest.raises(ValueError, match="slab_bytes must be an integer of at least 1, got 0"):
        Budgets(slab_bytes=0)
    assert not plan_extraction(1, 1, budgets=Budgets(whole_item_bytes=0)).runs_whole


@settings(max_examples=200, deadline=None)
@given(
    n_runs=st.integers(0, 20_000),
    n_frames=st.integers(1, 3000),
    n_regions=st.integers(1, 1024),
    chunk_bytes=st.integers(1, 2**28),
    keep_bytes=st.integers(0, 2**32),
)
def test_connectivity_plan_fits_its_budgets(n_runs, n_frames, n_regions, chunk_bytes, keep_bytes):
    plan = plan_connectivity(
        n_runs, n_frames, n_regions, chunk_bytes=chunk_bytes, keep_bytes=keep_bytes
    )
    per_run = 8 * n_regions * (n_frames + 2 * n_regions)
    assert sum(plan.run_chunks) == n_runs and all(c >= 1 for c in plan.run_chunks)
    assert plan.runs_per_chunk * per_run <= chunk_bytes or plan.runs_per_chunk == 1
    assert (plan.runs_per_chunk + 1) * per_run > chunk_bytes  # no smaller chunks than needed
    assert plan.keep_covariances == (8 * n_runs * n_regions**2 <= keep_bytes)


def test_connectivity_plan_reads_the_settings_and_refuses_bad_sizes():
    with dask.config.set(
        {
            "daskmasker.chunk-bytes": 8 * 64 * (200 + 128) * 5,
            "daskmasker.connectivity.keep-bytes": 0,
        }
    ):
        plan = plan_connectivity(12, 200, 64)
    assert plan.run_chunks == (5, 5, 2) and not plan.keep_covariances
    assert "recomputed at each of tangent's descent steps (> 0 B)" in repr(plan)
    assert plan_connectivity(12, 200, 64, chunk_runs=4, keep_bytes=2**30).run_chunks == (4, 4, 4)
    with pytest.raises(ValueError, match="n_regions=-1"):
        plan_connectivity(12, 200, -1)
    with pytest.raises(ValueError, match="chunk_runs must be at least 1, got 0"):
        plan_connectivity(12, 200, 64, chunk_runs=0)
