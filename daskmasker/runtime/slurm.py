"""Dask workers as SLURM jobs (dask-jobqueue's ``SLURMCluster``), sized to the partition.

:func:`slurm_cluster` builds the cluster from explicit sizes, a jobqueue YAML file or dask's
``jobqueue.slurm`` config, in that order, and fills what none of them gives from what the
partition offers (``sinfo``/``scontrol show partition``): one single-threaded worker process per
core (daskmasker's computations run best so), the memory of a core's share of a node, as many
workers as the partition's usable CPUs hold.  The job script runs this very Python (no
``module load``, no venv path to guess: ``sbatch`` exports the calling environment), sets the
allocator variables of :data:`~daskmasker.runtime.client.WORKER_ENVIRON` and writes its logs to a
known directory.

:class:`PendingWatch` says why jobs stay pending, from ``squeue``'s reason, with a hint.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daskmasker import config

if TYPE_CHECKING:
    from dask_jobqueue import SLURMCluster

logger = logging.getLogger("daskmasker")

USABLE_STATES = ("idle", "mix", "mixed", "alloc", "allocated", "completing")
"""``sinfo`` node states that count towards what a partition can give (not down, drained...)."""

PENDING_HINTS = {
    "Resources": "the nodes are busy or too small for a job this size; it starts when "
    "resources free up (fewer --cores or less --memory per job start sooner)",
    "Priority": "other jobs of the partition go first",
    "PartitionConfig": "the job asks more than partition '{partition}' allows (cores, "
    "memory, walltime or nodes): lower --cores, --memory or --walltime, or pick another "
    "--partition",
    "PartitionTimeLimit": "--walltime is above the partition's time limit",
    "PartitionNodeLimit": "the job asks more nodes than the partition allows",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "ReqNodeNotAvail": "the nodes the job can use are down, drained or reserved",
    "AssocGrpCpuLimit": "your account's CPU limit is reached: fewer --workers",
    "AssocMaxJobsLimit": "your account's job limit is reached: fewer --workers, more --cores",
    "QOSMaxJobsPerUserLimit": "your QOS's job limit is reached: fewer --workers, more --cores",
    "QOSMaxCpuPerUserLimit": "your QOS's CPU limit is reached: fewer --workers",
    "JobHeldUser": "the job is held (scontrol release JOBID)",
    "JobHeldAdmin": "an administrator holds the job",
    "BeginTime": "the job's start time is not reached",
}


class SlurmError(ValueError):
    """SLURM is missing, or refuses what was asked."""


def _run(*command: str) -> str:
    if shutil.which(command[0]) is None:
        raise SlurmError(
            f"'{command[0]}' not found: --cluster slurm runs on a SLURM login node (the SLURM "
            "client commands on PATH)"
        )
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SlurmError(f"{' '.join(command)} failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


@dataclass(frozen=True)
class Partition:
    """What a partition offers: its usable nodes' CPUs and memory (MB), its limits."""

    name: str
    cpus: int
    max_node_cpus: int
    min_node_memory_mb: int
    max_node_memory_mb: int
    memory_per_cpu_mb: int | None
    max_time: str | None

    @property
    def node_memory_per_cpu_mb(self) -> int:
        """Memory a core's job may ask: the partition's per-CPU default or limit, else the
        smallest node's memory over its CPUs."""
        if self.memory_per_cpu_mb:
            return self.memory_per_cpu_mb
        return self.min_node_memory_mb // max(1, self.max_node_cpus)


def partition(name: str | None = None) -> Partition:
    """The partition ``name`` (default: the cluster's default partition), read from ``sinfo``
    and ``scontrol show partition``."""
    if name is None:
        for line in _run("sinfo", "-h", "-o", "%P").split():
            if line.endswith("*"):
                name = line[:-1]
                break
        else:
            raise SlurmError("no default SLURM partition: pass --partition")
    nodes = _run("sinfo", "-h", "-N", "-p", name, "-o", "%n %c %m %t").splitlines()
    if not nodes:
        raise SlurmError(f"--partition {name}: no such partition, or it has no nodes")
    usable = {}
    for line in nodes:
        node, cpus, memory, state = line.split()
        if state.rstrip("*~#!%$@^-") in USABLE_STATES:
            usable[node] = (int(cpus), int(re.sub(r"\D.*", "", memory) or 0))
    if not usable:
        raise SlurmError(f"partition {name} has no usable node (sinfo -p {name} shows why)")
    fields = dict(re.findall(r"(\w+)=(\S+)", _run("scontrol", "show", "partition", name, "-o")))
    per_cpu = next(
        (int(fields[k]) for k in ("DefMemPerCPU", "MaxMemPerCPU") if fields.get(k, "").isdigit()),
        None,
    )
    max_time = fields.get("MaxTime")
    return Partition(
        name=name,
        cpus=sum(c for c, _ in usable.values()),
        max_node_cpus=max(c for c, _ in usable.values()),
        min_node_memory_mb=min(m for _, m in usable.values()),
        max_node_memory_mb=max(m for _, m in usable.values()),
        memory_per_cpu_mb=per_cpu,
        max_time=None if max_time in (None, "UNLIMITED", "INFINITE") else max_time,
    )


