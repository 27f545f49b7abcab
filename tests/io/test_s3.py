"""Object stores: reading and writing s3:// through a real S3 server on 127.0.0.1 (moto, HTTP)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import s3fs

from daskmasker import (
    NiftiMapsMasker,
    dask_client,
    open_nifti,
    open_timeseries,
    open_zarr,
    run_batch,
    to_zarr,
)
from daskmasker.cli import main

from helpers import make_data, make_maps, make_mask, stop_processes
from s3server import s3_server, storage_options, use_aws_environment

PARAMS = dict(standardize="zscore_sample", detrend=True)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The server, a private bucket with a BIDS-like layout and a public-read bucket."""
    local = tmp_path_factory.mktemp("s3src")
    maps = make_maps(dtype=np.float64)
    files = {"maps": local / "maps.nii.gz", "mask": local / "mask.nii.gz"}
    maps.to_filename(files["maps"])
    make_mask().to_filename(files["mask"])
    runs = []
    for sub in (1, 2):
        name = f"sub-{sub:02d}_task-rest_bold.nii.gz"
        path = local / name
        make_data(maps, n_scans=30, seed=sub).to_filename(path)
        conf = local / f"sub-{sub:02d}_task-rest_desc-confounds_timeseries.tsv"
        np.savetxt(conf, np.random.default_rng(sub).normal(size=(30, 2)), delimiter="\t")
        runs.append((path, conf, f"sub-{sub:02d}/func/{name}", f"sub-{sub:02d}/func/{conf.name}"))
    nii = local / "sub-01_task-rest_bold.nii"
    make_data(maps, n_scans=30, seed=1).to_filename(nii)
    with s3_server() as endpoint:
        opts = storage_options(endpoint)
        fs = s3fs.S3FileSystem(**opts)
        fs.mkdir("lab-private")
        fs.mkdir("open-data")
        for path, conf, key, conf_key in runs:
            fs.put(str(path), f"lab-private/ds/{key}")
            fs.put(str(conf), f"lab-private/ds/{conf_key}")
        public = "open-data/ds/sub-01/func/sub-01_task-rest_bold.nii.gz"
        fs.put(str(runs[0][0]), public)
        fs.chmod(public, acl="public-read")
        fs.put(str(nii), "lab-private/ds/sub-01/func/sub-01_task-rest_bold.nii")
        fs.put(str(files["maps"]), "lab-private/atlas/maps.nii.gz")
        fs.put(str(files["mask"]), "lab-private/atlas/mask.nii.gz")
        yield {
            "endpoint": endpoint,
            "opts": opts,
            "fs": fs,
            "runs": runs,
            "files": files,
            "nii": nii,
        }


@pytest.fixture
def aws_env(s3, monkeypatch):
    """Credentials and endpoint from the usual AWS environment variables."""
    use_aws_environment(monkeypatch, s3["endpoint"])


def local_signals(s3, run):
    masker = NiftiMapsMasker(str(s3["files"]["maps"]), mask_img=str(s3["files"]["mask"]), **PARAMS)
    return masker.fit_transform(str(run[0]), confounds=str(run[1]))


@pytest.mark.parametrize(
    "key",
    ["ds/sub-01/func/sub-01_task-rest_bold.nii.gz", "ds/sub-01/func/sub-01_task-rest_bold.nii"],
)
def test_open_nifti_from_s3_equals_local(s3, key):
    img = open_nifti(f"s3://lab-private/{key}", storage_options=s3["opts"])
    local = open_nifti(str(s3["runs"][0][0]) if key.endswith(".gz") else str(s3["nii"]))
    np.testing.assert_array_equal(img.values, local.values)
    assert img.attrs["affine"] == local.attrs["affine"]


def test_convert_s3_gz_into_s3_zarr_and_extract(s3):
    url = "s3://lab-private/ds/sub-01/func/sub-01_task-rest_bold.nii.gz"
    store = "s3://lab-private/derivatives/sub-01_task-rest_bold.zarr"
    to_zarr(url, store, storage_options=s3["opts"], overwrite=True)
    img = open_zarr(store, storage_options=s3["opts"])
    np.testing.assert_array_equal(img.values, open_nifti(str(s3["runs"][0][0])).values)
    masker = NiftiMapsMasker(str(s3["files"]["maps"]), mask_img=str(s3["files"]["mask"]), **PARAMS)
    got = masker.fit_transform(img, confounds=str(s3["runs"][0][1]))
    np.testing.assert_array_equal(got, local_signals(s3, s3["runs"][0]))


