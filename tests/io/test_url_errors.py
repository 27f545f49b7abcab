"""Every input and output given as a URL that cannot be used names the URL, whole and unmangled
(never ``s3:/bucket``), from Python and from the command line: a missing bucket, a missing key,
an unknown scheme and an HTTP 404, on a real S3 server (moto) and a real HTTP server, both on
127.0.0.1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import s3fs

from daskmasker import NiftiMapsMasker, open_timeseries, open_zarr, reclean, run_batch, to_zarr
from daskmasker.batch.connectome import write_relmats
from daskmasker.cli import main

from helpers import write_study
from httpserver import file_server
from s3server import s3_server, storage_options, use_aws_environment

CASES = {
    "missing bucket": "s3://no-such-bucket/ds/{name}",
    "missing key": "s3://url-errors/ds/missing/{name}",
    "unknown scheme": "s4://url-errors/ds/{name}",
    "HTTP 404": "{http}/missing/{name}",
}
OUTPUT_CASES = ("missing bucket", "unknown scheme", "HTTP 404")  # a missing key is a new store


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("urls")
    study = write_study(root)
    (root / "labels.txt").write_text("\n".join(f"r{k}" for k in range(6)))
    with s3_server() as endpoint, file_server(str(root)) as http:
        fs = s3fs.S3FileSystem(**storage_options(endpoint))
        fs.mkdir("url-errors")
        run = study["runs"][0]
        for local, key in (
            (run["img"], "ds/sub-01_task-rest_bold.nii.gz"),
            (run["conf"], "ds/sub-01_task-rest_desc-confounds_timeseries.tsv"),
            (study["maps"], "ds/maps.nii.gz"),
            (study["mask"], "ds/mask.nii.gz"),
            (str(root / "labels.txt"), "ds/labels.txt"),
        ):
            fs.put(local, f"url-errors/{key}")
        store = str(root / "study.zarr")
        run_batch(NiftiMapsMasker(study["maps"], standardize=None), [run["img"]], store)
        yield {
            "study": study,
            "store": store,
            "endpoint": endpoint,
            "http": http.url.rstrip("/"),
            "root": root,
        }


@pytest.fixture
def urls(servers, monkeypatch):
    """The case's URL of a file name; credentials and endpoint from the AWS environment."""
    use_aws_environment(monkeypatch, servers["endpoint"])
    return lambda case, name: CASES[case].format(name=name, http=servers["http"])


def _python_calls(study, root) -> dict:
    img, maps = study["runs"][0]["img"], study["maps"]
    return {
        "image": ("bold.nii.gz", lambda u: NiftiMapsMasker(maps).fit_transform(u)),
        "maps": ("maps.nii.gz", lambda u: NiftiMapsMasker(u).fit()),
        "mask": ("mask.nii.gz", lambda u: NiftiMapsMasker(maps, mask_img=u).fit()),
        "confounds": (
            "confounds.tsv",
            lambda u: NiftiMapsMasker(maps, standardize=None).fit(img).transform(img, confounds=u),
        ),
        "region names": ("labels.txt", lambda u: NiftiMapsMasker(maps, region_names=u).fit()),
        "image store": ("bold.zarr", open_zarr),
        "batch store": ("study.zarr", open_timeseries),
        "batch image": (
            "bold.nii.gz",
            lambda u: _raise_failed(run_batch(NiftiMapsMasker(maps), [u], str(root / "b.zarr"))),
        ),
    }


def _raise_failed(result):
    """A batch records a run that fails (the others go on): its message is the error."""
    (message,) = result.failed.values()
    raise RuntimeError(message)


PYTHON_INPUTS = (
    "image",
    "maps",
    "mask",
    "confounds",
    "region names",
    "image store",
    "batch store",
    "batch image",
)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("what", PYTHON_INPUTS)
def test_python_inputs_name_the_url(servers, urls, what, case):
    name, call = _python_calls(servers["study"], servers["root"])[what]
    url = urls(case, name)
    with pytest.raises((OSError, ValueError, RuntimeError)) as error:
        call(url)
    assert f"'{url}'" in str(error.value), str(error.value)


@pytest.mark.parametrize("case", OUTPUT_CASES)
@pytest.mark.parametrize(
    "write", ["to_zarr", "run_batch", "run_batch tsv_dir", "reclean tsv_dir", "write_relmats"]
)
def test_python_outputs_name_the_url(servers, urls, write, case, tmp_path):
    study, store = servers["study"], servers["store"]
    url = urls(case, "out.zarr" if write in ("to_zarr", "run_batch") else "derivatives")
    masker = NiftiMapsMasker(study["maps"], standardize=None)
    out = str(tmp_path / "out.zarr")
    with pytest.raises((OSError, ValueError)) as error:
        if write == "to_zarr":
            to_zarr(study["mask"], url)
        elif write == "run_batch":
            run_batch(masker, [study["runs"][0]["img"]], url)
        elif write == "run_batch tsv_dir":
            run_batch(masker, [study["runs"][0]["img"]], out, tsv_dir=url)
        elif write == "reclean tsv_dir":
            reclean(store, out, tsv_dir=url, detrend=True)
        else:
            write_relmats(store, url, ["correlation"])
    assert f"'{url}'" in str(error.value), str(error.value)
    assert "bucket 'http" not in str(error.value)  # a web server has no bucket: read-only
    assert not (tmp_path / "out.zarr").exists()  # refused before the store is begun