def _jobqueue_section(path: str | None) -> dict[str, Any]:
    """The ``jobqueue.slurm`` settings of a YAML file, or of dask's config."""
    import dask

    if path is None:
        return dict(dask.config.get("jobqueue.slurm", {}) or {})
    import yaml

    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except OSError as exc:
        raise SlurmError(f"--jobqueue-config {path}: {exc.strerror}") from None
    section = (doc.get("jobqueue") or {}).get("slurm")
    if not isinstance(section, dict):
        raise SlurmError(f"--jobqueue-config {path}: no 'jobqueue: slurm:' section")
    return {**(dask.config.get("jobqueue.slurm", {}) or {}), **section}


@dataclass(frozen=True)
class Plan:
    """What :func:`slurm_cluster` asks: jobs, worker processes per job, partition, log dir."""

    jobs: int
    processes: int
    partition: str
    log_dir: str


def slurm_cluster(
    workers: int | None = None,
    cores: int | None = None,
    memory: str | None = None,
    walltime: str | None = None,
    partition_name: str | None = None,
    jobqueue_config: str | None = None,
    log_dir: str | None = None,
    interface: str | None = None,
    work: int | None = None,
) -> tuple[SLURMCluster, Plan]:
    """A ``SLURMCluster`` of single-threaded workers, and the number of jobs it should run.

    Parameters
    ----------
    workers : int, optional
        Worker processes in all (default: what the partition's usable CPUs hold, at most
        ``work``).
    cores : int, optional
        Cores (one worker process each) per SLURM job (default: the config's, else 1).
    memory : str, optional
        Memory per job, e.g. ``"8GB"`` (default: the config's when its ``cores`` are used, else
        the partition's ``DefMemPerCPU`` or a core's share of the smallest node, times
        ``cores``).
    walltime : str, optional
        Time limit per job (default: the ``jobqueue_config`` file's, else the partition's
        MaxTime, else none asked: the partition's default).
    partition_name : str, optional
        SLURM partition (default: the config's ``queue``, else the default partition).
    jobqueue_config : str, optional
        A YAML file with a ``jobqueue: slurm:`` section (dask-jobqueue's format).
    log_dir : str, optional
        Where the jobs write their ``.out``/``.err`` (default: the config's
        ``log-directory``, else ``~/daskmasker-slurm-logs``).
    interface : str, optional
        Network interface of the scheduler and workers (e.g. ``ib0``).
    work : int, optional
        Independent pieces of work (runs): no more workers are asked than that.

    Returns
    -------
    (dask_jobqueue.SLURMCluster, Plan)
        The cluster (no job submitted yet) and what to scale it to.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise SlurmError(
            "--cluster slurm needs dask-jobqueue: pip install 'daskmasker[slurm]'"
        ) from None
    import dask.utils

    section = _jobqueue_section(jobqueue_config)
    queue = partition_name or section.get("queue")
    part = partition(queue)
    sized_by_config = cores is None and bool(section.get("cores"))
    if sized_by_config:
        cores = int(section["cores"])
        processes = int(section.get("processes") or cores)
    else:
        cores = int(cores or 1)
        processes = cores
    if cores > part.max_node_cpus:
        raise SlurmError(
            f"--cores {cores}: the nodes of partition {part.name} have at most "
            f"{part.max_node_cpus} CPUs"
        )
    if memory is None:  # the config's is for its cores
        memory = (sized_by_config and section.get("memory")) or (
            f"{part.node_memory_per_cpu_mb * cores}MiB"
        )
    try:
        job_mb = dask.utils.parse_bytes(memory) / 2**20
    except ValueError:
        raise SlurmError(f"--memory {memory!r}: not a size such as 8GB") from None
    if job_mb > part.max_node_memory_mb:
        raise SlurmError(
            f"--memory {memory}: more than any node of partition {part.name} has "
            f"({part.max_node_memory_mb} MB)"
        )
    if workers is None:
        workers = part.cpus // cores * processes
        if work is not None:
            workers = max(1, min(workers, work))
    jobs = max(1, math.ceil(workers / processes))
    log_dir = str(
        Path(log_dir or section.get("log-directory") or "~/daskmasker-slurm-logs").expanduser()
    )
    name = (jobqueue_config and section.get("name")) or "daskmasker-worker"
    environ = config.get("worker-environ") or {}
    prologue = list(section.get("job-script-prologue") or [])
    prologue += [f"export {k}={v}" for k, v in environ.items()]
    skip = list(section.get("job-directives-skip") or [])
    if walltime is None and jobqueue_config is not None:
        walltime = section.get("walltime")
    walltime = walltime or part.max_time
    if walltime is None:
        skip.append("-t ")  # no --time: the partition's default applies
    cluster = SLURMCluster(
        queue=part.name,
        cores=cores,
        processes=processes,
        memory=memory,
        walltime=walltime or "00:00:00",
        account=section.get("account"),
        interface=interface or section.get("interface"),
        local_directory=section.get("local-directory"),
        log_directory=log_dir,
        python=sys.executable,
        name=name,
        job_name=name,
        job_script_prologue=prologue,
        job_directives_skip=skip,
        job_extra_directives=list(section.get("job-extra-directives") or []),
        worker_extra_args=list(section.get("worker-extra-args") or []),
        death_timeout=section.get("death-timeout") or 60,
        scheduler_options={"dashboard_address": ":0"},
    )
    return cluster, Plan(jobs, processes, part.name, log_dir)


def job_ids(cluster: SLURMCluster) -> list[str]:
    """The SLURM job ids a jobqueue cluster has submitted and not closed."""
    return [j.job_id for j in list(cluster.workers.values()) if getattr(j, "job_id", None)]


def pending_reasons(ids: list[str]) -> dict[str, str]:
    """``squeue``'s reason for each of ``ids`` that is still pending."""
    if not ids:
        return {}
    out = _run("squeue", "-h", "-t", "PENDING", "-j", ",".join(ids), "-o", "%i %r")
    return dict(line.split(None, 1) for line in out.splitlines() if " " in line)


