"""nilearn's ConnectivityMeasure in numpy and on Dask: every kind, per run, equal to nilearn's
within 1e-10 on runs of different lengths padded with NaN; Ledoit-Wolf equal to scikit-learn's."""

from __future__ import annotations

import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nilearn.connectome import ConnectivityMeasure, sym_matrix_to_vec
from nilearn.connectome.connectivity_matrices import _geometric_mean
from sklearn.covariance import EmpiricalCovariance, LedoitWolf

from daskmasker.compute import connectivity as conn
from daskmasker.compute.connectivity_graph import lazy_connectivity
from daskmasker.compute.plan import runs_per_chunk

from helpers import correlated_runs

LENGTHS = [30, 45, 60, 25, 52, 40, 33]
TOL = 1e-10


def _padded(runs):
    n_time = max(len(r) for r in runs)
    out = np.full((len(runs), n_time, runs[0].shape[1]), np.nan)
    for i, run in enumerate(runs):
        out[i, : len(run)] = run
    return out


def _lazy(runs, kind, chunk_runs=3, **kwargs):
    signals = da.from_array(_padded(runs), chunks=(2, -1, -1))
    names = np.array([f"run{i}" for i in range(len(runs))])
    frames = np.array([len(r) for r in runs])
    return lazy_connectivity(signals, frames, names, kind, chunk_runs=chunk_runs, **kwargs)


@settings(max_examples=40, deadline=None)
@given(
    n_samples=st.integers(2, 80),
    n_features=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
)
def test_ledoit_wolf_is_scikit_learns(n_samples, n_features, seed, scale):
    x = np.random.default_rng(seed).standard_normal((n_samples, n_features)) * scale + 3
    expected = LedoitWolf(store_precision=False).fit(x).covariance_
    np.testing.assert_allclose(conn.ledoit_wolf(x), expected, rtol=1e-12, atol=1e-14 * scale**2)


def test_empirical_covariance_is_scikit_learns():
    x = correlated_runs([40], 6)[0]
    expected = EmpiricalCovariance().fit(x).covariance_
    np.testing.assert_allclose(conn.empirical_covariance(x), expected, rtol=1e-14)


@pytest.mark.parametrize("kind", conn.KINDS)
def test_run_matrix_is_nilearns_for_each_run(kind):
    runs = correlated_runs(LENGTHS, 7)
    measure = ConnectivityMeasure(kind="covariance" if kind == "tangent" else kind)
    expected = measure.fit_transform(runs)
    got = np.stack([conn.run_matrix(run, kind) for run in runs])
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL * np.abs(expected).max())


def test_geometric_mean_and_whitening_are_nilearns():
    covariances = np.stack([conn.ledoit_wolf(run) for run in correlated_runs(LENGTHS, 7)])
    expected = _geometric_mean(list(covariances), max_iter=30, tol=1e-7)
    gmean = conn.geometric_mean(covariances)
    np.testing.assert_allclose(gmean, expected, rtol=0, atol=TOL * np.abs(expected).max())
    measure = ConnectivityMeasure(kind="tangent").fit(correlated_runs(LENGTHS, 7))
    np.testing.assert_allclose(conn.whitening(gmean), measure.whitening_, rtol=0, atol=TOL)


def test_geometric_mean_warns_as_nilearn_when_it_does_not_converge():
    covariances = np.stack([conn.ledoit_wolf(run) for run in correlated_runs(LENGTHS, 7)])
    state = conn.initial_state(covariances.mean(0))
    with pytest.warns(UserWarning, match="Maximum number of iterations 1 reached"):
        conn.descent_step(state, conn.whitened_log_sum(covariances, state), 7, max_iter=1)


@pytest.mark.parametrize("discard_diagonal", [False, True])
def test_sym_matrix_to_vec_is_nilearns(discard_diagonal):
    matrices = np.stack([np.cov(run.T) for run in correlated_runs(LENGTHS[:3], 5)])
    np.testing.assert_array_equal(
        conn.sym_matrix_to_vec(matrices, discard_diagonal),
        sym_matrix_to_vec(matrices, discard_diagonal),
    )


