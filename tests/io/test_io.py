"""NIfTI ⇄ Zarr round trips, laziness, and the image data model."""

from __future__ import annotations

import itertools
import re

import nibabel as nib
import numpy as np
import pytest
import xarray as xr

from daskmasker import open_nifti, open_zarr, to_nifti, to_zarr
from daskmasker.compute.plan import plan_extraction
from daskmasker.io import gzip_cursors, nifti_chunks, nifti_write

from helpers import traced_peak

OBLIQUE = np.array(
    [[1.9, 0.3, 0.0, -90.0], [-0.2, 2.1, 0.4, -120.0], [0.1, -0.3, 2.5, -60.0], [0, 0, 0, 1]]
)


DIAGONAL = np.diag([2.0, 2, 2, 1])


def _image(shape, dtype, affine=DIAGONAL, seed=0, nonfinite=False, scaled=False):
    rng = np.random.default_rng(seed)
    data = rng.normal(100, 30, size=shape)
    if np.dtype(dtype).kind in "iu":
        data = np.clip(np.round(data), np.iinfo(dtype).min, np.iinfo(dtype).max)
    data = data.astype(dtype)
    if nonfinite:
        data.flat[3] = np.nan
        data.flat[7] = np.inf
        data.flat[11] = -np.inf
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    if len(shape) == 4:
        img.header["pixdim"][4] = 1.5
    img.header["descrip"] = b"daskmasker round trip"
    if scaled:
        img.header.set_slope_inter(0.5, 10.0)
    return img


CASES = [
    ((7, 5, 3, 11), np.float32, {}),
    ((7, 5, 3, 11), np.float64, {}),
    ((6, 4, 5, 9), np.int16, {}),
    ((6, 4, 5, 9), np.uint8, {}),
    ((7, 5, 3), np.float32, {}),
    ((9, 8, 7, 13), np.float32, {"affine": OBLIQUE}),
    ((6, 4, 5, 9), np.int16, {"scaled": True}),
    ((7, 5, 3, 11), np.float32, {"nonfinite": True}),
]


def _raw(path):
    img = nib.load(path)
    with open(path, "rb") if not str(path).endswith(".gz") else __import__("gzip").open(path) as f:
        blob = f.read()
    return img, blob[int(img.dataobj.offset) :]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize(("shape", "dtype", "kwargs"), CASES)
def test_nifti_zarr_nifti_is_exact(tmp_path, shape, dtype, kwargs, suffix):
    src = tmp_path / f"src{suffix}"
    _image(shape, dtype, **kwargs).to_filename(src)
    ref = nib.load(src)
    img = open_nifti(src, chunks=4)
    np.testing.assert_array_equal(img.values, np.asanyarray(ref.dataobj).T)
    assert img.dtype == np.asanyarray(ref.dataobj).dtype
    store = to_zarr(str(src), str(tmp_path / "img.zarr"), chunks=3)
    back = open_zarr(store)
    np.testing.assert_array_equal(back.values, img.values)
    out = to_nifti(back, tmp_path / f"back{suffix}")
    got = nib.load(out)
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), np.asanyarray(ref.dataobj))
    np.testing.assert_array_equal(got.affine, ref.affine)
    for field in (
        "dim",
        "pixdim",
        "datatype",
        "xyzt_units",
        "qform_code",
        "sform_code",
        "srow_x",
        "srow_y",
        "srow_z",
        "descrip",
        "quatern_b",
        "quatern_c",
        "quatern_d",
    ):
        np.testing.assert_array_equal(got.header[field], ref.header[field])
    assert got.header.get_slope_inter() == ref.header.get_slope_inter()
    assert _raw(out)[1] == _raw(src)[1], "the data bytes must be identical"


