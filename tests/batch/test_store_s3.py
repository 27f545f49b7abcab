"""Batch stores in a bucket (a real S3 server on 127.0.0.1): fingerprints follow the objects'
contents, and open_timeseries, info and re-cleaning work on s3:// stores."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import s3fs

from daskmasker import NiftiMapsMasker, open_timeseries, reclean, run_batch
from daskmasker.batch.read import store_info
from daskmasker.batch.record import StaleStoreError

from helpers import write_run
from s3server import s3_server, storage_options

PARAMS = dict(standardize="zscore_sample", detrend=True)


@pytest.fixture
def bucket(study):
    """The study's runs uploaded to a bucket; the maps, mask and confounds stay local."""
    with s3_server() as endpoint:
        opts = storage_options(endpoint)
        fs = s3fs.S3FileSystem(**opts)
        name = f"lab-{uuid.uuid4().hex[:8]}"  # moto keeps buckets from one server to the next
        fs.mkdir(name)
        urls = []
        for run in study["runs"]:
            url = f"s3://{name}/ds/{run['name']}_bold.nii.gz"
            fs.put(run["img"], url)
            urls.append(url)
        yield {"study": study, "opts": opts, "fs": fs, "urls": urls, "root": f"s3://{name}"}


def extract(bucket, out, **params):
    study = bucket["study"]
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], **{**PARAMS, **params})
    confs = [r["conf"] for r in study["runs"]]
    result = run_batch(masker, bucket["urls"], out, confounds=confs, storage_options=bucket["opts"])
    assert not result.failed, result.failed
    return result


def test_a_changed_object_is_refused_and_an_unchanged_one_skipped(bucket):
    out = f"{bucket['root']}/derivatives/ts.zarr"
    assert len(extract(bucket, out).done) == 2
    assert len(extract(bucket, out).skipped) == 2
    study = bucket["study"]
    changed = study["root"] / "changed_bold.nii.gz"
    write_run(changed, study["maps_img"], study["runs"][1]["n"], seed=77)
    bucket["fs"].put(str(changed), bucket["urls"][1])
    with pytest.raises(StaleStoreError, match="run sub-02_task-rest: image content changed"):
        extract(bucket, out)
    assert "image changed" in store_info(out, storage_options=bucket["opts"])


def test_reclean_open_and_describe_stores_in_a_bucket(bucket):
    out, new = f"{bucket['root']}/ts.zarr", f"{bucket['root']}/psc.zarr"
    extract(bucket, out)
    reclean(out, new, storage_options=bucket["opts"], standardize="psc", detrend=False)
    fresh = f"{bucket['root']}/fresh.zarr"
    extract(bucket, fresh, standardize="psc", detrend=False)
    opts = bucket["opts"]
    got = open_timeseries(new, storage_options=opts)["signals"]
    want = open_timeseries(fresh, storage_options=opts)["signals"]
    assert got.dims == ("run", "time", "region")
    np.testing.assert_allclose(got.values, want.values, rtol=1e-10, equal_nan=True)
    text = store_info(new, storage_options=opts)
    assert f"re-cleaned from: {out}" in text and text.count(" current") == 2


def test_several_atlases_from_the_command_line_into_a_bucket(bucket, tmp_path, capsys):
    """``extract --maps A --maps B --out s3://...``: a store per atlas in the bucket, each with
    its reports beside it, read back by open_timeseries; a rerun skips every run of both."""
    import json

    from daskmasker.cli import main

    from helpers import make_maps

    study, opts, fs = bucket["study"], bucket["opts"], bucket["fs"]
    other = str(tmp_path / "other.nii.gz")
    make_maps(n_maps=4, seed=7, dtype=np.float64).to_filename(other)
    out = f"{bucket['root']}/derivatives"
    argv = ["extract", *bucket["urls"], "--maps", study["maps"], "--maps", other, "--out", out]
    argv += ["--detrend", "--t-r", "2", "--no-progress", "--storage-options", json.dumps(opts)]
    assert main(argv) == 0
    for name, n_maps in (("maps", 6), ("other", 4)):
        store = f"{out}/{name}.zarr"
        ds = open_timeseries(store, storage_options=opts)
        assert list(ds["run"].values) == ["sub-01_task-rest", "sub-02_task-rest"]
        assert ds.sizes["region"] == n_maps
        assert fs.exists(f"{store}.masker.html") and fs.exists(f"{store}.report.html")
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().err.count("0 extracted, 2 already complete, 0 failed") == 2
    for name in ("maps", "other"):
        info = store_info(f"{out}/{name}.zarr", storage_options=opts)
        assert info.count(" current") == 2
