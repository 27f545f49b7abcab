"""Run a command in a subprocess; its wall time and peak RSS (polled with psutil, 20 ms)."""

from __future__ import annotations

import subprocess
import time

import psutil


def run_measured(cmd: list[str], capture: bool = False) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in GB (the process and its children) and stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if capture else None, text=True)
    handle = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = handle.memory_info().rss + sum(
                c.memory_info().rss for c in handle.children(recursive=True)
            )
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - start
    out = proc.stdout.read() if capture else ""
    if proc.returncode:
        raise RuntimeError(f"{cmd[:4]} failed with exit code {proc.returncode}")
    return wall, peak / 1024**3, out
