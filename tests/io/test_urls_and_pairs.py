"""Inputs named in errors: confounds and outputs given as URLs (a real S3 server on 127.0.0.1,
moto), and two-file NIfTI-1 / Analyze 7.5 images (``.hdr`` + ``.img``)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import s3fs

from daskmasker import NiftiMapsMasker, open_nifti, open_timeseries, run_batch, to_zarr
from daskmasker.cli import main

from helpers import make_data, make_maps
from s3server import s3_server, storage_options, use_aws_environment


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    maps = make_maps(dtype=np.float64)
    paths = {"maps": str(root / "maps.nii.gz"), "run": str(root / "sub-01_bold.nii")}
    maps.to_filename(paths["maps"])
    make_data(maps, n_scans=20, seed=1, dtype=np.float32).to_filename(paths["run"])
    paths["confounds"] = str(root / "confounds.tsv")
    np.savetxt(paths["confounds"], np.random.default_rng(0).normal(size=(20, 2)), delimiter="\t")
    return paths


@pytest.fixture(scope="module")
def s3(files):
    with s3_server() as endpoint:
        fs = s3fs.S3FileSystem(**storage_options(endpoint))
        fs.mkdir("lab")
        fs.put(files["confounds"], "lab/ds/confounds.tsv")
        yield {"endpoint": endpoint, "opts": storage_options(endpoint), "fs": fs}


@pytest.fixture
def aws_env(s3, monkeypatch):
    use_aws_environment(monkeypatch, s3["endpoint"])
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def test_confounds_from_s3_equal_the_local_file(files, aws_env):
    masker = NiftiMapsMasker(files["maps"], standardize="zscore_sample")
    local = masker.fit_transform(files["run"], confounds=files["confounds"])
    remote = masker.fit_transform(files["run"], confounds="s3://lab/ds/confounds.tsv")
    np.testing.assert_array_equal(remote, local)
    assert not np.allclose(local, masker.fit_transform(files["run"]))  # the confounds count


def test_run_batch_stores_s3_confounds_as_the_local_file(files, s3, aws_env, tmp_path):
    """run_batch with confounds in a bucket (a header row, as fMRIPrep's): the stored signals
    and confound names equal those of the local file (the names were read with open(), which
    refused every s3:// confounds file, failing each run)."""
    table = np.loadtxt(files["confounds"], delimiter="\t")
    named = tmp_path / "named.tsv"
    named.write_text("csf\twhite_matter\n" + "\n".join("\t".join(map(str, r)) for r in table))
    s3["fs"].put(str(named), "lab/ds/named.tsv")
    masker = NiftiMapsMasker(files["maps"], standardize="zscore_sample")
    stores = {}
    for where, confounds in [("local", str(named)), ("remote", "s3://lab/ds/named.tsv")]:
        stores[where] = str(tmp_path / f"{where}.zarr")
        result = run_batch(masker, [files["run"]], stores[where], confounds=[confounds])
        assert not result.failed, result.failed
    local, remote = (open_timeseries(stores[w], "sub-01") for w in ("local", "remote"))
    np.testing.assert_array_equal(remote["signals"].values, local["signals"].values)
    assert list(remote["confound"].values) == ["csf", "white_matter"]
    assert list(local["confound"].values) == ["csf", "white_matter"]


def test_missing_s3_confounds_name_the_url_unmangled(files, aws_env):
    masker = NiftiMapsMasker(files["maps"]).fit()
    with pytest.raises(FileNotFoundError, match="'s3://lab/ds/missing.tsv'"):
        masker.transform(files["run"], confounds="s3://lab/ds/missing.tsv")


@pytest.mark.parametrize("write", ["to_zarr", "run_batch"])
def test_a_missing_output_bucket_names_the_url(files, s3, write):
    url = f"s3://no-such-bucket/out/{write}.zarr"
    with pytest.raises(FileNotFoundError, match=f"'{url}': the bucket 'no-such-bucket' does not"):
        if write == "to_zarr":
            to_zarr(files["run"], url, storage_options=s3["opts"])
        else:
            run_batch(
                NiftiMapsMasker(files["maps"]), [files["run"]], url, storage_options=s3["opts"]
            )
    # negative control: an existing bucket is written
    to_zarr(files["run"], "s3://lab/out/ok.zarr", storage_options=s3["opts"], overwrite=True)
    assert s3["fs"].exists("lab/out/ok.zarr/zarr.json")


def test_the_cli_names_a_missing_output_bucket(files, s3, capsys):
    url = "s3://no-such-bucket/timeseries.zarr"
    argv = ["extract", files["run"], "--maps", files["maps"], "--out", url, "--no-progress"]
    assert main([*argv, "--storage-options", json.dumps(s3["opts"])]) == 2
    assert f"cannot write '{url}': the bucket 'no-such-bucket' does not exist" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("kind", [nib.Nifti1Pair, nib.AnalyzeImage])
@pytest.mark.parametrize("named", [".hdr", ".img"])
def test_a_hdr_img_pair_loads_as_nibabel_reads_it(files, tmp_path, kind, named):
    single = nib.load(files["run"])
    data = np.asarray(single.dataobj)
    pair = kind(data, single.affine)
    nib.save(pair, tmp_path / "sub-01_bold.img")
    ref = nib.load(tmp_path / "sub-01_bold.hdr")
    img = open_nifti(tmp_path / f"sub-01_bold{named}")
    np.testing.assert_array_equal(img.values, np.asarray(ref.dataobj).T)
    masker = NiftiMapsMasker(files["maps"], standardize="zscore_sample")
    np.testing.assert_allclose(
        masker.fit_transform(str(tmp_path / f"sub-01_bold{named}")),
        masker.fit_transform(ref),
        rtol=1e-12,
        atol=1e-12,
    )


def test_a_pair_without_its_image_file_names_both(files, tmp_path):
    nib.save(nib.Nifti1Pair(np.zeros((4, 5, 6, 3), np.float32), np.eye(4)), tmp_path / "x.img")
    (tmp_path / "x.img").unlink()
    with pytest.raises(ValueError, match=r"x\.img', the image file of the header '.*x\.hdr'"):
        NiftiMapsMasker(files["maps"]).fit_transform(str(tmp_path / "x.hdr"))
    (tmp_path / "y.hdr").write_bytes(b"\0" * 40)
    (tmp_path / "y.img").write_bytes(b"\0" * 400)
    with pytest.raises(ValueError, match=r"y\.hdr' is not an image header: 40 bytes"):
        open_nifti(tmp_path / "y.img")
