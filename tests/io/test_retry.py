"""Storage failures while reading, from a real HTTP server on 127.0.0.1 (``tests/httpserver.py``)
through fsspec's HTTP file system: transient ones are retried with the configured backoff and the
reading goes on where it stopped; permanent ones are raised at once, naming the URL.
"""

from __future__ import annotations

import gzip
import itertools

import aiohttp
import dask
import numpy as np
import pytest

from daskmasker import NiftiMapsMasker, config, open_nifti, open_timeseries, run_batch
from daskmasker.io import retry as retry_mod
from daskmasker.io.retry import RetriesExhausted

from helpers import make_data, make_maps
from httpserver import file_server

ATTEMPTS, BACKOFF = 4, 0.02
BLOCK = 2**16  # the HTTP file system's read-ahead beyond a read (igzip reads 512 KiB)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    maps = make_maps(dtype=np.float64)
    maps.to_filename(root / "maps.nii.gz")
    img = make_data(maps, n_scans=400)  # a 2.6 MB .nii.gz: igzip reads it 512 KiB at a time
    img.to_filename(root / "sub-01_task-rest_bold.nii")
    img.to_filename(root / "sub-01_task-rest_bold.nii.gz")
    blob = bytearray((root / "sub-01_task-rest_bold.nii.gz").read_bytes())
    blob[-8] ^= 0xFF  # the gzip trailer's CRC32
    (root / "crc_bold.nii.gz").write_bytes(bytes(blob))
    expected = np.asarray(img.dataobj).T
    with file_server(root) as server:
        server.stall = 2.0
        yield server, root, expected


@pytest.fixture
def http(site, monkeypatch):
    """The server (log and faults cleared), retry settings, and the delays slept between tries."""
    server, root, expected = site
    server.reset()
    delays = []

    def sleep(seconds):
        delays.append(seconds)
        retry_mod.time.sleep(seconds)

    monkeypatch.setattr(retry_mod, "sleep", sleep)
    options = {
        "block_size": BLOCK,
        "client_kwargs": {"timeout": aiohttp.ClientTimeout(sock_read=0.5)},
    }
    config.get("retry.attempts")  # defaults registered before (not inside) dask.config.set
    settings = {"daskmasker.retry.attempts": ATTEMPTS, "daskmasker.retry.backoff": BACKOFF}
    with dask.config.set(settings):
        yield server, root, expected, delays, options


def _gaps(requests) -> list[float]:
    return [b.time - a.time for a, b in itertools.pairwise(requests)]


@pytest.mark.parametrize("kind", ["503", "reset", "stall"])
@pytest.mark.parametrize("name", ["sub-01_task-rest_bold.nii", "sub-01_task-rest_bold.nii.gz"])
def test_transient_errors_at_open_are_retried_with_backoff(http, kind, name):
    server, _, expected, delays, options = http
    fault = server.fail(name, kind, nth=[1, 2])
    img = open_nifti(f"{server.url}/{name}", storage_options=options, chunks=10)
    assert fault.hits == [1, 2] and len(server.requests(name, "GET")) == 3
    # aiohttp itself resends at once a request whose reused connection was reset
    assert len(delays) == 2 or (kind == "reset" and len(delays) == 1)
    assert delays == [BACKOFF * 2**i for i in range(len(delays))]
    gaps = _gaps(server.requests(name, "GET"))[-len(delays) :]
    assert all(gap >= delay for gap, delay in zip(gaps, delays, strict=True)), gaps
    np.testing.assert_array_equal(img.values, expected)


@pytest.mark.parametrize("kind", ["503", "reset", "truncate", "stall"])
def test_gzip_stream_cut_mid_body_goes_on_where_it_stopped(http, kind):
    """The stream's 3rd request fails: the read resumes at that request's offset (the
    decompressor does not start over) and the values are exact."""
    server, _, expected, delays, options = http
    name = "sub-01_task-rest_bold.nii.gz"
    img = open_nifti(f"{server.url}/{name}", storage_options=options, chunks=50)
    server.reset()
    server.fail(name, kind, nth=3)
    np.testing.assert_array_equal(img.values, expected)
    gets = server.requests(name, "GET")
    # aiohttp itself resends at once a request whose reused connection was reset
    assert delays == [BACKOFF] or (kind == "reset" and delays == [])
    assert len(gets) >= 5 and gets[3].start == gets[2].start > 0, [g.start for g in gets]
    starts = [g.start for i, g in enumerate(gets) if i != 2]
    assert starts == sorted(set(starts)), f"the stream never went back: {starts}"


def test_nii_chunk_reads_are_retried(http):
    server, _, expected, delays, options = http
    name = "sub-01_task-rest_bold.nii"
    img = open_nifti(f"{server.url}/{name}", storage_options=options, chunks=10)
    server.reset()
    server.fail(name, "truncate", nth=3)
    server.fail(name, "503", nth=4)
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(img.values, expected)
    assert delays == [BACKOFF, 2 * BACKOFF]


def test_persistent_failures_stop_after_the_configured_attempts(http):
    server, _, _, delays, options = http
    name = "sub-01_task-rest_bold.nii.gz"
    server.fail(name, "503")
    url = f"{server.url}/{name}"
    with pytest.raises(RetriesExhausted, match=rf"'{url}': still failing after 4 attempts"):
        open_nifti(url, storage_options=options)
    assert len(server.requests(name, "GET")) == ATTEMPTS
    assert delays == [BACKOFF, 2 * BACKOFF, 4 * BACKOFF]


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [("404", FileNotFoundError, "File not found: '{url}'"), ("403", PermissionError, "access d")],
)
def test_missing_or_forbidden_files_are_not_retried(http, kind, error, message):
    server, _, _, delays, options = http
    name = "sub-01_task-rest_bold.nii.gz"
    server.fail(name, kind, method="HEAD")
    server.fail(name, kind, method="GET")
    url = f"{server.url}/{name}"
    with pytest.raises(error, match=message.format(url=url)) as info:
        open_nifti(url, storage_options=options)
    assert url in str(info.value)
    assert delays == [] and len(server.requests(name)) == 2  # fsspec asks HEAD, then GET


def test_corrupt_gzip_is_not_retried(http):
    server, _, _, delays, options = http
    url = f"{server.url}/crc_bold.nii.gz"
    img = open_nifti(url, storage_options=options, chunks=10)
    server.reset()
    with pytest.raises(OSError, match=rf"of '{url}' \(truncated or corrupt\?\): CRC check failed"):
        img.values  # noqa: B018
    assert delays == []
    starts = [g.start for g in server.requests("crc_bold.nii.gz", "GET")]
    assert starts == sorted(set(starts)), "the stream was read once"


def test_batch_reading_through_a_flaky_connection(http, tmp_path):
    server, root, _, delays, options = http
    name = "sub-01_task-rest_bold.nii.gz"
    masker = NiftiMapsMasker(str(root / "maps.nii.gz"))
    server.fail(name, "503", nth=3)
    out = str(tmp_path / "out.zarr")
    result = run_batch(masker, [f"{server.url}/{name}"], out, storage_options=options)
    assert result.done == ["sub-01_task-rest"] and not result.failed
    assert delays == [BACKOFF]
    ds = open_timeseries(out, "sub-01_task-rest")
    with gzip.open(root / name) as f:
        assert f.read(4)  # the served file is intact
    np.testing.assert_array_equal(ds["signals"].values, masker.transform(str(root / name)))
