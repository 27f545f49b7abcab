"""Real Dask clusters on 127.0.0.1: a LocalCluster of processes, separately started scheduler and
workers, and a worker killed in the middle of a job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import nibabel as nib
import numpy as np
import pytest
from distributed import Client

from daskmasker import MultiNiftiMapsMasker, NiftiMapsMasker, dask_client, open_timeseries
from daskmasker.cli import main

from helpers import make_data, stop_processes, write_maps_and_mask

PARAMS = dict(standardize="zscore_sample", detrend=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    paths = write_maps_and_mask(root)
    maps = paths.pop("maps_img")
    paths["runs"] = []
    for i in range(3):
        p = str(root / f"sub-{i:02d}_task-rest_bold.nii")
        make_data(maps, n_scans=60, seed=i).to_filename(p)
        paths["runs"].append(p)
    return paths


def local_result(files, run):
    masker = NiftiMapsMasker(files["maps"], mask_img=files["mask"], **PARAMS)
    return masker.fit_transform(run)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_local_cluster_of_processes_gives_same_numbers(files, tmp_path, suffix):
    """The same numbers on a cluster; there a .nii.gz is read, gathered and multiplied in one
    task per product batch, in order (locally the gather is a task of its own)."""
    run = files["runs"][0]
    if suffix == ".nii.gz":
        run = str(tmp_path / "run.nii.gz")
        nib.load(files["runs"][0]).to_filename(run)
    with dask_client(workers=2) as client:  # 2 single-threaded processes on 127.0.0.1
        masker = NiftiMapsMasker(files["maps"], mask_img=files["mask"], **PARAMS)
        out = masker.fit_transform(run)
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
        layers = masker.set_output(transform="xarray").transform(run).data.dask.layers
    np.testing.assert_allclose(out, local_result(files, run), atol=1e-12)
    assert sum(executed.values()) > 0, "the graph should have run on the cluster's workers"
    assert any(name.startswith("read-products") for name in layers) == (suffix == ".nii.gz")


def _xarray_masker(files) -> NiftiMapsMasker:
    masker = NiftiMapsMasker(files["maps"], mask_img=files["mask"], **PARAMS)
    return masker.set_output(transform="xarray").fit(files["runs"][0])


def _confounds() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((60, 3))


def test_images_given_the_same_confounds_share_no_task(files):
    """Each image's graph is its own: with a key in common (the confounds, when every image
    is given the same array), an image's job on one worker waited for a task pinned with
    another image's job on the other worker."""
    masker, conf = _xarray_masker(files), _confounds()
    graphs = [set(masker.transform(run, confounds=conf).data.dask) for run in files["runs"][:2]]
    assert graphs[0] & graphs[1] == set()
    again = set(masker.transform(files["runs"][0], confounds=conf.copy()).data.dask)
    assert again == graphs[0]  # deterministic names: the same image and confounds, the same keys


def test_confounds_are_not_rechunked_to_the_product_batches(files, monkeypatch):
    """The cleaning task takes the products' batches and the confounds each in their own time
    chunks (no rechunk tasks between them), with the same numbers."""
    import dask

    from daskmasker import open_nifti

    masker, conf = _xarray_masker(files), _confounds()
    whole = masker.transform(files["runs"][0], confounds=conf)
    with dask.config.set({"daskmasker.gemm-max-volumes": 16}):
        batched = masker.transform(open_nifti(files["runs"][0], chunks=10), confounds=conf)
    layers = batched.data.dask.layers
    (products,) = [layer for name, layer in layers.items() if name.startswith("support-products")]
    assert len(products) == 3  # 6 chunks of 10 volumes in batches of 2
    assert not [name for name in layers if name.startswith("rechunk")]
    np.testing.assert_allclose(batched.values, whole.values, atol=1e-10)


def test_jobs_are_taken_as_workers_free_up():
    """compute_per_worker pulls a job from its iterable only when a worker has a free slot: a
    batch's graphs are built as it runs, not all before the first one starts."""
    import operator

    import dask

    from daskmasker.runtime.scheduling import compute_per_worker

    pulled = []

    def jobs():
        for i in range(6):
            pulled.append(i)
            yield dask.delayed(operator.add)(i, 1)

    with dask_client(workers=2) as client:  # one thread each: two slots
        seen = [
            (len(pulled), i, future.result()) for i, future in compute_per_worker(client, jobs())
        ]
    assert seen[0][0] <= 3  # the two first jobs and one built ahead
    assert sorted(value for _, _, value in seen) == [1, 2, 3, 4, 5, 6]
    assert all(value == index + 1 for _, index, value in seen)