def test_attrs_and_coords(tmp_path):
    src = tmp_path / "a.nii.gz"
    _image((7, 5, 3, 11), np.float32).to_filename(src)
    img = open_nifti(src)
    assert img.dims == ("time", "z", "y", "x")
    assert img.attrs["t_r"] == 1.5
    assert img.attrs["space_units"] == "mm" and img.attrs["time_units"] == "sec"
    np.testing.assert_allclose(img["x"].values, 2.0 * np.arange(7))
    assert img["x"].attrs["units"] == "mm"
    np.testing.assert_allclose(img["time"].values, 1.5 * np.arange(11))
    oblique = tmp_path / "o.nii"
    _image((9, 8, 7, 3), np.float32, affine=OBLIQUE).to_filename(oblique)
    tilted = open_nifti(oblique)  # no single mm axis for an oblique affine: voxel indices
    np.testing.assert_array_equal(tilted["x"].values, np.arange(9))
    assert tilted["x"].attrs["units"] == "1" and "oblique" in tilted["x"].attrs["description"]
    assert isinstance(open_zarr(to_zarr(str(src), str(tmp_path / "a.zarr"))), xr.DataArray)


def test_interrupted_conversion_is_refused_and_foreign_paths_kept(tmp_path, monkeypatch):
    src = tmp_path / "a.nii"
    _image((8, 8, 8, 12), np.float32).to_filename(src)
    import dask

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dask, "compute", boom)
    with pytest.raises(KeyboardInterrupt):
        to_zarr(str(src), str(tmp_path / "half.zarr"))
    monkeypatch.undo()
    with pytest.raises(ValueError, match="incomplete"):
        open_zarr(str(tmp_path / "half.zarr"))
    to_zarr(str(src), str(tmp_path / "half.zarr"), overwrite=True)
    assert open_zarr(str(tmp_path / "half.zarr")).shape == (12, 8, 8, 8)
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="never overwritten"):
        to_zarr(str(src), str(foreign), overwrite=True)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_not_an_image_store(tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").create_array(
        "x", shape=(3,), dtype="f4"
    )
    with pytest.raises(ValueError, match="not a daskmasker or NIfTI-Zarr image store"):
        open_zarr(str(tmp_path / "other.zarr"))


def test_store_without_affine_is_refused_by_name(tmp_path):
    # a daskmasker attribute but neither an 'affine' attribute nor a NIfTI header: open_zarr
    # used to fail with "'NoneType' object has no attribute 'get_best_affine'"
    import zarr

    group = zarr.open_group(str(tmp_path / "bare.zarr"), mode="w")
    group.attrs["daskmasker"] = {"complete": True}
    group.create_array("0", shape=(2, 3, 4), dtype="f4")
    with pytest.raises(ValueError, match=r"bare\.zarr' has no affine"):
        open_zarr(str(tmp_path / "bare.zarr"))
    group.create_group("1")
    group.attrs["multiscales"] = [{"datasets": [{"path": "1"}], "axes": []}]
    with pytest.raises(ValueError, match="'1' is a group, not an array"):
        open_zarr(str(tmp_path / "bare.zarr"))


@pytest.mark.parametrize("n", [1, 7, 600, 6000])
def test_time_chunks_cover_and_fit_budget(n):
    volume = 99 * 117 * 95 * 4
    sizes = plan_extraction(n, volume).time_chunks
    assert sum(sizes) == n
    assert max(sizes) * volume <= max(32 * 2**20, volume)
    assert max(sizes) - min(sizes) <= 1


def test_conversion_chunks_align_with_zarr_chunks(tmp_path):
    """Each Dask task writes whole Zarr chunks (unaligned chunks race and lose volumes)."""
    src = tmp_path / "a.nii.gz"
    _image((10, 9, 8, 60), np.float32).to_filename(src)
    ref = np.asanyarray(nib.load(src).dataobj).T
    for i in range(3):
        store = to_zarr(str(src), str(tmp_path / f"a{i}.zarr"), chunks=7)
        img = open_zarr(store)
        assert set(img.data.chunks[0][:-1]) == {7}
        np.testing.assert_array_equal(img.values, ref)


