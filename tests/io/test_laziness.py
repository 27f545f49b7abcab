"""Opening, fitting and building graphs read no voxels; computing reads each chunk once.

The images are served over HTTP by a real server on 127.0.0.1 (``tests/httpserver.py``) that
logs every request and the bytes it sent, so the counts are what a remote store would see:
fsspec's read-ahead and Dask's probing reads included.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from daskmasker import NiftiMapsMasker, open_nifti, open_zarr, to_zarr

from helpers import make_data, write_maps_and_mask
from httpserver import file_server

N_SCANS, CHUNK = 60, 10
HEADER_BYTES = 4096  # a NIfTI header (540 bytes asked) or the first gzip block
KINDS = ["run.nii", "run.nii.gz", "run.zarr"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    paths = write_maps_and_mask(root)
    maps = paths.pop("maps_img")
    data = make_data(maps, n_scans=N_SCANS)
    data.to_filename(root / "run.nii")
    data.to_filename(root / "run.nii.gz")
    to_zarr(str(root / "run.nii"), str(root / "run.zarr"), chunks=CHUNK)
    volume = int(np.prod(data.shape[:3])) * 4
    assert CHUNK * volume > 10 * HEADER_BYTES  # a chunk read cannot pass for a header read
    with file_server(root) as server:
        yield server, root, paths


def _open(url: str):
    return open_zarr(url) if url.endswith(".zarr") else open_nifti(url, chunks=CHUNK)


def _reads(server, kind: str):
    """The GET requests for the image's bytes (the file, or the Zarr store's chunk objects)."""
    if kind.endswith(".zarr"):
        return [
            r for r in server.log if r.method == "GET" and r.path.startswith(f"{kind}/image/c/")
        ]
    return server.requests(kind, "GET")


def _masker(paths, **kwargs) -> NiftiMapsMasker:
    masker = NiftiMapsMasker(paths["maps"], mask_img=paths["mask"], standardize="zscore_sample")
    return masker.set_params(**kwargs).set_output(transform="xarray")


@pytest.mark.parametrize("kind", KINDS)
def test_opening_fitting_and_building_graphs_read_no_voxels(served, kind):
    server, _, paths = served
    url = f"{server.url}/{kind}"
    server.reset()
    img = _open(url)
    masker = _masker(paths).fit(url)
    lazy = [masker.transform(url), masker.transform(img)]
    variance = _masker(paths, high_variance_confounds=True).fit(img)
    lazy.append(variance.transform(img, confounds=np.ones((N_SCANS, 1))))
    reads = _reads(server, kind)
    if kind.endswith(".zarr"):
        assert reads == [], "no chunk object is fetched"
    else:
        assert reads, "the header was read"
        assert all(r.sent <= HEADER_BYTES for r in reads), [r.sent for r in reads]
    assert [signals.shape for signals in lazy] == [(N_SCANS, 6)] * 3


def _covered_once(ranges: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether the byte ranges tile ``[start, end)``: each byte fetched exactly once."""
    position = start
    for a, b in sorted(ranges):
        if a != position:
            return False
        position = b
    return position == end


@pytest.mark.parametrize("kind", KINDS)
def test_computing_reads_each_chunk_once(served, kind):
    server, root, paths = served
    url = f"{server.url}/{kind}"
    img = _open(url)
    lazy = _masker(paths).fit(img).transform(img)
    server.reset()
    lazy.compute()
    reads = _reads(server, kind)
    if kind.endswith(".zarr"):
        chunks = sorted(r.path for r in reads)
        expected = sorted(f"{kind}/image/c/{i}/0/0/0" for i in range(N_SCANS // CHUNK))
        assert chunks == expected, "every chunk object fetched once"
        return
    size = (root / kind).stat().st_size
    start = 0 if kind.endswith(".gz") else int(nib.load(root / kind).dataobj.offset)
    fetched = [(r.start, r.start + r.sent) for r in reads]
    assert _covered_once(fetched, start, size), fetched
