"""One way to say where a command's work runs, whatever runs it: :func:`cluster_client`.

``cluster="local"`` is :func:`~daskmasker.runtime.client.dask_client` (the threaded scheduler,
``workers=N`` local processes, or a running ``scheduler``/``scheduler_file``);
``cluster="slurm"`` submits the workers as SLURM jobs (:mod:`daskmasker.runtime.slurm`), waits
for the first, says why jobs stay pending, and cancels every job it submitted when the block
ends, on an error, on Ctrl-C and on SIGTERM/SIGHUP.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from daskmasker.runtime.client import dask_client

if TYPE_CHECKING:
    from dask_jobqueue import SLURMCluster
    from distributed import Client

logger = logging.getLogger("daskmasker")

CLUSTERS = ("local", "slurm")


@contextlib.contextmanager
def cluster_client(
    cluster: str = "local",
    *,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    workers: int | None = None,
    cores: int | None = None,
    memory: str | None = None,
    walltime: str | None = None,
    partition: str | None = None,
    jobqueue_config: str | None = None,
    log_dir: str | None = None,
    interface: str | None = None,
    work: int | None = None,
    say: Callable[[str], None] = logger.info,
) -> Iterator[Client | None]:
    """Context manager yielding the client the work runs on (None: the threaded scheduler).

    Parameters
    ----------
    cluster : {"local", "slurm"}
        ``"slurm"``: workers as SLURM jobs from this (login) node, by dask-jobqueue.
    scheduler, scheduler_file : str, optional
        A running scheduler (``cluster="local"`` only).
    workers : int, optional
        Worker processes: a LocalCluster of that many, or the most SLURM workers (default
        there: what the partition can give, at most ``work``).
    cores, memory, walltime, partition, jobqueue_config, log_dir, interface : optional
        The SLURM jobs' sizes, see :func:`daskmasker.runtime.slurm.slurm_cluster`.
    work : int, optional
        Independent pieces of work (runs) to do: SLURM asks no more workers than that.
    say : callable
        Receives the messages for the user (submitted jobs, pending reasons).
    """
    if cluster not in CLUSTERS:
        raise ValueError(f"cluster must be one of {CLUSTERS}, got {cluster!r}")
    slurm_only: dict[str, Any] = {
        "cores": cores,
        "memory": memory,
        "walltime": walltime,
        "partition": partition,
        "jobqueue_config": jobqueue_config,
        "log_dir": log_dir,
        "interface": interface,
    }
    if cluster == "local":
        given = [k for k, v in slurm_only.items() if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to cluster='slurm' only")
        with dask_client(scheduler, scheduler_file, workers) as client:
            yield client
        return
    if scheduler is not None or scheduler_file is not None:
        raise ValueError("cluster='slurm' starts its own scheduler: no scheduler/scheduler_file")
    with _slurm_client(workers, work, say, **slurm_only) as client:
        yield client


@contextlib.contextmanager
def _slurm_client(
    workers: int | None,
    work: int | None,
    say: Callable[[str], None],
    partition: str | None,
    **sizes: Any,
) -> Iterator[Client]:
    from distributed import Client

    from daskmasker.runtime.slurm import PendingWatch, job_ids, slurm_cluster

    slurm, plan = slurm_cluster(workers=workers, partition_name=partition, work=work, **sizes)
    with _signals_interrupt(), contextlib.ExitStack() as stack:
        stack.callback(_close, slurm)  # scancel every job, also on Ctrl-C
        say(
            f"SLURM: {plan.jobs} job(s) of {plan.processes} worker(s) on partition "
            f"{plan.partition}, logs in {plan.log_dir}; dashboard {slurm.dashboard_link}"
        )
        slurm.scale(jobs=plan.jobs)
        client = stack.enter_context(Client(slurm))
        stack.enter_context(PendingWatch(slurm, plan.partition, say=say))
        client.wait_for_workers(1)
        say(f"SLURM jobs {','.join(sorted(job_ids(slurm), key=int))}: first worker up")
        yield client


def _close(cluster: SLURMCluster) -> None:
    """Close the cluster: dask-jobqueue ``scancel``s each of its jobs."""
    try:
        cluster.close(timeout=30)
    except Exception as exc:  # still cancel what can be cancelled
        logger.warning("closing the SLURM cluster: %s", exc)
        import subprocess

        from daskmasker.runtime.slurm import job_ids

        ids = job_ids(cluster)
        if ids:
            subprocess.run(["scancel", *ids], check=False)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP (``kill``, a closed login shell) raise
    KeyboardInterrupt in the main thread meanwhile, so the jobs are cancelled.  (Importing
    dask-jobqueue replaces Python's SIGINT handler by a silent ``sys.exit()``: exit code 0, as if
    the work were done; that handler is not restored either.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, interrupt) for s in signals}
    if getattr(previous[signal.SIGINT], "__module__", "").startswith("dask_jobqueue"):
        previous[signal.SIGINT] = signal.default_int_handler
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
