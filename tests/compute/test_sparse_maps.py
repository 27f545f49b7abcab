"""Sparse maps (CSR over the grid's voxels): the same numbers as the dense path and as nilearn.

Tolerances are relative to the largest absolute value compared and sit near the real error: the
sparse and dense paths differ only in the order of float64 sums (~1e-15); nilearn's float64 lstsq
and our reduced normal equations differ by ~1e-12 on these maps.
"""

from __future__ import annotations

import re
import warnings

import dask
import dask.array as da
import nibabel as nib
import numpy as np
import pytest
from nilearn.maskers import NiftiMapsMasker as NilearnMasker
from scipy import sparse

from daskmasker import NiftiMapsMasker, config
from daskmasker.compute import maps as maps_arrays
from daskmasker.compute.grid import Grid
from daskmasker.compute.plan import plan_extraction
from daskmasker.compute.projection import prepare_grid_maps
from daskmasker.compute.regression import compact_maps, support_products
from daskmasker.compute.resample import resample_array
from daskmasker.compute.screening import sparse_nonzero
from daskmasker.compute.sparse_maps import SparseMaps
from daskmasker.compute.sparse_resample import SparseResampler
from daskmasker.io.image import READER_ENCODING, make_image
from daskmasker.io.load import load_image
from daskmasker.masker.fit_cache import FIT_CACHE
from daskmasker.masker.maps_loading import load_maps

from helpers import (
    COARSE_AFFINE,
    COARSE_SHAPE,
    DATA_AFFINE,
    DATA_SHAPE,
    MAPS_AFFINE,
    MAPS_SHAPE,
    make_data,
    make_mask,
    traced_peak,
)

# daskmasker's defaults registered before any ``dask.config.set`` block: a block that creates the
# "daskmasker" section removes it whole on exit, defaults included
config.get("chunk-bytes")
SPARSE = {"daskmasker.sparse-maps-density": 1.0, "daskmasker.sparse-products-density": 1.0}
DENSE = {"daskmasker.sparse-maps-density": 0.0, "daskmasker.sparse-products-density": 0.0}
EXACT = 1e-13  # sparse vs dense: the same sums in another order
NILEARN = 1e-10  # vs nilearn's lstsq: measured ~1e-12


def small_maps(n_maps=12, seed=3, shape=MAPS_SHAPE, affine=MAPS_AFFINE, negative=True):
    """Compact blobs (a few percent of the grid each), float64, one with a negative lobe."""
    rng = np.random.default_rng(seed)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    out = np.zeros((*shape, n_maps))
    for k in range(n_maps):
        centre = rng.uniform(-12, 12, size=3)
        blob = np.exp(-((xyz - centre) ** 2).sum(-1) / (2 * rng.uniform(3, 5) ** 2))
        blob[blob < 0.1] = 0
        out[..., k] = blob
    if negative:
        out[..., 0] -= 0.5 * out[..., 1]
    return nib.Nifti1Image(out, affine)


def dense_maps(img):
    return np.ascontiguousarray(np.asarray(img.dataobj).T)  # (K, z, y, x)


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def test_sparse_maps_answer_as_the_dense_array():
    dense = dense_maps(small_maps())
    dense[2, 0, 0, 0] = np.nan  # made finite (0), as nilearn's clean_img
    sm = SparseMaps.from_dense(dense)
    dense[2, 0, 0, 0] = 0
    np.testing.assert_array_equal(sm.toarray(), dense)
    assert sm.nnz == np.count_nonzero(dense)
    np.testing.assert_array_equal(sm.map(4), dense[4])
    np.testing.assert_array_equal(sm.nonzero_voxels([1, 5]), (dense[[1, 5]] != 0).any(axis=0))
    mask = np.zeros(dense.shape[1:], dtype=bool)
    mask[:7] = True
    expected = np.array([np.abs(m[mask]).sum() for m in dense])
    np.testing.assert_allclose(sm.abs_sums(mask), expected, rtol=1e-14)
    assert maps_arrays.any_in_mask(sm, mask) == maps_arrays.any_in_mask(dense, mask)
    assert not maps_arrays.any_in_mask(sm, np.zeros_like(mask))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.float16])