def test_gzip_to_nifti_reads_the_source_once_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    """Writing a .nii.gz-backed image streams it in one pass (the gzip stream never restarts);
    a failed write leaves neither the target nor a partial file."""
    src = tmp_path / "a.nii.gz"
    _image((10, 10, 10, 60), np.float32).to_filename(src)
    restarts = []
    original = gzip_cursors.GzipCursor._restart
    monkeypatch.setattr(
        gzip_cursors.GzipCursor, "_restart", lambda self: (restarts.append(1), original(self))[1]
    )
    out = to_nifti(open_nifti(src, chunks=4), str(tmp_path / "b.nii"))
    assert len(restarts) == 1, "15 chunks, one pass over the gzip stream"
    np.testing.assert_array_equal(nib.load(out).get_fdata(), nib.load(src).get_fdata())

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(nifti_write._OrderedWriter, "_encode", fail)
    with pytest.raises(OSError, match="disk full"):
        to_nifti(open_nifti(src, chunks=4), str(tmp_path / "c.nii"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "b.nii"]


@pytest.mark.parametrize(
    "codecs",
    [
        {"compressors": None},
        {"compressors": "blosc"},
        {"compressors": "zstd"},
        {"compressors": None, "shards": (6, 8, 8, 8)},
    ],
    ids=["raw", "blosc", "zstd", "sharded"],
)
def test_chunk_reader_equals_zarr_or_steps_aside(tmp_path, codecs):
    """The direct chunk decoder gives zarr's values (edge chunks, missing chunks as fill) for the
    layouts it knows, and declines the others (which ``da.from_zarr`` then reads)."""
    import dask.array as da
    import zarr
    from zarr.codecs import BloscCodec, ZstdCodec

    from daskmasker.io.fs import Location
    from daskmasker.io.zarr import ChunkReader

    compressors = {"blosc": BloscCodec(cname="lz4", shuffle="shuffle"), "zstd": ZstdCodec()}.get(
        codecs["compressors"]
    )
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    kwargs = {"shards": codecs["shards"]} if "shards" in codecs else {}
    array = group.create_array(
        "0",
        shape=(11, 8, 8, 8),
        chunks=(3, 8, 8, 4),
        dtype="f4",
        fill_value=-1.0,
        compressors=compressors,
        **kwargs,
    )
    values = np.random.default_rng(0).normal(size=array.shape).astype("f4")
    array[:] = values
    reader = ChunkReader.of(array, Location(str(tmp_path / "s.zarr")))
    if "shards" in codecs:
        assert reader is None
        return
    assert reader is not None
    (tmp_path / "s.zarr" / "0" / "c" / "1" / "0" / "0" / "1").unlink()  # a missing chunk
    expected = array[:]
    assert np.all(expected[3:6, :, :, 4:] == -1.0)
    got = da.from_array(reader, chunks=array.chunks, asarray=False, fancy=False).compute()
    np.testing.assert_array_equal(got, expected)
    # scratch reads: the same chunks, trimmed at the edges, in one reused buffer per thread
    grid = [range(-(-n // c)) for n, c in zip(array.shape, array.chunks, strict=True)]
    buffers = set()
    for where in itertools.product(*grid):
        block = reader.read_chunk(where)
        region = tuple(slice(w * c, (w + 1) * c) for w, c in zip(where, array.chunks, strict=True))
        np.testing.assert_array_equal(block, expected[region])
        buffers.add(block.base.ctypes.data if block.base is not None else block.ctypes.data)
    assert len(buffers) == 1


@pytest.mark.parametrize(
    ("units", "t_r"), [("sec", 2.0), ("msec", 0.002), ("unknown", None)], ids=str
)
def test_header_tr_needs_a_time_unit(tmp_path, units, t_r):
    """nibabel writes pixdim[4] = 1 with unknown units by default: that is no TR."""
    img = nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.float32), np.eye(4))
    img.header.set_zooms((1, 1, 1, 2.0))
    img.header.set_xyzt_units("mm", units)
    img.to_filename(tmp_path / "bold.nii")
    assert open_nifti(str(tmp_path / "bold.nii")).attrs["t_r"] == t_r


def test_one_thread_converts_a_gz_holding_a_few_chunks(tmp_path):
    """``to_zarr`` of a .nii.gz computed by one thread (a 1-CPU job) reads each chunk once, in
    order, and writes it before reading far ahead: a few chunks for 300 or 600 volumes.  The
    same image given as an opened DataArray in other chunks is rechunked through Dask's plain
    read chain, which holds it whole (the negative control)."""
    import dask

    shape, step = (32, 32, 32), 8
    volume_bytes = 32**3 * 4
    rng = np.random.default_rng(0)

    def peak(source, store):
        with dask.config.set(scheduler="threads", num_workers=1):
            return traced_peak(lambda: to_zarr(source, str(tmp_path / store), chunks=step))[1]

    warm = tmp_path / "warm.nii.gz"  # imports and codec contexts, allocated once per process
    nib.Nifti1Image(np.zeros((*shape, 2 * step), np.float32), np.eye(4)).to_filename(warm)
    to_zarr(str(warm), str(tmp_path / "warm.zarr"), chunks=step)
    peaks = {}
    for n_scans in (300, 600):
        data = rng.normal(size=(*shape, n_scans)).astype(np.float32)
        path = tmp_path / f"bold{n_scans}.nii.gz"
        nib.Nifti1Image(data, np.eye(4)).to_filename(path)
        peaks[n_scans] = peak(str(path), f"paced{n_scans}.zarr")
        np.testing.assert_array_equal(
            open_zarr(str(tmp_path / f"paced{n_scans}.zarr")).values, data.T
        )
    image_bytes = 600 * volume_bytes
    plain = peak(open_nifti(path), "plain.zarr")  # its default chunks rechunked into 8 volumes
    np.testing.assert_array_equal(open_zarr(str(tmp_path / "plain.zarr")).values, data.T)
    assert plain > image_bytes / 2
    # measured 4.1-5.54 MB for either length in 24 runs (a few 1 MB chunks and the codecs'
    # buffers; 6.3 and 7.4 MB when each read waits for the write 4 chunks back, not 2) and
    # 81.5-82.5 MB for the plain chain: the bound is 1.23 times the highest, 5.54 MB
    assert max(peaks.values()) < 6.5 * step * volume_bytes < image_bytes / 10


@pytest.mark.parametrize(("level", "inflater"), [(1, "isal"), (6, "zlib_ng")])
def test_the_inflater_follows_the_gzip_header(tmp_path, level, inflater):
    """zlib's fastest level (XFL 4, nibabel's default) is inflated by ISA-L, the others by
    zlib-ng (see ``open_stream``'s table); either gives the file's bytes."""
    import gzip

    from daskmasker.io.fs import open_stream

    raw = np.zeros(300_000, np.float32)
    raw[1000:5000] = np.arange(4000)
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb", compresslevel=level) as f:
        f.write(raw.tobytes())
    assert path.read_bytes()[8] == (4 if level == 1 else 0)
    stream = open_stream(str(path), None)
    assert type(stream).__module__.split(".")[0] == inflater
    assert stream.read() == raw.tobytes()


@pytest.mark.parametrize("piece_bytes", [2**20, 3 * 4 * 8 * 11])
def test_screened_chunks_are_the_chunks_made_sparse(tmp_path, monkeypatch, piece_bytes):
    """A chunk of maps screened as it is inflated (a piece at a time) gives the sparse maps of
    the dense chunk: NaN and Inf dropped, -0.0 not kept, values at the pieces' edges kept."""
    from daskmasker.compute.screening import Screener
    from daskmasker.compute.sparse_maps import SparseMaps
    from daskmasker.io.image import READER_ENCODING

    monkeypatch.setattr(nifti_chunks, "PIECE_BYTES", piece_bytes)  # one piece, or a few rows
    rng = np.random.default_rng(0)
    data = np.zeros((11, 9, 8, 6), np.float32)  # x, y, z, maps
    at = rng.choice(data.size, size=60, replace=False)
    data.reshape(-1)[at] = rng.normal(size=60)
    data[0, 0, 0, 0] = data[-1, -1, -1, -1] = 2.5  # the first and last value of the file
    data[3, 4, 5, 1], data[4, 4, 5, 1], data[5, 1, 2, 2] = np.nan, np.inf, -0.0
    path = tmp_path / "maps.nii.gz"
    nib.Nifti1Image(data, np.eye(4)).to_filename(path)
    img = open_nifti(str(path), chunks=4)
    reader = img.encoding[READER_ENCODING]
    for i in range(len(img.data.chunks[0])):
        screened = reader.read_pieces((i, 0, 0, 0), Screener.for_block)
        dense = SparseMaps.from_dense(np.asarray(reader.read_chunk((i, 0, 0, 0))))
        got = SparseMaps.from_dense(screened)
        assert screened.shape == dense.shape
        np.testing.assert_array_equal(got.matrix.toarray(), dense.matrix.toarray())
        assert got.nnz == dense.nnz and np.isfinite(got.matrix.data).all()
    expected = np.nan_to_num(data, nan=0, posinf=0).T.reshape(6, -1)
    screened = [reader.read_pieces((i, 0, 0, 0), Screener.for_block) for i in (0, 1)]
    whole = np.vstack([SparseMaps.from_dense(block).matrix.toarray() for block in screened])
    np.testing.assert_array_equal(whole, expected)


def _timed(data, t_r, unit, affine=None):
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    if data.ndim > 3:
        img.header.set_zooms((2.0, 2.0, 2.0, t_r, *([1.0] * (data.ndim - 4))))
    img.header.set_xyzt_units("mm", unit)
    return img


@pytest.mark.parametrize(
    "kind", ["nii-sec", "gz-msec", "no-unit", "3d", "pair", "zarr", "glob-of-3d"]
)
def test_image_header_is_load_images_tr_and_length(tmp_path, kind):
    """``image_header`` (what ``extract`` checks every image with) gives ``load_image``'s TR
    and first axis, from the header alone for a NIfTI file, opening anything else."""
    from daskmasker.io.load import image_header, load_image

    rng = np.random.default_rng(0)
    data = rng.normal(size=(4, 5, 6, 7)).astype(np.float32)
    if kind == "nii-sec":
        source = str(tmp_path / "a_bold.nii")
        _timed(data, 2.0, "sec").to_filename(source)
    elif kind == "gz-msec":
        source = str(tmp_path / "a_bold.nii.gz")
        _timed(data, 2500.0, "msec").to_filename(source)
    elif kind == "no-unit":  # nibabel's default pixdim[4] = 1 without a unit: no TR
        source = str(tmp_path / "a_bold.nii.gz")
        nib.Nifti1Image(data, np.eye(4)).to_filename(source)
    elif kind == "3d":
        source = str(tmp_path / "a.nii.gz")
        nib.Nifti1Image(data[..., 0], np.eye(4)).to_filename(source)
    elif kind == "pair":
        source = str(tmp_path / "a.img")
        nib.Nifti1Pair(data, np.eye(4)).to_filename(source)
    elif kind == "zarr":
        nifti = str(tmp_path / "a_bold.nii.gz")
        _timed(data, 2.0, "sec").to_filename(nifti)
        source = to_zarr(nifti, str(tmp_path / "a_bold.zarr"))
    else:
        for i in range(3):
            nib.Nifti1Image(data[..., i], np.eye(4)).to_filename(tmp_path / f"v{i}.nii.gz")
        source = str(tmp_path / "v*.nii.gz")
    image = load_image(source)
    want = (image.attrs.get("t_r"), int(image.shape[0]))
    assert image_header(source) == want
    assert want[1] == {"3d": 6, "glob-of-3d": 3}.get(kind, 7)  # volumes, or z for 3D
    assert want[0] == {"nii-sec": 2.0, "gz-msec": 2.5, "zarr": 2.0}.get(kind)


def test_image_header_refuses_as_load_image(tmp_path):
    from daskmasker.io.load import image_header, load_image

    five = str(tmp_path / "five.nii")
    nib.Nifti1Image(np.zeros((2, 2, 2, 3, 2), np.float32), np.eye(4)).to_filename(five)
    for source in (str(tmp_path / "missing_bold.nii.gz"), five):
        with pytest.raises(ValueError) as expected:
            load_image(source)
        with pytest.raises(ValueError, match=re.escape(str(expected.value))):
            image_header(source)