def test_masker_reads_urls_with_aws_environment(s3, aws_env):
    masker = NiftiMapsMasker(
        "s3://lab-private/atlas/maps.nii.gz",
        mask_img="s3://lab-private/atlas/mask.nii.gz",
        **PARAMS,
    )
    run = s3["runs"][1]
    got = masker.fit_transform(f"s3://lab-private/ds/{run[2]}", confounds=str(run[1]))
    np.testing.assert_array_equal(got, local_signals(s3, run))


def test_anonymous_public_bucket(s3):
    opts = {"anon": True, "endpoint_url": s3["endpoint"]}
    img = open_nifti(
        "s3://open-data/ds/sub-01/func/sub-01_task-rest_bold.nii.gz", storage_options=opts
    )
    assert img.shape[0] == 30


def test_access_denied_names_the_url(s3):
    url = "s3://lab-private/ds/sub-01/func/sub-01_task-rest_bold.nii.gz"
    with pytest.raises(PermissionError, match="access denied to 's3://lab-private/ds/sub-01"):
        open_nifti(url, storage_options={"anon": True, "endpoint_url": s3["endpoint"]})


def test_batch_from_bucket_into_bucket_resumes(s3):
    urls = [f"s3://lab-private/ds/{r[2]}" for r in s3["runs"]]
    confs = [str(r[1]) for r in s3["runs"]]
    out = "s3://lab-private/derivatives/timeseries.zarr"
    masker = NiftiMapsMasker(str(s3["files"]["maps"]), mask_img=str(s3["files"]["mask"]), **PARAMS)
    first = run_batch(
        masker,
        urls,
        out,
        confounds=confs,
        storage_options=s3["opts"],
        tsv_dir="s3://lab-private/derivatives/tsv",
        overwrite=True,
    )
    assert sorted(first.done) == ["sub-01_task-rest", "sub-02_task-rest"]
    again = run_batch(masker, urls, out, confounds=confs, storage_options=s3["opts"])
    assert again.done == [] and len(again.skipped) == 2
    for run in s3["runs"]:
        name = run[2].split("/")[-1].replace("_bold.nii.gz", "")
        ds = open_timeseries(out, name, storage_options=s3["opts"])
        np.testing.assert_array_equal(ds["signals"].values, local_signals(s3, run))
        assert ds.attrs["checksum"].startswith("sha256:")
    assert s3["fs"].exists(
        "lab-private/derivatives/tsv/sub-01/func/sub-01_task-rest_atlas-maps_timeseries.tsv"
    )


def test_cli_with_custom_endpoint(s3, tmp_path):
    import json

    out = "s3://lab-private/derivatives/cli.zarr"
    code = main(
        [
            "extract",
            f"s3://lab-private/ds/{s3['runs'][0][2]}",
            "--maps",
            str(s3["files"]["maps"]),
            "--out",
            out,
            "--storage-options",
            json.dumps(s3["opts"]),
            "--no-progress",
            "--overwrite",
        ]
    )
    assert code == 0
    assert s3["fs"].exists("lab-private/derivatives/cli.zarr/runs/sub-01_task-rest.npz")


@pytest.mark.parametrize(
    "url",
    ["s3://no-such-bucket/sub-01_bold.nii.gz", "s3://lab-private/ds/missing_bold.nii.gz"],
)
def test_missing_bucket_or_key_names_the_url(s3, url):
    with pytest.raises(FileNotFoundError, match=url.split("/")[-1]):
        open_nifti(url, storage_options=s3["opts"])


def test_bad_endpoint_names_the_url():
    from s3server import free_port

    opts = storage_options(
        f"http://127.0.0.1:{free_port()}",
        config_kwargs={"connect_timeout": 1, "retries": {"max_attempts": 1}},
    )
    with pytest.raises(OSError, match="sub-01_bold.nii.gz"):
        open_nifti("s3://lab-private/sub-01_bold.nii.gz", storage_options=opts)