def test_sparse_nonzero_is_numpys_nonzero(dtype):
    """The screened search finds what ``np.nonzero`` finds, in its order: NaN, Inf and the values
    at the segments' ends included, ``-0.0`` excluded; arrays it cannot screen (2-byte values, a
    segment that does not divide the rows, a strided view) fall back to ``np.nonzero``."""
    rng = np.random.default_rng(int(np.dtype(dtype).itemsize))
    flat = np.zeros((5, 7 * 12), dtype=dtype)
    at = rng.choice(flat.size, size=40, replace=False)
    flat.reshape(-1)[at] = rng.integers(1, 9, size=40)
    flat[0, 0] = flat[4, -1] = 3
    if np.dtype(dtype).kind == "f":
        flat[1, 3], flat[2, 50], flat[3, 11] = np.nan, np.inf, -0.0
    expected = np.nonzero(flat)
    odd = np.ascontiguousarray(flat[:, :21])  # segments of an odd count of values: no pairs
    cases = ((flat, 12), (flat, 7), (flat, 84), (flat, 5), (odd, 21), (flat[:, ::2], 6))
    for candidate, segment in cases:
        want = np.nonzero(candidate)
        got = sparse_nonzero(candidate, segment)
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    # the cases a wrong screening gets wrong: -0.0 has a bit set but is zero (taking the bits
    # for the values finds it); the first and last values sit at the segments' ends
    assert (3, 11) not in set(zip(*expected, strict=True))
    assert {(0, 0), (4, 83)} <= set(zip(*expected, strict=True))


def test_overlap_check_is_the_dense_one():
    dense = dense_maps(small_maps())
    with pytest.raises(ValueError, match="Overlap detected"):
        maps_arrays.check_overlap(SparseMaps.from_dense(dense))
    apart = np.zeros((2, 4, 4, 4))
    apart[0, :2], apart[1, 2:] = 1.0, 2.0
    maps_arrays.check_overlap(SparseMaps.from_dense(apart))  # no error


@pytest.mark.parametrize(
    ("shape", "affine"),
    [(DATA_SHAPE, DATA_AFFINE), (COARSE_SHAPE, COARSE_AFFINE)],
    ids=["whole-voxel-shift", "general-affine"],
)
def test_sparse_resampling_equals_dense(shape, affine):
    dense = dense_maps(small_maps())
    target = Grid(shape[::-1], affine)  # Grid shapes are (z, y, x)
    expected = resample_array(da.from_array(dense), MAPS_AFFINE, target, "linear").compute()
    moved = SparseResampler(Grid(MAPS_SHAPE[::-1], MAPS_AFFINE), target)(
        SparseMaps.from_dense(dense)
    )
    assert moved.shape == expected.shape
    assert rel(moved.toarray(), expected) <= EXACT


def test_sparse_products_and_gram_equal_dense():
    dense = dense_maps(small_maps())
    sm = SparseMaps.from_dense(dense)
    mask = make_mask(shape=MAPS_SHAPE, affine=MAPS_AFFINE).get_fdata().T.astype(bool)
    with dask.config.set(SPARSE):
        sparse_grid = prepare_grid_maps(sm, mask, keep_masked_maps=False)
    dense_grid = prepare_grid_maps(dense, mask, keep_masked_maps=False)
    assert sparse.issparse(sparse_grid.compact.rows)
    np.testing.assert_array_equal(sparse_grid.kept, dense_grid.kept)
    np.testing.assert_array_equal(sparse_grid.support, dense_grid.support)
    np.testing.assert_array_equal(sparse_grid.compact.index, dense_grid.compact.index)
    assert rel(sparse_grid.solver.operator, dense_grid.solver.operator) <= 1e-10
    assert sparse_grid.solver.rank == dense_grid.solver.rank
    rng = np.random.default_rng(0)
    n = dense_grid.compact.size
    parts = [rng.standard_normal((t, n + 1)).astype(np.float32) for t in (5, 9)]
    plan = plan_extraction(14, 4 * (n + 1), n_support=n, time_chunks=(5, 9))
    widths = (plan.slab_widths[0], plan.sparse_slab_widths[0])
    got = support_products(parts, sparse_grid.compact, widths)
    want = support_products(parts, dense_grid.compact, widths)
    assert rel(got, want) <= EXACT