@pytest.mark.parametrize("kind", conn.KINDS)
@pytest.mark.parametrize(
    ("vectorize", "discard_diagonal"), [(False, False), (True, False), (True, True)]
)
def test_lazy_connectivity_is_nilearns_on_padded_runs(kind, vectorize, discard_diagonal):
    runs = correlated_runs(LENGTHS, 7, seed=1)
    measure = ConnectivityMeasure(kind=kind, vectorize=vectorize, discard_diagonal=discard_diagonal)
    expected = measure.fit_transform(runs)
    lazy = _lazy(runs, kind, vectorize=vectorize, discard_diagonal=discard_diagonal)
    matrices, mean = dask.compute(lazy.matrices, lazy.mean)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(matrices, expected, rtol=0, atol=TOL * scale)
    np.testing.assert_allclose(mean, measure.mean_, rtol=0, atol=TOL * np.abs(mean).max())
    if kind == "tangent":
        np.testing.assert_allclose(lazy.whitening.compute(), measure.whitening_, atol=TOL)
    else:
        assert lazy.whitening is None


@pytest.mark.parametrize("chunk_runs", [1, 2, 7])
@pytest.mark.parametrize("keep", [True, False])
def test_tangent_is_nilearns_whatever_the_chunks_and_whether_covariances_are_kept(chunk_runs, keep):
    runs = correlated_runs(LENGTHS, 6, seed=2)
    measure = ConnectivityMeasure(kind="tangent")
    expected = measure.fit_transform(runs)
    with dask.config.set({"daskmasker.connectivity.keep-bytes": 2**40 if keep else 0}):
        lazy = _lazy(runs, "tangent", chunk_runs=chunk_runs)
    matrices, mean = dask.compute(lazy.matrices, lazy.mean)
    np.testing.assert_allclose(matrices, expected, atol=TOL * np.abs(expected).max())
    np.testing.assert_allclose(mean, measure.mean_, atol=TOL * np.abs(mean).max())


def test_recomputed_covariances_read_the_signals_once_per_step():
    """Not kept, the covariances are recomputed from fresh reads in every descent step (31
    passes and the final one), so no step holds more than its chunks."""
    runs = correlated_runs(LENGTHS, 5, seed=3)
    reads = []

    def counted(block):
        reads.append(block.shape[0])
        return block

    signals = da.from_array(_padded(runs), chunks=(7, -1, -1)).map_blocks(
        counted, meta=np.empty((0, 0, 0))
    )
    with dask.config.set({"daskmasker.connectivity.keep-bytes": 0}):
        lazy = lazy_connectivity(signals, np.array(LENGTHS), np.arange(7), "tangent")
    assert reads == []  # building the graph reads nothing
    lazy.matrices.compute()
    assert len(reads) == 1 + conn.MAX_ITER + 1
    reads.clear()
    with dask.config.set({"daskmasker.connectivity.keep-bytes": 2**40}):
        lazy_connectivity(signals, np.array(LENGTHS), np.arange(7), "tangent").matrices.compute()
    assert len(reads) == 1


def test_padding_is_never_read():
    """Values past a run's n_frames (here: huge, not NaN) change nothing."""
    runs = correlated_runs(LENGTHS, 5, seed=4)
    padded = _padded(runs)
    padded[np.isnan(padded)] = 1e6
    lazy = lazy_connectivity(
        da.from_array(padded, chunks=(3, -1, -1)), np.array(LENGTHS), np.arange(7), "covariance"
    )
    expected = ConnectivityMeasure(kind="covariance").fit_transform(runs)
    np.testing.assert_allclose(lazy.matrices.compute(), expected, atol=TOL * 100)


def test_bad_runs_are_named():
    runs = correlated_runs(LENGTHS[:3], 4)
    padded = _padded(runs)
    padded[1, 5, 2] = np.nan
    lazy = lazy_connectivity(
        da.from_array(padded), np.array(LENGTHS[:3]), np.array(["a", "b", "c"]), "correlation"
    )
    with pytest.raises(ValueError, match=r"run 'b' has missing values \(NaN\).*\[2\]"):
        lazy.matrices.compute()
    short = lazy_connectivity(da.from_array(padded), np.array([1, 3, 3]), np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="run 'a' has n_frames=1"):
        short.matrices.compute()
    tangent = lazy_connectivity(
        da.from_array(_padded(runs)),
        np.array(LENGTHS[:3]),
        np.array(["a", "b", "c"]),
        "tangent",
        estimator=lambda x: np.cov(x.T) * (-1 if len(x) == LENGTHS[2] else 1),
    )
    with pytest.raises(ValueError, match="run 'c' is not symmetric positive definite"):
        tangent.mean.compute()
    with pytest.raises(ValueError, match="group of subjects"):
        lazy_connectivity(da.from_array(padded[:1]), np.array([30]), np.array(["a"]), "tangent")
    with pytest.raises(ValueError, match="kind must be one of"):
        lazy_connectivity(da.from_array(padded), np.array(LENGTHS[:3]), np.arange(3), "pearson")


