"""The projection graph of a ``.nii.gz`` computed by one thread: memory of a few chunks.

A ``.nii.gz`` is read as a chain of tasks (gzip is sequential).  With one thread (``n_jobs=1``, a
1-CPU job, ``num_workers=1``) Dask's ordering ran the whole chain of reads before any gather, so
the whole image sat in memory; the paced chain (``fused=False``) reads chunk ``i`` only once
chunk ``i - 2`` is gathered.  The plain chain, measured the same way, is the negative control.
"""

from __future__ import annotations

import dask
import nibabel as nib
import numpy as np
import pytest

from daskmasker import MultiNiftiMapsMasker, NiftiMapsMasker
from daskmasker.compute.projection import project
from daskmasker.compute.regression import compact_maps, split_maps
from daskmasker.io.image import READER_ENCODING
from daskmasker.io.nifti import open_nifti

from helpers import traced_peak

SHAPE, N_SCANS, CHUNK = (40, 40, 40), 240, 8
VOLUME_BYTES = 40**3 * 4
IMAGE_BYTES = N_SCANS * VOLUME_BYTES  # 61 MB of float32


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("paced") / "bold.nii.gz"
    data = rng.normal(size=(*SHAPE, N_SCANS)).astype(np.float32)
    nib.Nifti1Image(data, np.eye(4)).to_filename(path)
    maps = np.zeros((*SHAPE, 3))
    maps[5:15, 5:15, 5:15, 0] = maps[20:30, 10:20, 5:15, 1] = maps[8:20, 25:35, 20:30, 2] = 1.0
    return str(path), data, maps


def _peak(compute) -> tuple[np.ndarray, int]:
    with dask.config.set(scheduler="threads", num_workers=1):
        return traced_peak(compute)


def test_one_thread_holds_a_few_chunks_of_a_gz(run):
    path, data, maps = run
    image = open_nifti(path, chunks=CHUNK)
    reader = image.encoding[READER_ENCODING]
    dense = np.ascontiguousarray(maps.T)  # (K, z, y, x)
    blocks = split_maps(compact_maps(dense), dense.shape[1:], image.data.chunks[1:])
    sizes = np.vectorize(lambda b: b.size, otypes=[int])(blocks)

    def products(**kwargs):
        return project(image.data, blocks, sizes, 3, batch_volumes=16, **kwargs).compute()

    paced, paced_peak = _peak(lambda: products(reader=reader, fused=False))
    plain, plain_peak = _peak(lambda: products())  # the read chain alone: the negative control
    expected = np.einsum("xyzt,xyzk->tk", data.astype(np.float64), maps)
    np.testing.assert_allclose(paced[:, :3], expected, rtol=1e-12)
    np.testing.assert_array_equal(paced, plain)
    assert plain_peak > IMAGE_BYTES / 2  # every chunk read before any was gathered
    # measured 8.43 MB (3 runs), 62.9 MB plain; 11.1 MB when each read waits for the gather 4
    # chunks back, not 2: the bound, 10.2 MB, is 1.21 times the measured peak
    assert paced_peak < 5 * CHUNK * VOLUME_BYTES < IMAGE_BYTES / 5


def test_nilearn_default_n_jobs_holds_a_few_chunks(run):
    """``MultiNiftiMapsMasker(n_jobs=1)`` (nilearn's default) and a one-thread ``transform``."""
    path, _, maps = run
    img = nib.Nifti1Image(maps, np.eye(4))
    chunk_bytes = {"daskmasker.chunk-bytes": CHUNK * VOLUME_BYTES}
    with dask.config.set(chunk_bytes):
        multi = MultiNiftiMapsMasker(img, n_jobs=1).fit(path)
        (out,), peak = traced_peak(lambda: multi.transform_imgs([path], n_jobs=1))
        single, single_peak = _peak(lambda: NiftiMapsMasker(img).fit_transform(path))
    np.testing.assert_array_equal(out, single)
    # measured 8.36 and 8.38 MB (3 runs); 12.0 and 12.1 MB when each read waits for the
    # gather 4 chunks back, not 2
    assert max(peak, single_peak) < 5 * CHUNK * VOLUME_BYTES < IMAGE_BYTES / 5