def test_density_threshold_chooses_the_rows():
    sm = SparseMaps.from_dense(dense_maps(small_maps()))
    with dask.config.set(DENSE):
        assert isinstance(compact_maps(sm).rows, np.ndarray)
    with dask.config.set(SPARSE):
        assert sparse.issparse(compact_maps(sm).rows)


def _both(params, fit_img, img, config, **kwargs):
    FIT_CACHE._entries.clear()
    with dask.config.set(config), warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        masker = NiftiMapsMasker(**params).fit(fit_img)
        out = masker.transform(img, **kwargs)
    messages = sorted(str(w.message) for w in records if issubclass(w.category, UserWarning))
    return out, messages, masker


@pytest.mark.parametrize(
    ("target", "mask", "keep"),
    [("data", True, False), ("mask", True, False), ("maps", True, True), ("data", False, False)],
)
def test_masker_sparse_parity_with_nilearn(target, mask, keep):
    maps = small_maps()
    data = make_data(maps, dtype=np.float64)
    params = dict(
        maps_img=maps,
        mask_img=make_mask() if mask else None,
        resampling_target=target,
        keep_masked_maps=keep,
        detrend=True,
        standardize="zscore_sample",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NilearnMasker(**params).fit(data).transform(data)
    out, sparse_warnings, masker = _both(params, data, data, SPARSE)
    assert maps_arrays.is_sparse(masker._fitted.maps)
    dense_out, dense_warnings, _ = _both(params, data, data, DENSE)
    assert out.shape == ref.shape
    assert rel(out, ref) <= NILEARN
    assert rel(out, dense_out) <= 1e-11
    assert sparse_warnings == dense_warnings


def test_sparse_general_resampling_and_inverse_transform():
    maps = small_maps()
    data = make_data(maps, dtype=np.float64, shape=COARSE_SHAPE, affine=COARSE_AFFINE)
    params = dict(maps_img=maps, mask_img=make_mask(), resampling_target="data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nl = NilearnMasker(**params).fit(data)
        ref = nl.transform(data)
        ref_img = nl.inverse_transform(ref[:3])
    out, _, masker = _both(params, data, data, SPARSE)
    assert maps_arrays.is_sparse(masker._fitted.maps)
    assert rel(out, ref) <= NILEARN
    assert rel(np.asarray(masker.maps_img_.dataobj), nl.maps_img_.get_fdata()) <= EXACT
    assert rel(masker.maps_img_.dataobj[..., 3], nl.maps_img_.get_fdata()[..., 3]) <= EXACT
    back = masker.inverse_transform(out[:3])
    assert rel(back.get_fdata(), ref_img.get_fdata()) <= NILEARN


def test_fit_of_sparse_maps_holds_no_dense_copy():
    """200 maps of ~30 voxels on a 40³ grid: the dense float64 maps would be 102 MB; the fit's
    traced allocations stay far below (the file's blocks stream through a few maps at a time)."""
    shape, n_maps = (40, 40, 40), 200
    rng = np.random.default_rng(0)
    values = np.zeros((*shape, n_maps))
    for k in range(n_maps):
        x, y, z = rng.integers(2, 37, size=3)
        values[x : x + 3, y : y + 3, z : z + 3, k] = rng.uniform(0.5, 1.0)
    img = nib.Nifti1Image(values, np.diag([2.0, 2, 2, 1]))
    dense_bytes = values.nbytes
    lazy = da.from_array(values.T, chunks=(8, -1, -1, -1))  # blocks of 8 maps, as read
    image = make_image(lazy, img.affine)
    target_affine = np.diag([2.0, 2, 2, 1])
    target_affine[:3, 3] = (1.0, -1.0, 0.0)  # a general affine: interpolation, not a copy
    target = Grid((38, 39, 40), target_affine)

    maps, peak = traced_peak(lambda: load_maps(image, onto=target))
    assert maps_arrays.is_sparse(maps)
    # one block of 8 maps at a time, made sparse on the target grid: measured 4.15 MB (the
    # same in 6 runs; a float64 copy of each block before it is made sparse: 8.9 MB, blocks of
    # 16 maps: 17.1 MB); the bound is 1.25 such blocks, 1/20 of dense
    block_bytes = 8 * values[..., 0].nbytes
    assert peak < 1.25 * block_bytes <= dense_bytes / 20
    expected = resample_array(da.from_array(values.T), img.affine, target, "linear").compute()
    assert rel(maps.toarray(), expected) <= EXACT


def test_gzip_maps_stream_in_order_into_sparse(tmp_path):
    """A .nii.gz atlas read block by block (3 maps a block) gives the dense loader's maps."""
    img = small_maps(n_maps=10)
    path = tmp_path / "maps.nii.gz"
    img.to_filename(path)
    volume_bytes = int(np.prod(MAPS_SHAPE)) * 8
    target = Grid(DATA_SHAPE[::-1], DATA_AFFINE)
    FIT_CACHE._entries.clear()
    with dask.config.set({**SPARSE, "daskmasker.chunk-bytes": 3 * volume_bytes}):
        image = load_image(str(path))
        assert len(image.data.chunks[0]) == 4
        assert image.encoding[READER_ENCODING].chunks_of(image.data)  # the streamed path
        got = load_maps(image, onto=target)
    with dask.config.set(DENSE):
        want = load_maps(load_image(str(path)), onto=target)
    assert maps_arrays.is_sparse(got) and not maps_arrays.is_sparse(want)
    assert rel(got.toarray(), want) <= EXACT


def test_report_of_sparse_maps_draws_the_maps():
    maps = small_maps()
    data = make_data(maps, dtype=np.float64)
    _, _, sparse_masker = _both(dict(maps_img=maps), data, data, SPARSE)
    _, _, dense_masker = _both(dict(maps_img=maps), data, data, DENSE)
    assert maps_arrays.is_sparse(sparse_masker._fitted.maps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = str(sparse_masker.generate_report(displayed_maps=[1, 4]))
        reference = str(dense_masker.generate_report(displayed_maps=[1, 4]))
    # the two displayed maps' panels (SVG), and the rasters drawn inside the report's figures
    panel = r'<img class="map"[^>]*src="data:image/svg\+xml;base64,([^"]+)"'
    panels = re.findall(panel, ours)
    assert len(panels) == 2
    assert panels == re.findall(panel, reference)
    pngs = re.findall(r"data:image/png;base64,([^\"]+)", ours)
    assert pngs and pngs == re.findall(r"data:image/png;base64,([^\"]+)", reference)


def test_sparse_blocks_over_spatial_chunks_and_the_gzip_chain(tmp_path):
    """CSR maps split over spatial chunks, and multiplied in a .nii.gz's read-products chain,
    give the dense maps' products and non-finite counts."""
    from daskmasker.compute.projection import project
    from daskmasker.compute.regression import split_maps
    from daskmasker.io.nifti import open_nifti

    dense = dense_maps(small_maps())
    shape = dense.shape[1:]
    volumes = np.random.default_rng(2).normal(size=(17, *shape)).astype(np.float32)
    volumes[3, 1, 2, 3] = np.nan
    sm = SparseMaps.from_dense(dense)
    with dask.config.set(SPARSE):
        whole = compact_maps(sm)
    assert sparse.issparse(whole.rows)
    k = dense.shape[0]
    spatial = (4, 8, 5)
    data = da.from_array(volumes, chunks=(6, *spatial))
    results = []
    for maps in (whole, compact_maps(dense)):
        blocks = split_maps(maps, shape, data.chunks[1:])
        sizes = np.vectorize(lambda b: b.size, otypes=[int])(blocks)
        results.append(project(data, blocks, sizes, k, batch_volumes=8).compute())
    assert rel(results[0], results[1]) <= EXACT
    path = str(tmp_path / "run.nii.gz")
    nib.Nifti1Image(volumes.T, MAPS_AFFINE).to_filename(path)
    image = open_nifti(path, chunks=4)
    reader = image.encoding[READER_ENCODING]
    blocks = split_maps(whole, shape, image.data.chunks[1:])
    sizes = np.vectorize(lambda b: b.size, otypes=[int])(blocks)
    chained = project(image.data, blocks, sizes, k, batch_volumes=8, reader=reader).compute()
    assert rel(chained, results[1]) <= EXACT
    assert chained[3, -1] == 1 and chained[:, -1].sum() == 1