def test_extraction_from_s3_zarr_on_a_cluster(s3, aws_env):
    """Workers of a real LocalCluster read their own chunks of a Zarr store in the bucket."""

    store = "s3://lab-private/derivatives/sub-02_task-rest_bold.zarr"
    to_zarr(f"s3://lab-private/ds/{s3['runs'][1][2]}", store, overwrite=True, chunks=7)
    masker = NiftiMapsMasker(str(s3["files"]["maps"]), mask_img=str(s3["files"]["mask"]), **PARAMS)
    with dask_client(workers=2) as client:  # 2 single-threaded processes on 127.0.0.1
        got = masker.fit_transform(store, confounds=str(s3["runs"][1][1]))
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert sum(executed.values()) > 0
    # chunks of 7 volumes change only the order of float64 sums
    np.testing.assert_allclose(got, local_signals(s3, s3["runs"][1]), rtol=0, atol=1e-12)


def _extract(s3, urls: list[str], out: str) -> subprocess.Popen:
    """``daskmasker extract`` in its own process, as a user would run it."""
    command = [
        sys.executable,
        "-m",
        "daskmasker.cli",
        "extract",
        *urls,
        "--maps",
        str(s3["files"]["maps"]),
        "--mask",
        str(s3["files"]["mask"]),
        "--standardize",
        "zscore_sample",
        "--detrend",
        "--out",
        out,
        "--storage-options",
        json.dumps(s3["opts"]),
        "--no-progress",
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _groups(fs, out: str) -> dict[str, dict]:
    """Each complete run of a batch store (its packed object): ETag and LastModified."""
    root = out.removeprefix("s3://")
    fs.invalidate_cache()
    runs = {}
    for path in fs.find(f"{root}/runs"):
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".npz"):
            info = fs.info(path)
            runs[name.removesuffix(".npz")] = {
                "complete": True,
                "objects": {path: (info["ETag"], info["LastModified"])},
            }
    return runs


def test_extract_killed_mid_batch_resumes_without_recomputing(s3):
    """``daskmasker extract`` is SIGKILLed once some runs are complete; no unfinished run is
    marked complete; a rerun leaves the finished runs' objects untouched (same ETag and
    LastModified), extracts the others, and the store equals an uninterrupted run's."""
    fs = s3["fs"]
    source = f"s3://lab-private/ds/{s3['runs'][0][2]}"
    urls = []
    for i in range(8):
        url = f"s3://lab-private/many/sub-{i:02d}_task-rest_bold.nii.gz"
        fs.copy(source.removeprefix("s3://"), url.removeprefix("s3://"))
        urls.append(url)
    out = "s3://lab-private/derivatives/resume.zarr"
    first = _extract(s3, urls, out)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            if len(_groups(fs, out)) >= 2:
                first.kill()
                break
            time.sleep(0.2)
        assert first.wait(60) == -9, "the batch ended before it was interrupted"
    finally:
        stop_processes([first])
    killed = _groups(fs, out)
    finished = {name for name, g in killed.items() if g["complete"]}
    assert 2 <= len(finished) < len(urls)
    again = _extract(s3, urls, out)
    _, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr
    resumed = _groups(fs, out)
    for name in finished:
        assert resumed[name]["objects"] == killed[name]["objects"], f"{name} was rewritten"
    assert f"{len(urls) - len(finished)} extracted, {len(finished)} already complete" in stderr
    assert len(resumed) == len(urls) and all(g["complete"] for g in resumed.values())
    whole = "s3://lab-private/derivatives/whole.zarr"
    masker = NiftiMapsMasker(str(s3["files"]["maps"]), mask_img=str(s3["files"]["mask"]), **PARAMS)
    assert len(run_batch(masker, urls, whole, storage_options=s3["opts"]).done) == len(urls)
    for name in resumed:
        got, want = (
            open_timeseries(store, name, storage_options=s3["opts"]) for store in (out, whole)
        )
        np.testing.assert_array_equal(got["signals"].values, want["signals"].values)
