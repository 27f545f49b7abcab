"""Where the graph runs: the embedded local scheduler, a LocalCluster, or any Dask cluster.

With no option, Dask's threaded scheduler runs in the calling process (no setup).  ``workers=N``
starts a :class:`distributed.LocalCluster` of N single-threaded worker processes; ``scheduler`` (an
address such as ``tcp://10.0.0.5:8786``) or ``scheduler_file`` (as written by
``dask scheduler --scheduler-file``) connects to an existing deployment (SLURM, Kubernetes...).
A client that is already active in the process is used as Dask always does.

``distributed`` is imported only when a cluster is asked for or already in use: a local
one-shot job (a CLI call, a script, a SLURM array task without a cluster) does not pay its
import (``benchmarks/results/2026-12-07-startup.md``).  Dask itself imports it on every
``compute`` that names no scheduler, only to look for a client; :func:`compute` names the
threaded scheduler when no client can exist.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dask
import dask.threaded

from daskmasker import config

if TYPE_CHECKING:
    from distributed import Client

WORKER_ENVIRON = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TOP_PAD_": str(64 * 2**20)}
"""Default environment of the worker processes daskmasker starts (the ``daskmasker.worker-environ``
setting holds the values in force) (a deployment sets it too, see
``deploy/``): glibc's allocator keeps chunks in the heap.  Dask's nannies set
``MALLOC_TRIM_THRESHOLD_=65536`` (freed memory goes back to the OS at once), which also freezes
glibc's mmap threshold at 128 KiB:

* ``MALLOC_MMAP_THRESHOLD_``, 32 MiB (glibc's largest): every chunk (up to 32 MiB) was a fresh
  ``mmap`` whose pages faulted in on first touch; chunks are now served from the heap.
* ``MALLOC_TOP_PAD_``, 64 MiB (two chunks): the heap's top was still given back whenever a chunk
  at the top was freed, and faulted in again by the next one; keeping 64 MiB at the top keeps
  them, and both workers of a batch run at the same speed.

The measured system times and page faults are in
``benchmarks/results/2026-12-07-docstrings-figures.md``.

Dask's trim threshold stays: memory beyond the pad still goes back to the OS.  A value in
Dask's ``distributed.nanny.pre-spawn-environ`` config wins, and an exported one over both."""


_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}


@functools.cache
def tune_local_allocator() -> tuple[str, ...]:
    """Give this process the allocator settings of daskmasker's workers, once.

    The settings of ``daskmasker.worker-environ`` (see :data:`WORKER_ENVIRON`) applied with
    glibc's ``mallopt``, for the computations the threaded scheduler runs here (a notebook, the
    CLI, a job without a cluster).  Without them each chunk of a ``.nii.gz`` was a fresh
    mapping faulted in page by page (figures in ``benchmarks/results/2026-12-06-fit.md``).  A
    setting the
    process's environment gives (read by glibc at start) is left alone, as is any allocator
    but glibc's.

    Returns
    -------
    tuple of str
        The settings applied.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return ()
    applied = []
    for name, value in (config.get("worker-environ") or {}).items():
        if name in _MALLOPT and name not in os.environ and mallopt(_MALLOPT[name], int(value)):
            applied.append(name)
    return tuple(applied)


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
    .. code-block:: python

        with dask_client(workers=2) as client:  # a local cluster, closed on exit
            masker.fit_transform(img)
    """
    chosen = [x is not None for x in (scheduler, scheduler_file, workers)]
    if sum(chosen) > 1:
        raise ValueError("give at most one of scheduler, scheduler_file and workers")
    if not any(chosen):
        yield None
        return
    from distributed import Client, LocalCluster

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
        environ = {**config.get("worker-environ"), **configured}
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


def active_client() -> Client | None:
    """The distributed client Dask would use now, if any.

    None without importing ``distributed`` when it is not imported yet: no client can exist.
    """
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import default_client

        return default_client()
    except ValueError:
        return None


def compute(*collections: Any, **kwargs: Any) -> tuple:
    """``dask.compute``, on the scheduler Dask would choose, without importing ``distributed``
    to find that no client is active.

    Dask's own choice (no ``scheduler`` given or configured) imports ``distributed`` to look
    for a client; when ``distributed`` is not imported no client can exist, and the
    collections' default (the threaded scheduler, for arrays and delayed) is named here.

    Parameters
    ----------
    *collections
        Dask collections (anything else is returned as is, as by ``dask.compute``).
    **kwargs
        Passed to ``dask.compute``.

    Returns
    -------
    tuple
        The computed values, one per collection.

    Examples
    --------
    >>> import dask.array as da
    >>> compute(da.ones(4, chunks=2).sum())
    (np.float64(4.0),)
    """
    if (
        "scheduler" not in kwargs
        and "distributed" not in sys.modules
        and dask.config.get("scheduler", None) is None
    ):
        kwargs["scheduler"] = dask.threaded.get
    return dask.compute(*collections, **kwargs)
