"""Batch extraction into one resumable Zarr store, and the ``extract`` CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
import zarr

from daskmasker import NiftiMapsMasker
from daskmasker.batch.run import item_name, run_batch
from daskmasker.batch.store import COMPLETE_ATTR, INDEX_ATTR
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
        ds = xr.open_zarr(out, group=name, consolidated=False)
        np.testing.assert_allclose(ds["signals"].values, expected(dataset, path, conf), atol=1e-12)
        assert ds.attrs[COMPLETE_ATTR] is True
        assert ds.attrs["checksum"].startswith("sha256:")
        assert ds["confounds"].shape[0] == nib.load(path).shape[3]
        tsv = tmp_path / "tsv" / name.split("_")[0] / "func" / f"{name}_atlas-maps_timeseries.tsv"
        table = np.loadtxt(tsv, delimiter="\t", skiprows=1)
        np.testing.assert_allclose(table, ds["signals"].values, rtol=1e-12)


def test_rerun_skips_complete_and_redoes_half_written(dataset, tmp_path):
    imgs = [p for p, _ in dataset["runs"]]
    out = str(tmp_path / "out.zarr")
    masker = NiftiMapsMasker(dataset["maps"], mask_img=dataset["mask"], **PARAMS)
    first = run_batch(masker, imgs, out)
    assert len(first.done) == 3
    reference = {
        n: xr.open_zarr(out, group=n, consolidated=False)["signals"].values for n in first.done
    }
    # simulate a run killed while writing sub-02: the group exists but was never marked complete
    # (nor, then, recorded in the root's index of complete items)
    group = zarr.open_group(out, path="sub-02_task-rest", mode="a")
    del group.attrs[COMPLETE_ATTR]
    root = zarr.open_group(out, mode="a")
    root.attrs[INDEX_ATTR] = [n for n in root.attrs[INDEX_ATTR] if n != "sub-02_task-rest"]
    group["signals"][:] = 0
    untouched = os.path.getmtime(os.path.join(out, "sub-01_task-rest", "signals", "zarr.json"))
    second = run_batch(
        NiftiMapsMasker(dataset["maps"], mask_img=dataset["mask"], **PARAMS), imgs, out
    )
    assert second.done == ["sub-02_task-rest"]
    assert sorted(second.skipped) == ["sub-01_task-rest", "sub-03_task-rest"]
    assert (
        os.path.getmtime(os.path.join(out, "sub-01_task-rest", "signals", "zarr.json")) == untouched
    )
    for name, values in reference.items():
        again = xr.open_zarr(out, group=name, consolidated=False)["signals"].values
        np.testing.assert_array_equal(again, values)


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
    got = xr.open_zarr(out, group="sub-02_task-rest", consolidated=False)["signals"].values
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
    """Items the batch writing ``out`` has marked complete so far; the store may be mid-write
    (its directory exists before its ``zarr.json``, a group's before its metadata)."""
    finished = set()
    if not os.path.exists(os.path.join(out, "zarr.json")):
        return finished
    for entry in os.scandir(out):
        meta = os.path.join(entry.path, "zarr.json")
        if entry.is_dir() and os.path.exists(meta):
            try:
                if zarr.open_group(entry.path, mode="r").attrs.get(COMPLETE_ATTR):
                    finished.add(entry.name)
            except (OSError, ValueError, zarr.errors.BaseZarrError):
                continue  # metadata being written: not finished yet
    return finished


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_batch_resumes_with_identical_store(dataset, tmp_path, signum):
    """A batch killed (SIGKILL) or interrupted (SIGINT) resumes: finished items untouched,
    results identical to an uninterrupted run."""
    imgs = [p for p, _ in dataset["runs"]] * 6
    ref_out = str(tmp_path / "ref.zarr")
    args = ["--maps", dataset["maps"], "--detrend", "--no-progress"]
    assert main(["extract", *imgs, *args, "--out", ref_out]) == 0
    out = str(tmp_path / "killed.zarr")
    cmd = [sys.executable, "-m", "daskmasker.cli", "extract", *imgs, *args, "--out", out]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if _finished_items(out):
                break
            time.sleep(0.05)
        proc.send_signal(signum)
    finally:
        proc.wait()
    root = zarr.open_group(out, mode="r")
    finished = {n for n in root.group_keys() if root[n].attrs.get(COMPLETE_ATTR)}
    assert finished, "the batch was killed before finishing any item"
    assert len(finished) < len(imgs), "the batch finished before it could be killed"
    stamps = {n: os.path.getmtime(os.path.join(out, n, "signals", "zarr.json")) for n in finished}
    assert main(["extract", *imgs, *args, "--out", out]) == 0
    for name in finished:
        assert os.path.getmtime(os.path.join(out, name, "signals", "zarr.json")) == stamps[name]
    assert sorted(zarr.open_group(out, mode="r").group_keys()) == sorted(
        zarr.open_group(ref_out, mode="r").group_keys()
    )
    for name in zarr.open_group(ref_out, mode="r").group_keys():
        a = xr.open_zarr(out, group=name, consolidated=False)["signals"].values
        b = xr.open_zarr(ref_out, group=name, consolidated=False)["signals"].values
        np.testing.assert_array_equal(a, b)


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
        got = xr.open_zarr(out, group=item_name(path, 0), consolidated=False)["signals"].values
        np.testing.assert_allclose(got, expected(dataset, path, None), atol=1e-12)
    assert "sub-09_task-rest" not in zarr.open_group(out, mode="r")
