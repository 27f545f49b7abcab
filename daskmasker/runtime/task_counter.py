"""The scheduler plugin behind the progress line of a cluster (see ``task_progress``).

A module of its own so that ``distributed`` is imported only when a progress line counts a
cluster's tasks: the local threaded scheduler's progress needs none of it.  The scheduler
unpickles :class:`TaskCounter` from here, so it needs daskmasker installed (without it the line
is not shown, with a warning).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from distributed.diagnostics.plugin import SchedulerPlugin

if TYPE_CHECKING:
    from dask.typing import Key
    from distributed.scheduler import Scheduler


class TaskCounter(SchedulerPlugin):
    """Scheduler plugin: counts one client's tasks and logs ``(done, total)`` on a topic.

    A task counts once, when it first reaches memory or fails (a recomputation after a lost
    worker does not count again); tasks already in memory when submitted are not counted.
    """

    def __init__(self, client_id: str, topic: str) -> None:
        self.client_id, self.topic, self.name = client_id, topic, topic
        self.pending: set[Key] = set()
        self.done = self.total = 0
        self.scheduler: Scheduler | None = None

    async def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def update_graph(
        self, scheduler: Scheduler, *, client: str, tasks: Iterable[Key], **kwargs: Any
    ) -> None:
        if client != self.client_id:
            return
        for key in tasks:
            state = scheduler.tasks.get(key)
            if key not in self.pending and (state is None or state.state != "memory"):
                self.pending.add(key)
                self.total += 1
        scheduler.log_event(self.topic, (self.done, self.total))

    def transition(self, key: Key, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if key in self.pending and finish in ("memory", "erred", "forgotten"):
            self.pending.discard(key)
            self.done += 1
            assert self.scheduler is not None  # set by start(), before any transition
            self.scheduler.log_event(self.topic, (self.done, self.total))


def new_topic() -> str:
    """A topic (and plugin name) of its own for one progress line."""
    return f"daskmasker-progress-{uuid.uuid4().hex}"


def counts(dask_scheduler: Scheduler, name: str) -> tuple[int, int]:
    """``(done, total)`` of the plugin ``name``, run on the scheduler."""
    plugin = cast(TaskCounter, dask_scheduler.plugins[name])  # task_progress registered it
    return plugin.done, plugin.total
