"""Where the graph runs: the embedded local scheduler, a LocalCluster, or any Dask cluster.

With no option, Dask's threaded scheduler runs in the calling process (no setup).  ``workers=N``
starts a :class:`distributed.LocalCluster` of N single-threaded worker processes; ``scheduler`` (an
address such as ``tcp://10.0.0.5:8786``) or ``scheduler_file`` (as written by
``dask scheduler --scheduler-file``) connects to an existing deployment (SLURM, Kubernetes...).
A client that is already active in the process is used as Dask always does.

Warnings that tasks emit on a distributed worker would stay in the worker's log;
:func:`forward_warnings` sends them to the scheduler's event log and the computes here emit them
again in the client, so that a cluster warns as the local scheduler does.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import dask
from distributed import Client, LocalCluster

WORKER_ENVIRON = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TOP_PAD_": str(64 * 2**20)}
"""Environment of the worker processes daskmasker starts (a deployment sets it too, see
``deploy/``): glibc's allocator keeps chunks in the heap.  Dask's nannies set
``MALLOC_TRIM_THRESHOLD_=65536`` (freed memory goes back to the OS at once), which also freezes
glibc's mmap threshold at 128 KiB:

* ``MALLOC_MMAP_THRESHOLD_``, 32 MiB (glibc's largest): every chunk (up to 32 MiB) was a fresh
  ``mmap`` whose pages faulted in on first touch; served from the heap, system time of a
  4 × 200-volume batch fell from ~0.95 s to ~0.15 s per worker and the batch ran 1.35× faster.
* ``MALLOC_TOP_PAD_``, 64 MiB (two chunks): the heap's top was still given back whenever a chunk
  at the top was freed, and faulted in again by the next one, 25,000–86,000 page faults per
  image; keeping 64 MiB at the top leaves a few hundred per batch, halves system time again and
  gives both workers of a batch the same speed (one of them took 3× the faults of the other).

Dask's trim threshold stays: memory beyond the pad still goes back to the OS.  A value in
Dask's ``distributed.nanny.pre-spawn-environ`` config wins, and an exported one over both."""


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | None = "auto",
) -> Iterator[Client | None]:
    """Context manager yielding the client to run on, or None for the local threaded scheduler.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler.
    scheduler_file : str, optional
        Path of a scheduler file.
    workers : int, optional
        Start a local cluster of this many worker processes.
    threads_per_worker : int, default=1
    memory_limit : str, optional
        Per-worker memory limit for a local cluster.

    Examples
    --------
    >>> with dask_client(workers=2) as client:  # doctest: +SKIP
    ...     masker.fit_transform(img)
    """
    chosen = [x is not None for x in (scheduler, scheduler_file, workers)]
    if sum(chosen) > 1:
        raise ValueError("give at most one of scheduler, scheduler_file and workers")
    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
    elif scheduler_file is not None:
        with Client(scheduler_file=scheduler_file) as client:
            yield client
    elif workers is not None:
        if int(workers) < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        # set before each worker process starts (glibc reads it once, at its first malloc)
        configured = dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}
        environ = {**WORKER_ENVIRON, **configured}
        with (
            dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
            LocalCluster(
                n_workers=int(workers),
                threads_per_worker=threads_per_worker,
                processes=True,
                dashboard_address=":0",
                memory_limit=memory_limit,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
    else:
        yield None


def active_client() -> Client | None:
    """The distributed client Dask would use now, if any."""
    try:
        from distributed import default_client

        return default_client()
    except ValueError:
        return None


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
    directly.
    """

    @functools.wraps(func)
    def task(*args, collection: str, **kwargs):
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


def reemit_warnings(client: Client, names: set[str], stacklevel: int = 2) -> None:
    """Emit in the client the warnings that the :func:`forward_warnings` tasks of the Dask
    collections named ``names`` logged, each collection's latest run."""
    latest = {}
    for _, message in client.get_events(WARNINGS_TOPIC):
        if message["collection"] in names:
            latest[message["collection"]] = message["warnings"]
    for records in latest.values():
        for module, qualname, text in records:
            warnings.warn(text, _warning_category(module, qualname), stacklevel=stacklevel + 1)


def _warning_category(module: str, qualname: str) -> type[Warning]:
    try:
        category = functools.reduce(getattr, qualname.split("."), importlib.import_module(module))
    except (ImportError, AttributeError):
        return UserWarning
    return category if isinstance(category, type) and issubclass(category, Warning) else UserWarning


def compute_images(arrays: Iterable, num_workers: int | None = None, pin: bool = True) -> list:
    """Compute independent per-image Dask arrays, emitting their tasks' warnings here.

    Locally they run in one Dask computation.  On a cluster each image runs on one worker
    (:func:`compute_per_worker`) when ``pin`` (a ``.nii.gz`` is one sequential stream), or
    wherever the scheduler places its tasks otherwise.  ``arrays`` may be a generator: pinned
    images are then built as workers free up.
    """
    client = active_client()
    if client is None:
        return list(dask.compute(*arrays, num_workers=num_workers))
    names = set()

    def named():
        for array in arrays:
            names.add(array.name)
            yield array

    if pin:
        done = {index: future.result() for index, future in compute_per_worker(client, named())}
        values = [done[index] for index in range(len(done))]
    else:
        values = client.gather(client.compute(list(named())))
    reemit_warnings(client, names, stacklevel=3)
    return values


def compute_per_worker(
    client: Client, jobs: Iterable, per_worker: int | None = None
) -> Iterator[tuple[int, Any]]:
    """Compute independent jobs on a cluster, each job's tasks on one worker; yield as they end.

    A ``.nii.gz`` is read as one sequential stream per process, so a job whose tasks were spread
    over several workers would inflate its file again on each of them.  Each job is pinned to
    one worker (loosely: ``allow_other_workers`` lets the scheduler move it if that worker is
    lost), and a worker gets its next job when one of its own finishes.

    Parameters
    ----------
    client : distributed.Client
    jobs : iterable
        Each job is what ``client.compute`` accepts (a collection or a list of them).  Jobs are
        taken from the iterable as workers free up, one ahead: a generator builds each graph
        while the jobs before it run, so a batch of many images starts with its first graph, not
        after all of them, a worker's next job is ready when it frees up, and the client holds
        only a few.
    per_worker : int, optional
        Jobs running at a time on a worker; by default its number of threads.  A single-threaded
        worker interleaving two images ran them 4–8 % slower than one after the other (the
        caches and memory bandwidth are shared; the next job's submission costs milliseconds).

    Yields
    ------
    (index, future)
        The job's position in ``jobs`` and its finished future (``future.result()`` gives the
        value or raises the job's error), in completion order.
    """
    from distributed import as_completed

    info = client.scheduler_info(n_workers=-1)["workers"]  # all of them, not the first 5
    workers = sorted(info) or [None]
    slots = {w: per_worker or (info[w].get("nthreads", 1) if w else 1) for w in workers}
    pending = enumerate(jobs)
    ahead = None  # the next job, built while the workers run
    running = {}
    completed = as_completed()

    def submit(worker) -> None:
        nonlocal ahead
        taken, ahead = ahead or next(pending, None), None
        if taken is None:
            return
        index, job = taken
        where = {} if worker is None else {"workers": [worker], "allow_other_workers": True}
        future = client.compute(job, **where)
        running[future] = (index, worker)
        completed.add(future)

    for rank in range(max(slots.values())):  # round robin: the first jobs go to every worker
        for worker in workers:
            if rank < slots[worker]:
                submit(worker)
    ahead = next(pending, None)
    for future in completed:
        index, worker = running.pop(future)
        submit(worker)
        yield index, future
        # built once the scheduler has dispatched the job just submitted (it shares this
        # process, and a graph built meanwhile delayed that job's start by ~0.1 s)
        ahead = ahead or next(pending, None)
