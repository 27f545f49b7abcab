"""Run a command in a subprocess: its wall time, CPU time and peak RSS (psutil, every 20 ms)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import psutil


@dataclass
class Measured:
    """A finished process: wall and CPU seconds (user + system, its waited-for children
    included), peak RSS in GB (the process and its children) and its stdout."""

    wall: float
    cpu: float
    rss: float
    out: str


def run_measured(cmd: list[str], capture: bool = False) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in GB (the process and its children) and stdout."""
    done = measure(cmd, capture)
    return done.wall, done.rss, done.out


def measure(cmd: list[str], capture: bool = False, env: dict | None = None) -> Measured:
    """Run ``cmd`` to its end: :class:`Measured` (raises if it fails).

    The CPU time is the difference of this process's ``RUSAGE_CHILDREN`` around the run: on a
    shared machine it moves less with the load than the wall time does.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if capture else None, text=True, env=env)
    handle = psutil.Process(proc.pid)
    peak, children, listed = 0, [], 0.0
    while proc.poll() is None:
        # listing descendants scans all of /proc (milliseconds): every 0.5 s, not every poll,
        # or the poller takes a tenth of a core from a run that uses both
        if time.perf_counter() - listed > 0.5:
            try:
                children = handle.children(recursive=True)
            except psutil.Error:
                children = []
            listed = time.perf_counter()
        peak = max(peak, _rss(handle) + sum(_rss(c) for c in children))
        time.sleep(0.02)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = proc.stdout.read() if capture else ""
    if proc.returncode:
        raise RuntimeError(f"{cmd[:4]} failed with exit code {proc.returncode}")
    return Measured(wall, cpu, peak / 1024**3, out)


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def run_job(script: str, job: dict) -> tuple[dict, float, float]:
    """Run ``script --worker JOB`` in a fresh process; the dict it printed on its ``RESULT`` line,
    the process's wall time (s) and its peak RSS (GB)."""
    wall, rss, out = run_measured(
        [sys.executable, script, "--worker", json.dumps(job)], capture=True
    )
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT ")), wall, rss
