"""Task progress: one line per tenth of the tasks of a single computation, locally and on a
cluster (where a single graph is one submission, so only per-task reports can advance it)."""

from __future__ import annotations

import io
import re

import dask.array as da
import pytest
from distributed import Client, LocalCluster

from daskmasker.runtime.progress import task_progress


def percentages(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"^sum: +(\d+)% \(\d+/\d+ tasks", text, re.M)]


def one_graph():
    return da.ones(200, chunks=10).sum()  # 20 chunks: ~40 tasks in one graph


def test_local_scheduler_advances_per_task():
    out = io.StringIO()
    with task_progress("sum", stream=out) as line:
        assert one_graph().compute(scheduler="threads") == 200
    steps = percentages(out.getvalue())
    assert len(steps) >= 8 and steps == sorted(steps) and steps[-1] == 100, out.getvalue()
    assert re.search(rf"\nsum: {line.total} tasks done in [\d.]+ s\n$", out.getvalue())
    assert line.done == line.total > 20


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as c,
        Client(c) as client,
    ):
        yield client


def test_cluster_advances_per_task_and_cleans_up(client):
    out = io.StringIO()
    with task_progress("sum", client, stream=out) as line:
        assert client.compute(one_graph()).result() == 200
    steps = percentages(out.getvalue())
    assert len(steps) >= 8 and steps == sorted(steps) and steps[-1] == 100, out.getvalue()
    assert line.done == line.total > 20
    plugins = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))
    assert not [p for p in plugins if p.startswith("daskmasker-progress-")]


def test_cluster_counts_only_this_block_s_tasks(client):
    before = client.compute(one_graph())
    before.result()
    out = io.StringIO()
    with task_progress("sum", client, stream=out) as line:
        assert client.compute(da.ones(40, chunks=10).sum()).result() == 40
    assert 4 <= line.total < 20, line.total


def test_disabled_writes_nothing():
    out = io.StringIO()
    with task_progress("sum", enabled=False, stream=out) as line:
        one_graph().compute(scheduler="threads")
    assert line is None and out.getvalue() == ""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_line_is_redrawn_in_place():
    out = Terminal()
    with task_progress("sum", stream=out):
        one_graph().compute(scheduler="threads")
    text = out.getvalue()
    assert text.startswith("\rsum: ") and text.count("\n") == 1
    assert re.search(r"\r\x1b\[2Ksum: \d+ tasks done in [\d.]+ s\n$", text)


def test_cluster_does_not_wait_for_tasks_already_computed(client):
    """A graph on persisted data resubmits the persisted keys: they are not counted as to do."""
    held = client.persist(da.ones(200, chunks=10))
    held.sum().compute()
    with task_progress("sum", client, stream=io.StringIO()) as line:
        assert client.compute((held + 1).sum()).result() == 400
    assert line.done == line.total > 20


@pytest.mark.parametrize(("count", "said"), [(1, "1 report done"), (2, "2 reports done")])
def test_the_closing_line_counts_in_the_singular_for_one(count, said):
    from daskmasker.runtime.progress import ProgressLine

    out = io.StringIO()
    line = ProgressLine("write reports", stream=out, unit="reports")
    line.update(count, count)
    line.close()
    assert re.search(rf"^write reports: {said} in [\d.]+ s$", out.getvalue(), re.M), out.getvalue()
