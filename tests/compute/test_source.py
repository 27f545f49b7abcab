"""Both readers of io/ conform to compute's ChunkSource protocol, chunk for chunk."""

from __future__ import annotations

import itertools

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
from dask.base import tokenize

from daskmasker import open_nifti, open_zarr, to_zarr
from daskmasker.compute.source import ChunkSource
from daskmasker.io.image import READER_ENCODING

from helpers import make_data, make_maps


@pytest.fixture(scope="module", params=["nii.gz", "zarr"])
def opened(request, tmp_path_factory):
    """An image opened from a file whose reader the projection may use, and its values."""
    img = make_data(make_maps(), n_scans=23)
    path = tmp_path_factory.mktemp("source") / f"bold.{request.param}"
    if request.param == "zarr":
        nii = path.with_suffix(".nii")
        nib.save(img, nii)
        to_zarr(str(nii), str(path), chunks=5)
        opened = open_zarr(str(path))
    else:
        nib.save(img, path)
        opened = open_nifti(str(path), chunks=5)
    return opened, np.asarray(img.dataobj).T


def test_reader_is_a_chunk_source(opened):
    img, _ = opened
    reader = img.encoding[READER_ENCODING]
    assert isinstance(reader, ChunkSource)
    assert not isinstance(object(), ChunkSource)  # negative control: the check can fail


def test_reader_recognises_its_own_array_only(opened):
    img, _ = opened
    reader = img.encoding[READER_ENCODING]
    assert reader.chunks_of(img.data)
    assert not reader.chunks_of(img.data.rechunk({0: 7}))
    assert not reader.chunks_of(da.zeros((3, 2, 2, 2), chunks=1))


def test_every_chunk_reads_as_the_image(opened):
    img, values = opened
    reader = img.encoding[READER_ENCODING]
    grid = [range(len(c)) for c in img.data.chunks]
    starts = [np.cumsum((0, *c)) for c in img.data.chunks]
    for where in itertools.product(*grid):
        # copy: a reader may decode into a per-thread scratch buffer
        chunk = np.array(reader.read_chunk(where))
        index = tuple(slice(s[w], s[w + 1]) for s, w in zip(starts, where, strict=True))
        np.testing.assert_array_equal(chunk, values[index])


def test_token_is_cheap_and_deterministic(opened):
    img, _ = opened
    reader = img.encoding[READER_ENCODING]
    assert tokenize(reader) == tokenize(reader)
    assert len(str(reader.__dask_tokenize__())) < 10_000  # an identity, never the data
