"""Batch extraction into one resumable Zarr store, and the ``extract`` CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from daskmasker import NiftiMapsMasker, open_timeseries
from daskmasker.batch.items import item_name
from daskmasker.batch.run import run_batch
from daskmasker.cli import main

from helpers import make_data, make_maps, make_mask

PARAMS = dict(standardize="zscore_sample", detrend=True)


@pytest.fixture
def dataset(tmp_path):
    maps = make_maps(dtype=np.float64)
    maps_path = tmp_path / "maps.nii.gz"
    maps.to_filename(maps_path)
    mask_path = tmp_path / "mask.nii.gz"
    make_mask().to_filename(mask_path)
    runs = []
    for sub in range(1, 4):
        func = tmp_path / f"sub-{sub:02d}" / "func"
        func.mkdir(parents=True)
        path = func / f"sub-{sub:02d}_task-rest_bold.nii.gz"
        make_data(maps, n_scans=30 + sub, seed=sub).to_filename(path)
        conf = func / f"sub-{sub:02d}_task-rest_desc-confounds_timeseries.tsv"
        rng = np.random.default_rng(sub)
        np.savetxt(conf, rng.normal(size=(30 + sub, 3)), delimiter="\t")
        runs.append((str(path), str(conf)))
    return {"maps": str(maps_path), "mask": str(mask_path), "runs": runs}


def expected(dataset, path, conf):
    masker = NiftiMapsMasker(dataset["maps"], mask_img=dataset["mask"], **PARAMS)
    return masker.fit(path).transform(path, confounds=conf)


def test_item_names_follow_bids():
    assert item_name("s3://b/sub-01/func/sub-01_task-rest_bold.nii.gz", 0) == "sub-01_task-rest"
    assert item_name("/x/run.zarr", 3) == "run"
    assert item_name(object(), 7) == "item-0007"


def test_batch_writes_every_item(dataset, tmp_path):
    imgs = [p for p, _ in dataset["runs"]]
    confs = [c for _, c in dataset["runs"]]
    masker = NiftiMapsMasker(dataset["maps"], mask_img=dataset["mask"], **PARAMS)
    out = str(tmp_path / "out.zarr")
    result = run_batch(masker, imgs, out, confounds=confs, tsv_dir=str(tmp_path / "tsv"))
    assert sorted(result.done) == ["sub-01_task-rest", "sub-02_task-rest", "sub-03_task-rest"]
    assert not result.failed
    for path, conf in dataset["runs"]:
        name = item_name(path, 0)
        ds = open_timeseries(out, name)
        np.testing.assert_allclose(ds["signals"].values, expected(dataset, path, conf), atol=1e-12)
        assert os.path.isfile(os.path.join(out, "runs", f"{name}.npz"))
        assert ds.attrs["checksum"].startswith("sha256:")
        assert ds["confounds"].shape[0] == nib.load(path).shape[3]
        tsv = tmp_path / "tsv" / name.split("_")[0] / "func" / f"{name}_atlas-maps_timeseries.tsv"
        table = np.loadtxt(tsv, delimiter="\t", skiprows=1)
        np.testing.assert_array_equal(table, ds["signals"].values)  # a TSV reads back exactly


def pack(out: str, name: str) -> str:
    return os.path.join(out, "runs", f"{name}.npz")


def test_rerun_skips_complete_and_redoes_half_written(dataset, tmp_path):
    imgs = [p for p, _ in dataset["runs"]]
    out = str(tmp_path / "out.zarr")
    masker = NiftiMapsMasker(dataset["maps"], mask_img=dataset["mask"], **PARAMS)
    first = run_batch(masker, imgs, out)
    assert len(first.done) == 3
    reference = open_timeseries(out)["signals"].load()
    # a run killed while writing sub-02: its object half-written beside its final name (and
    # so not listed), and not in the resume index
    data = open(pack(out, "sub-02_task-rest"), "rb").read()
    os.remove(pack(out, "sub-02_task-rest"))
    with open(os.path.join(out, "runs", ".sub-02_task-rest.npz.partial"), "wb") as f:
        f.write(data[: len(data) // 2])
    untouched = os.path.getmtime(pack(out, "sub-01_task-rest"))
    second = run_batch(
        NiftiMapsMasker(dataset["maps"], mask_img=dataset["mask"], **PARAMS), imgs, out
    )
    assert second.done == ["sub-02_task-rest"]
    assert sorted(second.skipped) == ["sub-01_task-rest", "sub-03_task-rest"]
    assert os.path.getmtime(pack(out, "sub-01_task-rest")) == untouched
    again = open_timeseries(out)["signals"]
    assert list(again["run"].values) == list(reference["run"].values)
    np.testing.assert_array_equal(again.values, reference.values)


def test_refuses_foreign_output(dataset, tmp_path):
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("do not delete")
    masker = NiftiMapsMasker(dataset["maps"])
    with pytest.raises(FileExistsError, match="not a daskmasker batch store"):
        run_batch(masker, [dataset["runs"][0][0]], str(foreign), overwrite=True)
    assert (foreign / "thesis.txt").read_text() == "do not delete"


def test_cli_extract(dataset, tmp_path, capsys):
    imgs = [p for p, _ in dataset["runs"]]
    confs = [c for _, c in dataset["runs"]]
    out = str(tmp_path / "cli.zarr")
    code = main(
        [
            "extract",
            *imgs,
            "--maps",
            dataset["maps"],
            "--mask",
            dataset["mask"],
            "--confounds",
            *confs,
            "--standardize",
            "zscore_sample",
            "--detrend",
            "--out",
            out,
            "--no-progress",
        ]
    )
    assert code == 0
    assert "3 extracted" in capsys.readouterr().err  # the summary is logged on stderr
    report = (tmp_path / "cli.zarr.masker.html").read_text()  # beside the store, not inside
    assert "The masker has <b>6</b> spatial maps in total." in report
    assert (tmp_path / "cli.zarr.report.html").exists()
    assert not (tmp_path / "cli.zarr" / "report.html").exists()
    path, conf = dataset["runs"][1]
    got = open_timeseries(out, "sub-02_task-rest")["signals"].values
    np.testing.assert_allclose(got, expected(dataset, path, conf), atol=1e-12)


def test_cli_reports_failures_with_nonzero_exit(dataset, tmp_path, capsys):
    code = main(
        [
            "extract",
            str(tmp_path / "missing_bold.nii.gz"),
            "--maps",
            dataset["maps"],
            "--out",
            str(tmp_path / "o.zarr"),
            "--no-progress",
        ]
    )
    assert code != 0
    assert "missing_bold.nii.gz" in capsys.readouterr().err


def _finished_items(out: str) -> set[str]:
    """Runs the batch writing ``out`` has completed so far (their packed objects)."""
    try:
        return {
            n.removesuffix(".npz")
            for n in os.listdir(os.path.join(out, "runs"))
            if n.endswith(".npz") and not n.startswith(".")
        }
    except FileNotFoundError:
        return set()


@pytest.mark.parametrize(
    ("signum", "n_atlases"),
    [(signal.SIGKILL, 1), (signal.SIGINT, 1), (signal.SIGKILL, 2)],
    ids=["SIGKILL", "SIGINT", "SIGKILL-two-atlases"],
)
def test_interrupted_batch_resumes_with_identical_store(dataset, tmp_path, signum, n_atlases):
    """A batch killed (SIGKILL) or interrupted (SIGINT) resumes: finished items untouched,
    results identical to an uninterrupted run; with two atlases (``--maps`` twice: a store
    each, ``OUT/<atlas>.zarr``), so is each atlas's store."""
    imgs = [p for p, _ in dataset["runs"]] * 6
    maps = [dataset["maps"], str(tmp_path / "other.nii.gz")][:n_atlases]
    make_maps(n_maps=4, seed=7, dtype=np.float64).to_filename(tmp_path / "other.nii.gz")
    args = [*(a for m in maps for a in ("--maps", m)), "--detrend", "--no-progress"]

    def stores(out: str) -> list[str]:
        names = [os.path.basename(m).removesuffix(".nii.gz") for m in maps]
        return [out] if n_atlases == 1 else [os.path.join(out, f"{n}.zarr") for n in names]

    def finished(out: str) -> dict[str, set[str]]:
        return {store: _finished_items(store) for store in stores(out)}

    ref_out = str(tmp_path / "ref.zarr")
    assert main(["extract", *imgs, *args, "--out", ref_out]) == 0
    out = str(tmp_path / "killed.zarr")
    cmd = [sys.executable, "-m", "daskmasker.cli", "extract", *imgs, *args, "--out", out]
    # the 18 items are written within 0.2 s: on a loaded machine the signal, sent once the
    # first is seen, can come after the last; then the batch is started again (3 tries; a
    # batch that ignored the signal would finish every time)
    for _ in range(3):
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        try:
            while time.time() < deadline and proc.poll() is None:
                if any(finished(out).values()):
                    break
                time.sleep(0.01)
            proc.send_signal(signum)
        finally:
            proc.wait()
        before = finished(out)
        if not all(len(runs) == len(imgs) for runs in before.values()):
            break
    assert any(before.values()), "the batch was killed before finishing any item"
    assert not all(len(runs) == len(imgs) for runs in before.values()), "it finished first"
    stamps = {pack(s, n): os.path.getmtime(pack(s, n)) for s, runs in before.items() for n in runs}
    assert main(["extract", *imgs, *args, "--out", out]) == 0
    for path, stamp in stamps.items():
        assert os.path.getmtime(path) == stamp
    for store, reference in zip(stores(out), stores(ref_out), strict=True):
        got, want = open_timeseries(store), open_timeseries(reference)
        runs = sorted(_finished_items(store))
        assert list(got["run"].values) == list(want["run"].values) == runs
        assert len(runs) == len(imgs)
        np.testing.assert_array_equal(got["signals"].values, want["signals"].values)


