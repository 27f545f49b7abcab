"""Progress of Dask computations on stderr, task by task (so chunk by chunk), local or on a cluster.

:func:`task_progress` counts the tasks of every computation run inside it: with a local
scheduler through a :class:`dask.callbacks.Callback`, on a cluster through a scheduler plugin
that reports each task of this client as it finishes (an event the client subscribes to).
Neither needs the code under it to know: ``to_zarr``, ``run_batch`` and the masker's own
computations advance the same line.

On a terminal the line is redrawn in place; otherwise (a log file, a test) a line is written each
time another tenth of the tasks known so far is done, so the output stays short and readable.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from dask.callbacks import Callback

if TYPE_CHECKING:
    from dask.typing import Key
    from distributed import Client

logger = logging.getLogger(__name__)


class ProgressLine:
    """Draw ``label: 40% (48/120 tasks, 1.3 s)`` as tasks finish.

    Parameters
    ----------
    label : str
    stream : text file, optional
        Default ``sys.stderr`` (looked up when the line is made).
    unit : str, default="tasks"
        What is counted (``volumes`` for a step that is not a Dask computation).
    """

    def __init__(self, label: str, stream: TextIO | None = None, unit: str = "tasks") -> None:
        self.label, self.unit = label, unit
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = self.total = 0
        self.start = time.perf_counter()
        self._drawn = 0
        self._last_draw = 0.0
        self._lock = threading.Lock()

    def update(self, done: int, total: int) -> None:
        """Record the counts; draw if 0.1 s passed (a terminal) or the tenth of the tasks done
        changed (otherwise)."""
        with self._lock:
            self.done, self.total = done, max(total, done)
            if self.tty:
                now = time.perf_counter()
                if now - self._last_draw >= 0.1:
                    self._last_draw = now
                    self._write("\r" + self._text())
            else:
                step = 10 * self.done // self.total if self.total else 0
                if self.done and step != self._drawn:
                    self._drawn = step
                    self._write(self._text() + "\n")

    def close(self) -> None:
        """The final line: how many tasks ran, in how long."""
        with self._lock:
            elapsed = time.perf_counter() - self.start
            end = "\r\033[2K" if self.tty else ""
            unit = self.unit.removesuffix("s") if self.done == 1 else self.unit  # "1 report"
            self._write(f"{end}{self.label}: {self.done} {unit} done in {elapsed:.1f} s\n")

    def _text(self) -> str:
        percent = 100 * self.done // self.total if self.total else 0
        elapsed = time.perf_counter() - self.start
        return (
            f"{self.label}: {percent:3d}% ({self.done}/{self.total} {self.unit}, {elapsed:.1f} s)"
        )

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except ValueError:  # the stream was closed under us (interpreter shutdown)
            pass


@contextmanager
def phase(label: str, enabled: bool = True, unit: str = "tasks") -> Iterator[ProgressLine | None]:
    """A named phase that is not one Dask computation (generating data, fitting, writing
    reports): its own progress line, which the caller advances in ``unit``, closed with the
    phase's duration.

    Yields
    ------
    ProgressLine or None
        None when not ``enabled`` (``-q``, ``--no-progress``).
    """
    line = ProgressLine(label, unit=unit) if enabled else None
    try:
        yield line
    finally:
        if line is not None:
            line.close()


class _LocalCounter(Callback):
    """Counts the tasks of local-scheduler computations (threads, processes, synchronous)."""

    def __init__(self, line: ProgressLine) -> None:
        super().__init__()
        self.line = line
        self.done = self.total = 0
        self.lock = threading.Lock()

    def _start_state(self, dsk: Mapping, state: dict[str, Any]) -> None:
        with self.lock:
            self.total += sum(len(state[k]) for k in ("ready", "waiting", "running"))
            self.line.update(self.done, self.total)

    def _posttask(
        self, key: Key, result: Any, dsk: Mapping, state: dict[str, Any], worker_id: Any
    ) -> None:
        with self.lock:
            self.done += 1
            self.line.update(self.done, self.total)


@contextmanager
def task_progress(
    label: str, client: Client | None = None, enabled: bool = True, stream: TextIO | None = None
) -> Iterator[ProgressLine | None]:
    """Show the progress of the Dask computations run inside the block.

    Parameters
    ----------
    label : str
        Printed at the start of each line (``convert``, ``extract``...).
    client : distributed.Client, optional
        Count the tasks this client submits to its cluster; None counts the local scheduler's.
    enabled : bool, default=True
        False shows nothing (``-q`` and ``--no-progress``).
    stream : text file, optional
        Default ``sys.stderr``.

    Yields
    ------
    ProgressLine or None
        The line (its ``done`` and ``total`` counts), None when disabled.

    Examples
    --------
    >>> import dask.array as da, io
    >>> out = io.StringIO()
    >>> with task_progress("sum", stream=out):
    ...     _ = da.ones(10, chunks=2).sum().compute(scheduler="threads")
    >>> out.getvalue().splitlines()[-1].startswith("sum: ")
    True
    """
    if not enabled:
        yield None
        return
    line = ProgressLine(label, stream)
    if client is None:
        try:
            with _LocalCounter(line):
                yield line
        finally:
            line.close()
        return
    from daskmasker.runtime.task_counter import TaskCounter, counts, new_topic

    topic = new_topic()
    try:
        client.subscribe_topic(topic, lambda event: line.update(*event[1]))
        client.register_plugin(TaskCounter(client.id, topic), name=topic)
    except Exception as exc:  # e.g. a scheduler without daskmasker: run without the line
        logger.warning("no progress shown: the scheduler did not take its plugin (%s)", exc)
        yield None
        return
    try:
        yield line
    finally:
        try:  # a diagnostic: a cluster gone at the end must not hide the run's own outcome
            client.unsubscribe_topic(topic)
            line.update(*client.run_on_scheduler(counts, name=topic))
            client.unregister_scheduler_plugin(topic)
        except Exception as exc:
            logger.debug("progress plugin cleanup failed: %s", exc)
        line.close()