def test_the_one_upload_of_maps_and_recorders_says_no_large_graph_warning():
    """share_blocks and held send a large value once, as the futures tasks then refer to (what
    distributed's "Sending large graph" warning recommends), so they do not give that warning:
    a user saw it twice per run_batch on a LocalCluster (notebook 02)."""
    import dask

    from daskmasker.runtime.scheduling import held, share_blocks

    block = np.arange(2_000_000, dtype=np.float64)  # 16 MB, above distributed's 10 MB threshold
    blocks = np.empty(1, dtype=object)
    blocks[0] = block
    with Client(processes=False, n_workers=1, dashboard_address=":0") as client:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            (shared,) = share_blocks(blocks, client)
            future = held(client, block, "recorder")
            np.testing.assert_array_equal(shared.result(), block)
            np.testing.assert_array_equal(future.result(), block)
            assert not [w for w in caught if "large graph" in str(w.message)]
            # negative control: the same value computed plainly is warned about
            client.compute(dask.delayed(block, name="plain")).result()
        assert [w for w in caught if "Sending large graph" in str(w.message)]


def test_local_cluster_workers_get_the_worker_environment(monkeypatch):
    """dask_client's worker processes start with WORKER_ENVIRON (glibc reads it at start) and
    Dask's own pre-spawn variables; a value in Dask's pre-spawn-environ config wins over ours,
    and an exported one over both (Dask's precedence: the nanny also exports its pre-spawn
    values into this process)."""
    import dask

    from daskmasker.runtime.client import WORKER_ENVIRON

    names = [*WORKER_ENVIRON, "MALLOC_TRIM_THRESHOLD_"]

    def environ():
        return {name: os.environ.get(name) for name in names}

    def clear():
        for name in names:
            monkeypatch.delenv(name, raising=False)

    dasks = dask.config.get("distributed.nanny.pre-spawn-environ")
    expected = {**WORKER_ENVIRON, "MALLOC_TRIM_THRESHOLD_": str(dasks["MALLOC_TRIM_THRESHOLD_"])}
    clear()
    with dask_client(workers=1) as client:
        assert list(client.run(environ).values()) == [expected]
    first, *_ = WORKER_ENVIRON
    clear()
    with (
        dask.config.set({f"distributed.nanny.pre-spawn-environ.{first}": "2097152"}),
        dask_client(workers=1) as client,
    ):
        assert list(client.run(environ).values()) == [{**expected, first: "2097152"}]
    clear()
    monkeypatch.setenv(first, "1048576")
    with dask_client(workers=1) as client:
        assert list(client.run(environ).values()) == [{**expected, first: "1048576"}]


def _start(cmd):
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def cluster(tmp_path):
    """`dask scheduler` and two `dask worker` processes, started as a deployment would."""
    sched_file = str(tmp_path / "scheduler.json")
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [
        _start(
            [
                *dask,
                "--scheduler-file",
                sched_file,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                ":0",
            ]
        )
    ]
    deadline = time.time() + 60
    while not os.path.exists(sched_file) and time.time() < deadline:
        time.sleep(0.1)
    worker = [
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        "--scheduler-file",
        sched_file,
        "--nthreads",
        "1",
        "--host",
        "127.0.0.1",
        "--no-dashboard",
    ]
    procs += [_start(worker), _start(worker)]
    try:
        with Client(scheduler_file=sched_file) as client:
            client.wait_for_workers(2, timeout=60)
        yield sched_file, procs
    finally:
        stop_processes(procs)


def test_cli_on_separate_scheduler_and_workers(files, cluster, tmp_path):
    sched_file, _ = cluster
    out = str(tmp_path / "out.zarr")
    code = main(
        [
            "extract",
            *files["runs"],
            "--maps",
            files["maps"],
            "--mask",
            files["mask"],
            "--standardize",
            "zscore_sample",
            "--detrend",
            "--out",
            out,
            "--scheduler-file",
            sched_file,
            "--no-progress",
        ]
    )
    assert code == 0
    with Client(scheduler_file=sched_file) as client:
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert sum(executed.values()) > 0, "the graph should have run on the cluster's workers"
    for run in files["runs"]:
        name = os.path.basename(run).replace("_bold.nii", "")
        got = open_timeseries(out, name)["signals"].values
        np.testing.assert_allclose(got, local_result(files, run), atol=1e-12)


def _stop_a_busy_worker(client, running, pids, task: str = "") -> tuple[str, list]:
    """SIGSTOP a worker as soon as the scheduler shows it processing tasks (one whose key holds
    ``task``) while ``running()``; return its address and the tasks it held (asked again once it
    is frozen, so it cannot finish them)."""

    def wanted(keys) -> bool:
        return any(task in str(key) for key in keys)

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert running(), "the job ended before a worker was caught"
        processing = client.processing()
        busy = [addr for addr, keys in processing.items() if keys and wanted(keys)]
        busy = [addr for addr in busy if addr in pids]
        if busy:
            os.kill(pids[busy[0]], signal.SIGSTOP)
            held = client.processing()[busy[0]]
            if held and wanted(held):
                return busy[0], held
            os.kill(pids[busy[0]], signal.SIGCONT)
    raise AssertionError(f"no worker was seen processing a task {task!r}")