def _command_lines(study, root, store) -> dict:
    img, maps = study["runs"][0]["img"], study["maps"]
    out = str(root / "cli.zarr")
    extract = ["extract", img, "--maps", maps, "--out", out, "--overwrite", "--no-progress"]
    return {
        "extract image": ("bold.nii.gz", lambda u: ["extract", u, *extract[2:]]),
        "extract --maps": ("maps.nii.gz", lambda u: [*extract[:3], u, *extract[4:]]),
        "extract --mask": ("mask.nii.gz", lambda u: [*extract, "--mask", u]),
        "extract --confounds": ("c.tsv", lambda u: [*extract, "--confounds", u]),
        "extract --labels": ("labels.txt", lambda u: [*extract, "--labels", u]),
        "convert source": ("bold.nii.gz", lambda u: ["convert", u, str(root / "c.zarr")]),
        "info": ("study.zarr", lambda u: ["info", u]),
        "clean": ("study.zarr", lambda u: ["clean", u, "--out", str(root / "cl.zarr")]),
        "connectivity": (
            "study.zarr",
            lambda u: ["connectivity", u, "--kind", "correlation", "--out", str(root / "k")],
        ),
        "upgrade": ("study.zarr", lambda u: ["upgrade", u, str(root / "up.zarr")]),
        # outputs
        "extract --out": ("out.zarr", lambda u: [*extract[:4], "--out", u, "--no-progress"]),
        "convert store": ("out.zarr", lambda u: ["convert", img, u]),
        "extract --bids-dir": ("derivatives", lambda u: [*extract, "--bids-dir", u]),
        "clean --out": ("out.zarr", lambda u: ["clean", store, "--out", u]),
        "clean --bids-dir": (
            "derivatives",
            lambda u: ["clean", store, "--out", out, "--overwrite", "--bids-dir", u],
        ),
        "connectivity --out": (
            "derivatives",
            lambda u: ["connectivity", store, "--kind", "correlation", "--out", u],
        ),
    }


COMMANDS = (
    "extract image",
    "extract --maps",
    "extract --mask",
    "extract --confounds",
    "extract --labels",
    "convert source",
    "info",
    "clean",
    "connectivity",
    "upgrade",
    "extract --out",
    "convert store",
    "extract --bids-dir",
    "clean --out",
    "clean --bids-dir",
    "connectivity --out",
)
OUTPUTS = ("--out", "store", "--bids-dir")  # a missing key of an existing bucket is written


@pytest.mark.parametrize(
    ("command", "case"),
    [
        (command, case)
        for command in COMMANDS
        for case in (OUTPUT_CASES if command.endswith(OUTPUTS) else CASES)
    ],
)
def test_the_command_line_names_the_url(servers, urls, command, case, capsys):
    name, argv = _command_lines(servers["study"], servers["root"], servers["store"])[command]
    url = urls(case, name)
    assert main(argv(url)) == 2
    err = capsys.readouterr().err
    assert f"daskmasker {argv(url)[0]}: error: " in err and f"'{url}'" in err, err


def test_the_same_urls_that_exist_are_read(servers, urls, capsys):
    """Negative control: every input of ``extract`` from the bucket, as the tests above give
    them, but existing."""
    study, root = servers["study"], servers["root"]
    ds = "s3://url-errors/ds"
    out = str(root / "from-s3.zarr")
    argv = [
        "extract",
        f"{ds}/sub-01_task-rest_bold.nii.gz",
        "--maps",
        f"{ds}/maps.nii.gz",
        "--mask",
        f"{ds}/mask.nii.gz",
        "--confounds",
        f"{ds}/sub-01_task-rest_desc-confounds_timeseries.tsv",
        "--labels",
        f"{ds}/labels.txt",
        "--out",
        out,
        "--no-progress",
        "--storage-options",
        json.dumps(storage_options(servers["endpoint"])),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    got = open_timeseries(out)
    assert list(got["region_name"].values) == [f"r{k}" for k in range(6)]
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], standardize=None)
    want = masker.fit_transform(study["runs"][0]["img"], confounds=study["runs"][0]["conf"])
    np.testing.assert_allclose(got["signals"].values[0], want, rtol=1e-10, atol=1e-10)
