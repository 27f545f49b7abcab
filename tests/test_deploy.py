"""deploy/: the recipes parse, refer to commands and options that exist, and run as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tomllib
import yaml

from daskmasker import open_timeseries

from helpers import make_data, make_maps, stop_processes

DEPLOY = Path(__file__).parents[1] / "deploy"
IMAGE = re.search(r'ref.name="([^"]+)"', (DEPLOY / "docker" / "Dockerfile").read_text()).group(1)


def _help(*cmd) -> str:
    return subprocess.run([*cmd, "--help"], capture_output=True, text=True, check=True).stdout


def _containers(doc):
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "containers" in node:
                found.extend(node["containers"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return found


@pytest.mark.parametrize("name", ["daskcluster.yaml", "daskjob.yaml"])
def test_kubernetes_manifests(name):
    doc = yaml.safe_load((DEPLOY / "kubernetes" / name).read_text())
    assert doc["apiVersion"] == "kubernetes.dask.org/v1"
    assert doc["kind"] == {"daskcluster.yaml": "DaskCluster", "daskjob.yaml": "DaskJob"}[name]
    containers = _containers(doc)
    assert containers and all(c["image"] == IMAGE for c in containers)
    worker_help, scheduler_help = _help("dask", "worker"), _help("dask", "scheduler")
    extract_help = _help(sys.executable, "-m", "daskmasker.cli", "extract")
    for container in containers:
        args = " ".join(container["args"])
        for cmd, help_text in (
            ("dask worker", worker_help),
            ("dask scheduler", scheduler_help),
            ("daskmasker extract", extract_help),
        ):
            if cmd in args:
                segment = args.split(cmd, 1)[1]
                for option in re.findall(r"(--[a-z][a-z-]+)", segment):
                    assert option in help_text, f"{cmd} has no option {option}"


def _jobqueue_scripts() -> dict[str, str]:
    """The job scripts dask-jobqueue writes from deploy/slurm/jobqueue.yaml, by directive."""
    import dask
    from dask_jobqueue import PBSCluster, SLURMCluster

    config = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())
    flat = {
        f"jobqueue.{system}.{key}": value
        for system, section in config["jobqueue"].items()
        for key, value in section.items()
    }
    scripts = {}
    with dask.config.set(flat):
        for klass, directive in ((SLURMCluster, "#SBATCH"), (PBSCluster, "#PBS")):
            # closed here, under the config: closed at exit, it fails without it
            with klass(scheduler_options={"host": "127.0.0.1"}) as cluster:
                scripts[directive] = cluster.job_script()
    return scripts


def test_jobqueue_config_generates_job_scripts():
    for directive, script in _jobqueue_scripts().items():
        assert directive in script
        assert "--memory-limit 4GB" in script or "--memory-limit 4.00GiB" in script
        assert "source ~/venvs/daskmasker/bin/activate" in script


def test_dockerfile_installs_existing_extras():
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    extras = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in re.findall(r'pip install[^"]*"\.\[([a-z0-9,]+)\]"', text)[0].split(","):
        assert extra in extras
    assert "EXPOSE 8786 8787" in text


def test_every_recipe_sets_the_worker_environment():
    """The workers of each deployment get daskmasker's WORKER_ENVIRON, at its values: the
    image, both Kubernetes manifests, the sbatch script and the jobqueue job scripts."""
    from daskmasker.runtime.client import WORKER_ENVIRON

    def assigned(text: str, keyword: str) -> dict[str, str]:
        """``NAME=value`` pairs of the lines starting with ``keyword`` (ENV, export)."""
        pairs = [
            word.split("=", 1)
            for line in text.splitlines()
            if line.strip().startswith(keyword + " ")
            for word in shlex.split(line.strip())[1:]
        ]
        return dict(pairs)

    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert assigned(dockerfile, "ENV").items() >= WORKER_ENVIRON.items()
    sbatch = (DEPLOY / "slurm" / "extract.sbatch").read_text()
    assert assigned(sbatch, "export").items() >= WORKER_ENVIRON.items()
    for manifest in ("daskcluster.yaml", "daskjob.yaml"):
        doc = yaml.safe_load((DEPLOY / "kubernetes" / manifest).read_text())
        workers = [c for c in _containers(doc) if "worker" in c["args"]]
        assert workers
        for container in workers:
            env = {item["name"]: item["value"] for item in container["env"]}
            assert env.items() >= WORKER_ENVIRON.items()
    for script in _jobqueue_scripts().values():
        assert assigned(script, "export").items() >= WORKER_ENVIRON.items()


def _sbatch_commands():
    text = (DEPLOY / "slurm" / "extract.sbatch").read_text()
    scheduler = re.search(r"srun [^\n]*?(dask scheduler [^&\n]*)&", text).group(1)
    worker = re.search(r"srun [^\n]*?(dask worker [^&\n]*)&", text).group(1)
    joined = text.replace("\\\n", " ")
    extract = re.search(r"(daskmasker extract [^\n]*)", joined).group(1)
    return scheduler, worker, extract


def test_sbatch_recipe_end_to_end(tmp_path):
    """Start scheduler and workers exactly as extract.sbatch does, then its extract command."""
    scheduler, worker, extract = _sbatch_commands()
    sched_file = str(tmp_path / "scheduler.json")
    env = {**os.environ, "SCHED": sched_file}

    def expand(command):
        return [
            os.path.expandvars(a.replace('"$SCHED"', sched_file).replace("$SCHED", sched_file))
            for a in shlex.split(command)
        ]

    maps = make_maps(dtype=np.float64)
    maps.to_filename(tmp_path / "maps.nii.gz")
    runs = []
    for i in range(2):
        path = tmp_path / f"sub-{i:02d}_task-rest_bold.nii.gz"
        make_data(maps, n_scans=30, seed=i).to_filename(path)
        runs.append(str(path))
    sched_cmd = [*expand(scheduler), "--host", "127.0.0.1", "--port", "0"]
    sched_cmd = [a if a != ":8787" else ":0" for a in sched_cmd]
    procs = [subprocess.Popen(sched_cmd, env=env, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not os.path.exists(sched_file) and time.time() < deadline:
            time.sleep(0.1)
        worker_cmd = [*expand(worker), "--host", "127.0.0.1", "--no-dashboard"]
        procs += [
            subprocess.Popen(worker_cmd, env=env, stderr=subprocess.DEVNULL) for _ in range(2)
        ]
        from distributed import Client

        with Client(scheduler_file=sched_file) as client:
            client.wait_for_workers(2, timeout=60)
        out = str(tmp_path / "timeseries.zarr")
        cmd = expand(
            extract.replace('"$@"', "")
            .replace('"$MAPS"', str(tmp_path / "maps.nii.gz"))
            .replace('--mask "$MASK"', "")
            .replace('"$OUT"', out)
        )
        cmd = [sys.executable, "-m", "daskmasker.cli", *cmd[1:], *runs, "--no-progress"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        with Client(scheduler_file=sched_file) as client:
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
        assert sum(executed.values()) > 0
        ds = open_timeseries(out, "sub-01_task-rest")
        assert ds["signals"].shape == (30, maps.shape[3])
    finally:
        stop_processes(procs)
