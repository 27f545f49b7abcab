"""A real one-node SLURM cluster on this machine, from Debian's ``slurm-wlm`` and ``munge``.

``start()`` writes a minimal ``slurm.conf`` (the node is this host, its CPUs and memory as
``slurmd -C`` reports them, one partition, ``select/cons_tres``, ``proctrack/linuxproc``: no
cgroups in a container), starts a private ``munged`` (its own key and socket), ``slurmctld`` and
``slurmd`` in the foreground on free 127.0.0.1 ports, and waits until ``sinfo`` shows the node
idle.  ``SLURM_CONF`` in the environment points the SLURM commands (``sbatch``, ``squeue``...)
and dask-jobqueue at it.  There is no ``slurmdbd``: without it ``sacct`` has no records, so each
finished job's record comes from ``jobcomp/filetxt`` (``Cluster.job_records``).

Daemons left by an interrupted run (their pids are in ``STATE/pids``) are stopped first.  Used by
``tests/slurm/conftest.py`` and ``benchmarks/bench_slurm.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STATE = Path(os.environ.get("DASKMASKER_TEST_SLURM_DIR", "/tmp/daskmasker-test-slurm"))
PARTITION = "debug"
DAEMONS = ("munged", "slurmctld", "slurmd")


@dataclass
class Cluster:
    """The running cluster: its config file, state folder, node and partition."""

    conf: Path
    state: Path
    node: str
    cpus: int
    memory_mb: int
    partition: str = PARTITION

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def job_records(self) -> list[dict[str, str]]:
        """Finished jobs as ``jobcomp/filetxt`` logs them (``JobId=... JobName=...``)."""
        path = self.state / "jobcomp.log"
        if not path.exists():
            return []
        return [
            dict(re.findall(r"(\w+)=(\S*)", line)) for line in path.read_text().splitlines() if line
        ]

    def queue(self) -> list[str]:
        """``squeue``'s lines for every job still known (pending, running or completing)."""
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i %j %T %r"], capture_output=True, text=True, check=True
        ).stdout
        return out.splitlines()

    def wait_empty(self, timeout: float = 60) -> list[str]:
        """Wait until no job is queued or running; returns what is left at the timeout."""
        deadline = time.monotonic() + timeout
        while (left := self.queue()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left

    def cancel_all(self) -> None:
        subprocess.run(["scancel", "--partition", self.partition], check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hardware() -> tuple[int, int]:
    """CPUs and RealMemory (MB) of this node, as ``slurmd -C`` reports them."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"CPUs=(\d+)", out)[1]), int(re.search(r"RealMemory=(\d+)", out)[1])


def stop_leftovers(state: Path = STATE) -> None:
    """Stop the daemons a previous run started (by the pids it recorded) and wipe its state."""
    pids = state / "pids"
    if pids.exists():
        for line in pids.read_text().split():
            pid = int(line)
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                if any(name in cmdline for name in DAEMONS):
                    os.kill(pid, signal.SIGKILL)
    if state.exists():
        shutil.rmtree(state, ignore_errors=True)


def _conf(state: Path, node: str, cpus: int, memory_mb: int) -> str:
    return f"""\
ClusterName=daskmasker-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={state}/munge.socket
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/slurmd
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={state}/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=1024
"""


def _node_state(env: dict) -> str:
    done = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=env, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def start(state: Path = STATE, timeout: float = 60) -> tuple[Cluster, list[subprocess.Popen]]:
    """Start munged, slurmctld and slurmd; return the cluster once its node is idle."""
    stop_leftovers(state)
    for sub in ("ctld", "slurmd", "munge"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    node = socket.gethostname().split(".")[0]
    cpus, memory_mb = _hardware()
    conf = state / "slurm.conf"
    conf.write_text(_conf(state, node, cpus, memory_mb))
    key = state / "munge" / "munge.key"
    subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
    key.chmod(0o600)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    commands = [
        [
            "munged",
            "--foreground",
            "--force",
            f"--socket={state}/munge.socket",
            f"--key-file={key}",
            f"--pid-file={state}/munge/munged.pid",
            f"--log-file={state}/munge/munged.log",
            f"--seed-file={state}/munge/munged.seed",
        ],
        ["slurmctld", "-D", "-i", "-f", str(conf)],
        ["slurmd", "-D", "-f", str(conf), "-N", node],
    ]
    procs: list[subprocess.Popen] = []
    pids = state / "pids"
    try:
        for command in commands:
            with open(state / f"{command[0]}.out", "wb") as log:  # the child keeps its copy
                procs.append(
                    subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
                )
            pids.write_text(" ".join(str(p.pid) for p in procs))
            if command[0] == "munged":
                _wait(lambda: (state / "munge.socket").exists(), procs, state, 10)
        _wait(lambda: _node_state(env) == "idle", procs, state, timeout)
    except BaseException:
        stop(procs, state)
        raise
    return Cluster(conf, state, node, cpus, memory_mb), procs


def _wait(ready, procs, state: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [p.args[0] for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}"
                for f in sorted(state.glob("*.out")) + sorted(state.glob("*.log"))
            )
            raise RuntimeError(f"SLURM did not come up (dead: {dead}):\n{logs}")
        time.sleep(0.2)


def stop(procs: list[subprocess.Popen], state: Path = STATE) -> None:
    """Cancel every job, stop the daemons (slurmd first) and remove the state folder."""
    if procs and procs[-1].poll() is None:
        subprocess.run(
            ["scancel", "--full", f"--partition={PARTITION}"],
            env={**os.environ, "SLURM_CONF": str(state / "slurm.conf")},
            check=False,
            capture_output=True,
        )
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    stop_leftovers(state)


@contextlib.contextmanager
def running(state: Path = STATE) -> Iterator[Cluster]:
    """The cluster for the ``with`` block; ``SLURM_CONF`` set in ``os.environ`` meanwhile."""
    cluster, procs = start(state)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        stop(procs, state)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
