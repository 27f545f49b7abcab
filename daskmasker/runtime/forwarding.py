"""Warnings of tasks that run on distributed workers, emitted again in the client.

Warnings that tasks emit on a distributed worker would stay in the worker's log;
:func:`forward_warnings` sends them to the scheduler's event log and :func:`reemit_warnings`
emits them again in the client, so that a cluster warns as the local scheduler does.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daskmasker.stacklevel import find_stack_level

if TYPE_CHECKING:
    from distributed import Client

WARNINGS_TOPIC = "daskmasker-warnings"
_RECORDING = threading.Lock()  # catch_warnings is process-wide: one recording task at a time


def forward_warnings(func: Callable) -> Callable:
    """Decorate a task function so that its warnings reach the client on a distributed cluster.

    The decorated function takes one more keyword, ``collection``: the name of the Dask
    collection whose only block it computes.  On a worker, the warnings the task emits are
    recorded and, if there are any, logged to the scheduler under :data:`WARNINGS_TOPIC` with
    that name, and :func:`reemit_warnings` emits them in the client.  The name is a token of the
    task's inputs, so a rerun logs the same warnings again (the latest is emitted, once).
    Elsewhere (the local threaded scheduler) the task runs as is and its warnings are emitted
    directly; a process that has not imported ``distributed`` is no worker, and does not
    import it to find out.
    """

    @functools.wraps(func)
    def task(*args: Any, collection: str, **kwargs: Any) -> Any:
        if "distributed" not in sys.modules:
            return func(*args, **kwargs)
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError:
            return func(*args, **kwargs)
        with _RECORDING, warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            result = func(*args, **kwargs)
        emitted = [
            [w.category.__module__, w.category.__qualname__, str(w.message)] for w in records
        ]
        if emitted:  # most tasks warn nothing: the scheduler's event log stays small
            worker.log_event(WARNINGS_TOPIC, {"collection": collection, "warnings": emitted})
        return result

    return task


def reemit_warnings(client: Client, names: set[str]) -> None:
    """Emit in the client the warnings that the :func:`forward_warnings` tasks of the Dask
    collections named ``names`` logged, each collection's latest run."""
    latest = {}
    for _, message in client.get_events(WARNINGS_TOPIC):
        if message["collection"] in names:
            latest[message["collection"]] = message["warnings"]
    for records in latest.values():
        for module, qualname, text in records:
            warnings.warn(text, _warning_category(module, qualname), stacklevel=find_stack_level())


def _warning_category(module: str, qualname: str) -> type[Warning]:
    try:
        category = functools.reduce(getattr, qualname.split("."), importlib.import_module(module))
    except (ImportError, AttributeError):
        return UserWarning
    return category if isinstance(category, type) and issubclass(category, Warning) else UserWarning
