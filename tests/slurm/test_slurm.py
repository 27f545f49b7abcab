"""deploy/README.md's SLURM paths, run as documented on a real one-node SLURM cluster.

``sbatch deploy/slurm/extract.sbatch`` and ``daskmasker extract ... --cluster slurm`` give the
stores an in-process run gives; their jobs are in SLURM's job records; nothing stays queued,
also after Ctrl-C or SIGTERM of the client; a job pending is reported with squeue's reason; a
worker job cancelled mid-batch and a client killed and restarted end with stores equal, bit for
bit, to an uninterrupted run.  One file: the tests share the cluster's two CPUs one at a time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import make_data, make_maps, write_run

REPO = Path(__file__).parents[2]
README = (REPO / "deploy" / "README.md").read_text()
N_RUNS, N_SCANS = 6, 120
CONFOUND_COLUMNS = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "csf"]
CONFOUND_COLUMNS += ["white_matter", "framewise_displacement"]
# the one-node cluster's node has 2 CPUs: the README's sizes, brought down to it
ON_THIS_NODE = {"--ntasks=16": "--ntasks=2", "--mem-per-cpu=4G": "--mem-per-cpu=1G"}


def readme_command(start: str) -> str:
    """The README's shell command starting with ``start`` (continuation lines joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    for block in blocks:
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            if line.strip().startswith(start):
                return re.sub(r"\s+", " ", line.strip())
    raise AssertionError(f"deploy/README.md has no command starting with {start!r}")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A BIDS-like folder standing for the README's /data: runs, fMRIPrep-like confounds and
    difumo64.nii.gz (six maps), with the in-process stores of both documented commands."""
    root = tmp_path_factory.mktemp("slurm")
    maps = make_maps(dtype=np.float64)
    maps.to_filename(root / "difumo64.nii.gz")
    rng = np.random.default_rng(0)
    for i in range(N_RUNS):
        func = root / "ds" / f"sub-{i:02d}" / "func"
        func.mkdir(parents=True)
        write_run(func / f"sub-{i:02d}_task-rest_bold.nii.gz", maps, N_SCANS, seed=i)
        deriv = root / "ds" / "derivatives" / "fmriprep" / f"sub-{i:02d}" / "func"
        deriv.mkdir(parents=True)
        table = pd.DataFrame(rng.normal(size=(N_SCANS, len(CONFOUND_COLUMNS))))
        table.columns = CONFOUND_COLUMNS
        table.to_csv(deriv / f"sub-{i:02d}_task-rest_desc-confounds_timeseries.tsv", sep="\t")
    (root / "derivatives").mkdir()
    return root


def shell_command(start: str, root: Path) -> str:
    """The README's command with /data/ as the dataset folder, deploy/ as the repository's."""
    command = readme_command(start).replace("/data/", f"{root}/")
    return command.replace(" deploy/", f" {REPO}/deploy/")


def expand(command: str, cwd: Path) -> list[str]:
    """The words bash makes of ``command`` (globs expanded, quotes removed)."""
    done = subprocess.run(
        ["bash", "-c", f'printf "%s\\0" {command}'], capture_output=True, cwd=cwd, check=True
    )
    return [a for a in done.stdout.decode().split("\0") if a]


SLURM_OPTIONS = {"--cluster", "--interface", "--workers", "--jobqueue-config"}


def in_process(args: list[str], out: str, cwd: Path) -> str:
    """The same ``daskmasker extract`` arguments (SLURM's left out) run by this process's
    threads in ``cwd``, into ``out``."""
    from daskmasker.cli import main

    argv, skip = [], False
    for arg in args:
        if skip or arg in SLURM_OPTIONS:
            skip = not skip
            continue
        argv.append(arg)
    argv[argv.index("--out") + 1] = out
    here = os.getcwd()
    os.chdir(cwd)
    try:
        assert main(["extract", *argv, "-q", "--no-report"]) == 0
    finally:
        os.chdir(here)
    return out


def assert_same_store(store: str, reference: str, exact: bool) -> None:
    """Every array of every complete run equal (exact: bit for bit), through the public reader."""
    from daskmasker import open_timeseries

    runs = list(open_timeseries(reference)["run"].values)
    assert list(open_timeseries(store)["run"].values) == runs
    for run in runs:
        got, want = open_timeseries(store, run).load(), open_timeseries(reference, run).load()
        assert set(got.variables) == set(want.variables), run
        for name in want.variables:
            a, b = got[name].values, want[name].values
            if exact or not np.issubdtype(b.dtype, np.floating):
                assert np.array_equal(a, b), (run, name)
            else:
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=f"{run} {name}")


def complete_runs(store: str) -> int:
    """Runs complete in the store: their packed objects (the study's arrays are gathered at the
    end of a batch, see docs/store.md)."""
    from daskmasker.batch.store import listed_runs
    from daskmasker.io.fs import Location

    try:
        return len(listed_runs(Location(store)))
    except (FileNotFoundError, OSError):  # not created yet
        return 0


def records(slurm, name: str) -> list[dict]:
    return [r for r in slurm.job_records() if r["Name"] == name]


def env(**extra) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def test_sbatch_script_as_documented(slurm, dataset, tmp_path):
    """One job holds the scheduler, 2 workers and the client; the confounds and cleaning
    options reach extract; the store equals the in-process run's."""
    command = shell_command("sbatch ", dataset)
    for documented, here in ON_THIS_NODE.items():
        assert documented in command
        command = command.replace(documented, here)
    command = command.replace("sbatch ", "sbatch --wait ", 1)
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=dataset,
        env=env(DASK_INTERFACE="lo"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    job = re.search(r"Submitted batch job (\d+)", done.stdout)[1]
    log = (dataset / f"daskmasker-extract-{job}.log").read_text()
    assert done.returncode == 0, log
    assert f"{N_RUNS} extracted, 0 already complete, 0 failed" in log
    (record,) = [r for r in slurm.job_records() if r["JobId"] == job]
    assert record["Name"] == "daskmasker-extract"
    assert record["JobState"] == "COMPLETED" and record["ProcCnt"] == "2"
    run_dir = dataset / f"daskmasker-{job}"
    worker_logs = sorted(p.name for p in run_dir.glob("worker-*.log"))
    assert worker_logs == ["worker-0.log", "worker-1.log"]
    assert all("Registered to" in (run_dir / n).read_text() for n in worker_logs)
    store = str(dataset / "derivatives" / "timeseries.zarr")
    args = expand(command, dataset)
    args = args[[a.endswith("extract.sbatch") for a in args].index(True) + 1 :]
    reference = in_process(args, str(tmp_path / "ref.zarr"), dataset)
    assert_same_store(store, reference, exact=False)
    from daskmasker import open_timeseries

    assert "confounds" in open_timeseries(store, "sub-00_task-rest").variables


def cluster_command(dataset: Path, out: str, *extra: str) -> list[str]:
    """The README's ``--cluster slurm`` command (on 127.0.0.1), output into ``out``."""
    command = shell_command("daskmasker extract", dataset)
    command = command.replace(f"{dataset}/derivatives/timeseries.zarr", out)
    words = expand(command, dataset)
    assert words[:2] == ["daskmasker", "extract"] and "--cluster" in words
    return [*words, "--interface", "lo", "--no-progress", "--no-report", *extra]


def test_cluster_slurm_as_documented(slurm, dataset, tmp_path):
    """Worker jobs sized to the partition (2 CPUs: 2 jobs), logs beside --out, the store equal
    to the in-process run's, every job in SLURM's records, none left."""
    out = str(tmp_path / "timeseries.zarr")
    words = cluster_command(dataset, out)
    done = subprocess.run(words, cwd=dataset, env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "SLURM: 2 job(s) of 1 worker(s) on partition debug" in done.stderr
    assert f"{N_RUNS} extracted" in done.stderr
    ids = re.search(r"SLURM jobs ([\d,]+): first worker up", done.stderr)[1].split(",")
    workers = {r["JobId"]: r for r in records(slurm, "daskmasker-worker")}
    assert set(ids) <= set(workers)
    assert {workers[i]["NodeList"] for i in ids} == {slurm.node}
    logs = tmp_path / "daskmasker-slurm-logs"
    assert sorted(p.name for p in logs.glob("*.err")) == sorted(
        f"daskmasker-worker-{i}.err" for i in ids
    )
    reference = in_process(words[2:], str(tmp_path / "reference.zarr"), dataset)
    assert_same_store(out, reference, exact=False)


def test_bids_asks_no_more_worker_jobs_than_runs(slurm, tmp_path):
    """``daskmasker bids ... --cluster slurm``, as ``extract``, asks SLURM no more workers than
    the runs it selected: one run, one worker job (the partition's two CPUs would give two)."""
    from daskmasker import synthetic, synthetic_fmriprep

    fmriprep, out = tmp_path / "fmriprep", tmp_path / "out"
    synthetic_fmriprep.make_fmriprep_dataset(
        fmriprep, subjects=("01",), sessions=("1",), n_volumes=20
    )
    maps = synthetic.make_maps(
        4, synthetic_fmriprep.SMALL_SHAPE, synthetic_fmriprep.SMALL_AFFINE, seed=1
    )
    maps.to_filename(tmp_path / "maps.nii.gz")
    words = [sys.executable, "-m", "daskmasker.cli", "bids", str(fmriprep), str(out)]
    words += ["participant", "--maps", str(tmp_path / "maps.nii.gz"), "--no-progress"]
    words += ["--cluster", "slurm", "--interface", "lo", "--log-dir", str(tmp_path / "logs")]
    done = subprocess.run(words, env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "SLURM: 1 job(s) of 1 worker(s) on partition debug" in done.stderr
    assert "1 extracted, 0 already complete, 0 failed" in done.stderr


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def running_workers(slurm) -> list[str]:
    return [line.split()[0] for line in slurm.queue() if "daskmasker-worker RUNNING" in line]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_client_cancels_its_jobs(slurm, dataset, tmp_path, signum):
    """Ctrl-C (SIGINT) or kill (SIGTERM) of the client: its jobs leave the queue at once."""
    out = str(tmp_path / "timeseries.zarr")
    proc = subprocess.Popen(
        cluster_command(dataset, out), cwd=dataset, env=env(), stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: running_workers(slurm), 120, "a running worker job")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and f"interrupted ({signum.name})" in err, err
    assert not slurm.wait_empty(15), "the interrupted client's jobs are still queued"


def test_pending_job_reason_is_reported(slurm, dataset, tmp_path):
    """A job waiting for CPUs another job holds is reported with squeue's reason and a hint,
    and the command goes on once they free up."""
    hold = subprocess.run(
        ["sbatch", "--parsable", "-c", str(slurm.cpus), "-o", "/dev/null", "--wrap", "sleep 300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    out = str(tmp_path / "timeseries.zarr")
    proc = subprocess.Popen(
        cluster_command(dataset, out, "--workers", "1"),
        cwd=dataset,
        env=env(DASK_DASKMASKER__SLURM__POLL="1", DASK_DASKMASKER__SLURM__PENDING_REPORT_AFTER="2"),
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "pending for" in line:
                break
        subprocess.run(["scancel", hold], check=True)
        _, rest = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scancel", hold], check=False)
    message = [line for line in seen if "pending for" in line]
    assert message, "".join(seen)
    assert "(1 job(s) pending): Resources: the nodes are busy or too small" in message[0]
    assert proc.returncode == 0, "".join(seen) + rest
    assert f"{N_RUNS} extracted" in rest


def test_impossible_sizes_are_refused_before_any_job(slurm, dataset, tmp_path, capsys):
    from daskmasker.cli import main

    out = str(tmp_path / "timeseries.zarr")
    here = os.getcwd()
    os.chdir(dataset)
    try:
        for extra, message in (
            (["--cores", "64"], "--cores 64: the nodes of partition debug have at most"),
            (["--memory", "100TB"], "--memory 100TB: more than any node of partition debug has"),
            (["--partition", "nosuch"], "--partition nosuch: no such partition"),
        ):
            assert main(cluster_command(dataset, out, *extra)[1:]) == 2
            assert message in capsys.readouterr().err
    finally:
        os.chdir(here)
    assert not slurm.queue()


BIG_SHAPE, BIG_RUNS, BIG_SCANS = (40, 48, 40), 8, 150
BIG_AFFINE = np.array([[1.0, 0, 0, -20], [0, 1, 0, -24], [0, 0, 1, -20], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """``extract`` of 8 runs of 300k voxels (46 MB each, a graph per run: about a second of a
    worker each) through SLURM, and the uninterrupted store it gives."""
    root = tmp_path_factory.mktemp("faults")
    maps = make_maps(dtype=np.float64)
    maps.to_filename(root / "maps.nii.gz")
    runs = []
    for i in range(BIG_RUNS):
        runs.append(str(root / f"sub-{i:02d}_task-rest_bold.nii"))
        img = make_data(maps, BIG_SCANS, seed=i, shape=BIG_SHAPE, affine=BIG_AFFINE)
        img.header.set_zooms((1.0, 1.0, 1.0, 2.0))
        img.to_filename(runs[-1])
    args = [*runs, "--maps", str(root / "maps.nii.gz"), "--standardize", "zscore_sample"]
    args += ["--detrend", "--cluster", "slurm", "--interface", "lo", "--no-progress"]
    out = str(root / "uninterrupted.zarr")
    done = subprocess.run(
        ["daskmasker", "extract", *args, "--out", out], env=env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return args, out


def test_worker_job_cancelled_mid_batch(slurm, batch, tmp_path):
    """``scancel`` of a worker job once a run is complete: its work moves to the other worker,
    and the store equals the uninterrupted one bit for bit."""
    args, uninterrupted = batch
    out = str(tmp_path / "timeseries.zarr")
    proc = subprocess.Popen(
        ["daskmasker", "extract", *args, "--out", out, "--workers", "2"],
        env=env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: len(running_workers(slurm)) == 2, 120, "2 running worker jobs")
        wait_for(lambda: complete_runs(out) >= 1, 120, "a complete run")
        victim = running_workers(slurm)[0]
        subprocess.run(["scancel", victim], check=True)
        before = complete_runs(out)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, f"exit {proc.returncode}: {err}"
    assert before < BIG_RUNS, "the batch ended before the worker job was cancelled"
    assert f"{BIG_RUNS} extracted, 0 already complete, 0 failed" in err
    (record,) = [r for r in slurm.job_records() if r["JobId"] == victim]
    assert record["JobState"] == "CANCELLED", record
    assert_same_store(out, uninterrupted, exact=True)


def test_client_killed_and_restarted(slurm, batch, tmp_path):
    """SIGKILL of the client mid-batch: its workers exit at their death timeout (set in a
    --jobqueue-config file), the same command run again resumes, and the store equals the
    uninterrupted one bit for bit."""
    args, uninterrupted = batch
    config = tmp_path / "jobqueue.yaml"
    config.write_text("jobqueue:\n  slurm:\n    death-timeout: 5\n")
    out = str(tmp_path / "timeseries.zarr")
    command = ["daskmasker", "extract", *args, "--out", out, "--jobqueue-config", str(config)]
    proc = subprocess.Popen(command, env=env(), stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: complete_runs(out) >= 1, 120, "a complete run")
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    first = complete_runs(out)
    assert not slurm.wait_empty(60), "orphaned worker jobs did not exit"
    done = subprocess.run(command, env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resumed = re.search(r"(\d+) extracted, (\d+) already complete, 0 failed", done.stderr)
    assert int(resumed[2]) >= first >= 1 and int(resumed[1]) + int(resumed[2]) == BIG_RUNS
    assert int(resumed[1]) >= 1, "the client was killed after the batch ended"
    assert_same_store(out, uninterrupted, exact=True)


def test_job_scripts(slurm, tmp_path):
    """The worker job script: this Python, no `module load` or venv to activate, the worker
    allocator variables, logs in the given folder; sized by deploy/slurm/jobqueue.yaml (the
    command line winning) or, without it, from the partition (its DefMemPerCPU, no time limit
    asked as its MaxTime is unlimited)."""
    from daskmasker.runtime.client import WORKER_ENVIRON
    from daskmasker.runtime.slurm import slurm_cluster

    config = str(REPO / "deploy" / "slurm" / "jobqueue.yaml")
    scripts = {}
    for name, options in (
        ("config", {"jobqueue_config": config, "cores": 1, "memory": "1GB"}),
        ("partition", {}),
    ):
        cluster, plan = slurm_cluster(log_dir=str(tmp_path / name), interface="lo", **options)
        with cluster:
            scripts[name] = cluster.job_script()
        assert plan.partition == "debug" and plan.jobs == slurm.cpus
    for name, script in scripts.items():
        assert "module load" not in script and "activate" not in script
        assert f"{sys.executable} -m distributed.cli.dask_worker" in script
        for variable, value in WORKER_ENVIRON.items():
            assert f"export {variable}={value}" in script
        assert f"#SBATCH -e {tmp_path / name}/daskmasker-worker-%J.err" in script
        assert "#SBATCH -p debug" in script and "--interface lo" in script
    assert "#SBATCH -t 02:00:00" in scripts["config"] and "--death-timeout 60" in scripts["config"]
    assert "#SBATCH --mem=954M" in scripts["config"]  # 1 GB
    assert "#SBATCH -t" not in scripts["partition"]
    assert "#SBATCH --mem=1G" in scripts["partition"]  # DefMemPerCPU=1024


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cores", "2"], "--cores: SLURM job options, for --cluster slurm"),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers: not with --scheduler"),
        (
            ["--cluster", "slurm", "--scheduler-file", "s.json"],
            "argument --scheduler-file: not allowed with argument --cluster",
        ),
    ],
)
def test_where_options_that_do_not_go_together(dataset, tmp_path, capsys, extra, message):
    """Refused before any cluster starts (no SLURM needed), naming the flags."""
    from daskmasker.cli import main

    run = str(dataset / "ds" / "sub-00" / "func" / "sub-00_task-rest_bold.nii.gz")
    argv = ["extract", run, "--maps", str(dataset / "difumo64.nii.gz")]
    argv += ["--out", str(tmp_path / "o.zarr"), *extra]
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.zarr").exists()
