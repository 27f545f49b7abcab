"""The scheduler plugin behind the progress line of a cluster (see ``task_progress``).

A module of its own so that ``distributed`` is imported only when a progress line counts a
cluster's tasks: the local threaded scheduler's progress needs none of it.  The scheduler
unpickles :class:`TaskCounter` from here, so it needs daskmasker installed (without it the line
is not shown, with a warning).
"""

from __future__ import annotations

import uuid
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin


class TaskCounter(SchedulerPlugin):
    """Scheduler plugin: counts one client's tasks and logs ``(done, total)`` on a topic.

    A task counts once, when it first reaches memory or fails (a recomputation after a lost
    worker does not count again); tasks already in memory when submitted are not counted.
    """

    def __init__(self, client_id: str, topic: str):
        self.client_id, self.topic, self.name = client_id, topic, topic
        self.pending: set = set()
        self.done = self.total = 0
        self.scheduler = None

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler

    def update_graph(self, scheduler, *, client: str, tasks, **kwargs: Any) -> None:
        if client != self.client_id:
            return
        for key in tasks:
            state = scheduler.tasks.get(key)
            if key not in self.pending and (state is None or state.state != "memory"):
                self.pending.add(key)
                self.total += 1
        scheduler.log_event(self.topic, (self.done, self.total))

    def transition(self, key, start, finish, *args: Any, **kwargs: Any) -> None:
        if key in self.pending and finish in ("memory", "erred", "forgotten"):
            self.pending.discard(key)
            self.done += 1
            self.scheduler.log_event(self.topic, (self.done, self.total))


def new_topic() -> str:
    """A topic (and plugin name) of its own for one progress line."""
    return f"daskmasker-progress-{uuid.uuid4().hex}"


def counts(dask_scheduler, name: str) -> tuple[int, int]:
    """``(done, total)`` of the plugin ``name``, run on the scheduler."""
    plugin = dask_scheduler.plugins[name]
    return plugin.done, plugin.total