@pytest.mark.parametrize("whole_item_bytes", [None, 0], ids=["whole", "graph-per-item"])
@pytest.mark.parametrize("workers", [None, 2])
def test_a_bad_item_is_recorded_and_the_batch_goes_on(dataset, tmp_path, workers, whole_item_bytes):
    """An item whose graph cannot be built (a missing file) fails alone, locally and on a
    LocalCluster (where each graph is built when a worker is free for it), whether the small
    items run whole on the workers or (limit 0) one graph per item is built in the client."""
    import dask

    from daskmasker import dask_client

    limit = {} if whole_item_bytes is None else {"daskmasker.batch.whole-item-bytes": 0}

    imgs = [p for p, _ in dataset["runs"]]
    missing = str(tmp_path / "sub-09_task-rest_bold.nii.gz")
    imgs.insert(1, missing)
    masker = NiftiMapsMasker(dataset["maps"], mask_img=dataset["mask"], **PARAMS).fit(imgs[0])
    out = str(tmp_path / "out.zarr")
    with dask.config.set(limit), dask_client(workers=workers) as client:
        result = run_batch(masker, imgs, out, client=client)
    assert sorted(result.done) == ["sub-01_task-rest", "sub-02_task-rest", "sub-03_task-rest"]
    assert list(result.failed) == ["sub-09_task-rest"]
    assert "sub-09_task-rest_bold.nii.gz" in result.failed["sub-09_task-rest"]
    for path, _ in dataset["runs"]:
        got = open_timeseries(out, item_name(path, 0))["signals"].values
        np.testing.assert_allclose(got, expected(dataset, path, None), atol=1e-12)
    assert "sub-09_task-rest" not in open_timeseries(out)["run"].values