def test_runs_per_chunk_fits_the_budget():
    assert runs_per_chunk(200, 64, budget=8 * 64 * (200 + 128) * 5) == 5
    assert runs_per_chunk(10_000, 1024, budget=1) == 1


def test_no_warning_on_converging_descent():
    runs = correlated_runs(LENGTHS, 5, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _lazy(runs, "tangent").mean.compute()


def _merges(collection) -> dict[str, int]:
    """The tasks that merge several outputs of one layer (a tree's combine tasks), counted by
    the name of their layer."""
    graph = collection.__dask_graph__()
    named = {key: key[0] if isinstance(key, tuple) else key for key in graph}
    merges: dict[str, int] = {}
    for key, dependencies in graph.get_all_dependencies().items():
        sources = [named[d] for d in dependencies]
        if len(sources) >= 2 and len(set(sources)) == 1:
            merges[named[key]] = merges.get(named[key], 0) + 1
    return merges


def _builder_layer(name: str, reductions: tuple[str, ...]) -> bool:
    """A layer of the builder's tree: ``{reduction}-partial-*`` or ``{reduction}-aggregate-*``."""
    return any(name.startswith((f"{r}-partial-", f"{r}-aggregate-")) for r in reductions)


@pytest.mark.parametrize("keep", [True, False])
def test_every_combine_of_the_geometric_mean_is_the_builders(keep):
    """The descent's start and its 30 steps are each one tree of the reduction builder
    (``combine_partials``): no other task of the graph merges partials.  The signals come
    chunked as planned, so no rechunking merges blocks either."""
    runs = correlated_runs(LENGTHS, 5, seed=6)
    signals = da.from_array(_padded(runs), chunks=(3, -1, -1))
    with dask.config.set({"daskmasker.connectivity.keep-bytes": 2**40 if keep else 0}):
        lazy = lazy_connectivity(signals, np.array(LENGTHS), np.arange(7), "tangent", chunk_runs=3)
    merges = _merges(lazy.mean)
    reductions = ("gmean-start", "gmean-step")
    assert [name for name in merges if not _builder_layer(name, reductions)] == []
    aggregates = [name for name in merges if "-aggregate-" in name]
    assert (
        sorted(name.split("-aggregate-")[0] for name in aggregates)
        == ["gmean-start"] + ["gmean-step"] * conn.MAX_ITER
    )
    assert sum(merges.values()) == 1 + conn.MAX_ITER  # 3 chunks of runs: one level each
    correlation = lazy_connectivity(signals, np.array(LENGTHS), np.arange(7), chunk_runs=3)
    mean_merges = _merges(correlation.mean)
    assert mean_merges and all(_builder_layer(n, ("connectivity-mean",)) for n in mean_merges)
    # negative control: a tree summed by hand (here by dask.delayed) is seen
    parts = [dask.delayed(np.ones)(3, dask_key_name=("part", i)) for i in range(3)]
    hand = dask.delayed(sum)(parts, dask_key_name="hand-sum")
    assert _merges(hand) == {"hand-sum": 1}
    assert not _builder_layer("hand-sum", reductions)


def test_steps_after_convergence_cost_nothing(monkeypatch):
    """Once the descent has converged, the unrolled steps left pass their state through: the
    eigen-decompositions of the runs are those of the steps taken, plus the final whitening."""
    runs = correlated_runs(LENGTHS, 5, seed=7)
    covariances = np.stack([conn.ledoit_wolf(run) for run in runs])
    state, steps = conn.initial_state(covariances.mean(0)), 0
    while not state.done:
        state = conn.descent_step(state, conn.whitened_log_sum(covariances, state), 7)
        steps += 1
    assert steps < conn.MAX_ITER  # negative control: there are steps to skip
    calls = []
    real = conn.map_eigenvalues

    def counted(function, symmetric):
        calls.append(len(symmetric) if symmetric.ndim == 3 else 0)
        return real(function, symmetric)

    monkeypatch.setattr(conn, "map_eigenvalues", counted)
    lazy = _lazy(runs, "tangent", chunk_runs=3)
    dask.compute(lazy.matrices, lazy.mean, scheduler="sync")
    batched = [n for n in calls if n]
    assert len(batched) == 3 * steps + 3  # 3 chunks at each step taken, and the final vectors
    assert sum(batched) == 7 * (steps + 1)
