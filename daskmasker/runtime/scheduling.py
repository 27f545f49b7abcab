"""Computing many independent images: locally in one computation, on a cluster one per worker."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from daskmasker.runtime.client import active_client, compute, tune_local_allocator
from daskmasker.runtime.forwarding import reemit_warnings

if TYPE_CHECKING:
    from distributed import Client, Future

    from daskmasker.compute.projection import Share


def compute_images(arrays: Iterable, num_workers: int | None = None, pin: bool = True) -> list:
    """Compute independent per-image Dask arrays, emitting their tasks' warnings here.

    Locally they run in one Dask computation.  On a cluster each image runs on one worker
    (:func:`compute_per_worker`) when ``pin`` (a ``.nii.gz`` is one sequential stream), or
    wherever the scheduler places its tasks otherwise.  ``arrays`` may be a generator: pinned
    images are then built as workers free up.
    """
    client = active_client()
    if client is None:
        tune_local_allocator()
        return list(compute(*arrays, num_workers=num_workers))
    names = set()

    def named() -> Iterator[Any]:
        for array in arrays:
            names.add(array.name)
            yield array

    if pin:
        done = {index: future.result() for index, future in compute_per_worker(client, named())}
        values = [done[index] for index in range(len(done))]
    else:
        values = client.gather(client.compute(list(named())))
    reemit_warnings(client, names)
    return values


def compute_per_worker(
    client: Client, jobs: Iterable, per_worker: int | None = None
) -> Iterator[tuple[int, Future]]:
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
        only a few.  Workers that join later (SLURM jobs starting) get their jobs as they
        appear (looked for at most once a second, when a job ends).
    per_worker : int, optional
        Jobs running at a time on a worker; by default its number of threads.  A single-threaded
        worker interleaving two images runs them slower than one after the other (the caches
        and memory bandwidth are shared; the next job's submission costs little).

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

    def submit(worker: str | None) -> None:
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
    last_look = time.monotonic()
    for future in completed:
        index, worker = running.pop(future)
        submit(worker)
        if time.monotonic() - last_look > 1.0:  # workers that joined since (SLURM jobs)
            last_look = time.monotonic()
            joined = client.scheduler_info(n_workers=-1)["workers"]
            for new in sorted(set(joined) - set(slots)):
                slots[new] = per_worker or joined[new].get("nthreads", 1)
                for _ in range(slots[new]):
                    submit(new)
        yield index, future
        # built once the scheduler has dispatched the job just submitted (it shares this
        # process, and a graph built meanwhile delayed that job's start by ~0.1 s)
        ahead = ahead or next(pending, None)


def _upload(client: Client, values: list) -> list[Future]:
    """Futures of tasks holding ``values``: the one upload by which they travel to a cluster
    (tasks then refer to them, nothing large is embedded again).  Distributed's warning on a
    large graph ("consider ... futures") is off for it: this upload is what it recommends."""
    import dask

    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1 PiB"}):
        return client.compute(values)


def held(client: Client, value: Any, prefix: str) -> Future:
    """A future of ``value`` that survives the loss of any worker: the result of a task that
    holds it, computed again elsewhere if its worker dies.  A scattered value (even broadcast:
    Dask's active memory manager drops the extra replicas) is lost for good with the worker
    holding it, and every job needing it is cancelled ("lost dependencies"): a SLURM worker job
    cancelled mid-batch failed all the batch's remaining runs so."""
    import uuid

    import dask

    (future,) = _upload(client, [dask.delayed(value, name=f"{prefix}-{uuid.uuid4().hex}")])
    return future


def share_blocks(blocks: np.ndarray, client: Client) -> np.ndarray:
    """The maps blocks held on a distributed ``client``'s workers, as futures.

    Locally (threads) tasks refer to the blocks in memory and graphs tokenize them by identity.
    With a distributed client tasks refer to futures, so no large constant is embedded in each
    graph and the maps travel once per worker.  The futures are of tasks that hold the blocks
    (not of scattered data): Dask's active memory manager keeps one replica of a key, and a
    scattered key whose worker dies is lost for good (every job needing it was cancelled,
    "already forgotten"), while a task's key is computed again on another worker.
    """
    import uuid

    import dask

    token = uuid.uuid4().hex
    held = [
        dask.delayed(block, name=f"maps-block-{token}-{i}") for i, block in enumerate(blocks.flat)
    ]
    futures = _upload(client, held)
    shared = np.empty(blocks.shape, dtype=object)
    for where, future in zip(np.ndindex(*blocks.shape), futures, strict=True):
        shared[where] = future
    return shared


def maps_sharing(client: Client | None = None) -> Share | None:
    """The :data:`~daskmasker.compute.projection.Share` of the active (or given) client: None
    locally, a broadcast scatter on a distributed cluster."""
    client = client if client is not None else active_client()
    if client is None:
        return None
    return client.id, functools.partial(share_blocks, client=client)
