"""Run a command in a subprocess; its wall time and peak RSS (polled with psutil, 20 ms)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil


def run_measured(cmd: list[str], capture: bool = False) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in GB (the process and its children) and stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if capture else None, text=True)
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
    out = proc.stdout.read() if capture else ""
    if proc.returncode:
        raise RuntimeError(f"{cmd[:4]} failed with exit code {proc.returncode}")
    return wall, peak / 1024**3, out


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