def test_worker_killed_mid_run_gives_identical_output(files, cluster):
    """A worker killed (SIGKILL) while it holds tasks of the job: the scheduler gives them to the
    other worker and the numbers are those of a local run, bit for bit."""
    sched_file, _ = cluster
    masker = NiftiMapsMasker(files["maps"], mask_img=files["mask"], **PARAMS).fit(files["runs"][0])
    runs = files["runs"] * 4
    expected = [masker.transform(run) for run in files["runs"]]
    with Client(scheduler_file=sched_file) as client:
        pids = client.run(os.getpid)
        lazies = [masker.set_output(transform="xarray").transform(r).data for r in runs]
        futures = client.compute(lazies)
        victim, held = _stop_a_busy_worker(client, lambda: not all(f.done() for f in futures), pids)
        os.kill(pids[victim], signal.SIGKILL)
        results = client.gather(futures)
        survivors = client.run(os.getpid)
    assert held and victim not in survivors and pids[victim] not in survivors.values()
    for got, want in zip(results, expected * 4, strict=True):
        np.testing.assert_array_equal(got, want)


def test_worker_killed_mid_gz_stream_gives_identical_output(files, cluster, tmp_path):
    """The same with ``.nii.gz`` runs, through ``MultiNiftiMapsMasker.transform``: on a cluster
    each image is one job pinned to a worker (its stream is read in order there, a chain of
    tasks each reading, gathering and multiplying a batch), the worker killed mid-stream; its
    jobs must move to the other worker (the pin is loose) and give a local run's numbers."""
    sched_file, _ = cluster
    sources = [str(tmp_path / f"{os.path.basename(run)}.gz") for run in files["runs"]]
    for run, gz in zip(files["runs"], sources, strict=True):
        nib.load(run).to_filename(gz)
    params = dict(maps_img=files["maps"], mask_img=files["mask"], **PARAMS)
    expected = [NiftiMapsMasker(**params).fit(sources[0]).transform(run) for run in sources]
    multi = MultiNiftiMapsMasker(**params).fit(sources[0])
    outcome = {}

    def transform():
        try:
            outcome["values"] = multi.transform(sources * 4)
        except Exception as exc:  # re-raised below
            outcome["error"] = exc

    with Client(scheduler_file=sched_file) as client:
        pids = client.run(os.getpid)
        job = threading.Thread(target=transform, daemon=True)
        job.start()
        victim, held = _stop_a_busy_worker(client, job.is_alive, pids, "read-products")
        os.kill(pids[victim], signal.SIGKILL)
        job.join(timeout=120)
        assert not job.is_alive(), "the jobs of the killed worker never ran elsewhere"
        survivors = client.run(os.getpid)
    assert "error" not in outcome, outcome.get("error")
    assert any("read-products" in str(key) for key in held)
    assert victim not in survivors and pids[victim] not in survivors.values()
    for got, want in zip(outcome["values"], expected * 4, strict=True):
        np.testing.assert_array_equal(got, want)


def _warnings_of(run, **kwargs) -> list[tuple[str, str]]:
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        run(**kwargs)
    return sorted((w.category.__name__, str(w.message)) for w in records)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_task_warnings_reach_the_client_as_locally(files, tmp_path, suffix):
    """Warnings raised in the cleaning tasks (non-finite data, boolean standardize, confounds
    without detrending) are emitted in the client on a cluster, as by the local scheduler and
    by nilearn, for the masker and the multi-image masker."""
    from nilearn.maskers import NiftiMapsMasker as NilearnMasker

    img = nib.load(files["runs"][0])
    data = np.asarray(img.dataobj).copy()
    data[6, 6, 6, 5] = np.nan
    path = str(tmp_path / f"nan{suffix}")
    nib.Nifti1Image(data, img.affine).to_filename(path)
    conf = np.random.default_rng(0).normal(size=(data.shape[-1], 2))
    options = dict(standardize=True, standardize_confounds=False)

    def single(cls=NiftiMapsMasker):
        cls(files["maps"], **options).fit_transform(path, confounds=conf)

    def multi():
        MultiNiftiMapsMasker(files["maps"], **options).fit_transform([path], confounds=[conf])

    expected = _warnings_of(single, cls=NilearnMasker)
    assert {c for c, _ in expected} == {"FutureWarning", "UserWarning"}
    assert _warnings_of(single) == expected
    local_multi = _warnings_of(multi)
    with dask_client(workers=2):
        assert _warnings_of(single) == expected
        assert _warnings_of(multi) == local_multi
        assert _warnings_of(single) == expected, "a rerun of the same graph warns once again"