def describe_pending(reason: str, partition_name: str) -> str:
    """A reason as ``squeue`` gives it, with what it means for daskmasker's jobs."""
    hint = PENDING_HINTS.get(reason.split(",")[0].strip("()"))
    if hint is None:
        return reason
    return f"{reason}: {hint.format(partition=partition_name)}"


class PendingWatch:
    """Report, from a thread, the jobs of ``cluster`` that stay pending, and why.

    Every ``interval`` seconds (``daskmasker.slurm.poll``) ``squeue`` gives the pending jobs'
    reasons; a job pending for ``after`` seconds (``daskmasker.slurm.pending-report-after``) is
    reported once per reason (``say`` receives the message).
    """

    def __init__(
        self,
        cluster: SLURMCluster,
        partition_name: str,
        say: Callable[[str], None] = logger.warning,
        interval: float | None = None,
        after: float | None = None,
    ) -> None:
        self.cluster, self.partition_name, self.say = cluster, partition_name, say
        self.interval = float(interval or config.get("slurm.poll"))
        self.after = float(config.get("slurm.pending-report-after") if after is None else after)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slurm-pending", daemon=True)
        self._said: dict[str, str] = {}

    def __enter__(self) -> PendingWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        import time

        since: dict[str, float] = {}
        while not self._stop.wait(self.interval):
            try:
                reasons = pending_reasons(job_ids(self.cluster))
            except Exception as exc:  # squeue unreachable for a moment: try again
                logger.debug("squeue: %s", exc)
                continue
            now = time.monotonic()
            for job, reason in reasons.items():
                since.setdefault(job, now)
                if now - since[job] >= self.after and self._said.get(job) != reason:
                    self._said[job] = reason
                    waiting = len(reasons)
                    self.say(
                        f"SLURM job {job} pending for {now - since[job]:.0f} s "
                        f"({waiting} job(s) pending): "
                        f"{describe_pending(reason, self.partition_name)}"
                    )
