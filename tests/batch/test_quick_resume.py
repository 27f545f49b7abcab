"""The quick resume check (git's index approach): an input whose path and stat (size and
modification time) are those the resume index recorded keeps its recorded sha256 without being
read; any other input is read and hashed again, so a changed one is still refused.

These tests count which files are hashed (``_file_sha``) or stat'ed through fsspec
(``_file_stat``, the slow route) during a resume: an unchanged store reads no input, a touched
input is read once (its entry refreshed, then quick again), and a rewrite of the same size with
another modification time is read and refused.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import PurePosixPath

import fsspec
import nibabel as nib
import numpy as np
import pytest

from daskmasker import NiftiMapsMasker, open_timeseries, run_batch
from daskmasker.batch.index import read_index
from daskmasker.batch.items import item_name
from daskmasker.batch.record import StaleStoreError
from daskmasker.batch.store import Location, is_pending
from daskmasker.io import checksum

from helpers import make_mask, write_study

RUNS = ["sub-01_task-rest", "sub-02_task-rest"]


def _batch(study, out, brain_masks=None):
    masker = NiftiMapsMasker(study["maps"], mask_img=study["mask"], standardize="zscore_sample")
    return run_batch(
        masker,
        [r["img"] for r in study["runs"]],
        out,
        confounds=[r["conf"] for r in study["runs"]],
        brain_masks=brain_masks,
    )


@pytest.fixture
def study(tmp_path):
    """A study extracted in place (a recorded digest is reused only for the same path)."""
    study = write_study(tmp_path)
    study["brain"] = [str(tmp_path / f"brain{i}.nii.gz") for i in (1, 2)]
    for path in study["brain"]:
        make_mask(radius=12.0).to_filename(path)
    study["out"] = str(tmp_path / "out.zarr")
    assert sorted(_batch(study, study["out"], study["brain"]).done) == RUNS
    return study


@pytest.fixture
def reads(monkeypatch):
    """The files hashed or stat'ed through fsspec during the test, in order."""
    seen: list[str] = []
    file_sha, file_stat = checksum._file_sha, checksum._file_stat

    def counted_sha(fs, path):
        seen.append(os.path.basename(path))
        return file_sha(fs, path)

    def counted_stat(fs, path, info=None):
        seen.append(os.path.basename(path))
        return file_stat(fs, path, info)

    monkeypatch.setattr(checksum, "_file_sha", counted_sha)
    monkeypatch.setattr(checksum, "_file_stat", counted_stat)
    return seen


def _inputs_read(seen):
    """The per-run inputs among the files read (the maps and mask are hashed once a batch)."""
    return sorted({name for name in seen if name.startswith(("sub-", "brain"))})


def _rewrite_same_size(path, seconds_later=10.0):
    """Another content of the same size (one byte changed), modified ``seconds_later``."""
    data = bytearray(open(path, "rb").read())
    middle = len(data) // 2
    data[middle] = (data[middle] + 1) % 256
    before = os.stat(path)
    with open(path, "wb") as f:
        f.write(data)
    later = before.st_mtime_ns + int(seconds_later * 1e9)
    os.utime(path, ns=(later, later))
    assert os.path.getsize(path) == before.st_size


def test_an_unchanged_store_resumes_without_reading_any_input(study, reads):
    result = _batch(study, study["out"], study["brain"])
    assert sorted(result.skipped) == RUNS and not result.done
    assert _inputs_read(reads) == []  # images, confounds, brain masks: stat'ed only


@pytest.mark.parametrize(
    ("role", "match"),
    [("img", "image content changed"), ("conf", "confounds content changed")],
)
def test_a_same_size_rewrite_with_a_new_mtime_is_read_and_refused(study, reads, role, match):
    path = study["runs"][1][role]
    _rewrite_same_size(path)
    before = open_timeseries(study["out"])["signals"].values
    with pytest.raises(StaleStoreError, match=f"run sub-02_task-rest: {match}") as info:
        _batch(study, study["out"], study["brain"])
    assert "sub-01_task-rest" not in str(info.value)  # its inputs unchanged: quick and kept
    assert os.path.basename(path) in reads
    assert not is_pending(Location(study["out"]))  # a refused rerun marks nothing
    np.testing.assert_array_equal(open_timeseries(study["out"])["signals"].values, before)


def test_a_changed_brain_mask_is_read_and_refused(study, reads):
    _rewrite_same_size(study["brain"][0])
    with pytest.raises(StaleStoreError, match="run sub-01_task-rest: brain_mask content changed"):
        _batch(study, study["out"], study["brain"])
    assert _inputs_read(reads) == ["brain1.nii.gz"]


def test_a_touched_input_is_read_once_kept_and_then_quick_again(study, reads):
    path = study["runs"][0]["img"]
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    result = _batch(study, study["out"], study["brain"])
    assert sorted(result.skipped) == RUNS  # same bytes: nothing recomputed
    assert _inputs_read(reads) == [os.path.basename(path)]
    entry = read_index(Location(study["out"]))["sub-01_task-rest"]
    assert entry["image"]["stat"] == checksum._local_file_stat(path)  # refreshed
    reads.clear()
    assert sorted(_batch(study, study["out"], study["brain"]).skipped) == RUNS
    assert _inputs_read(reads) == []


def test_the_quick_stat_is_fsspecs(tmp_path):
    """``_local_file_stat`` must give exactly the stat fsspec records, or every resume of a
    store written through fsspec would hash every input again (and this the other way)."""
    fs = fsspec.filesystem("file")
    path = tmp_path / "a.nii.gz"
    nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)).to_filename(path)
    link = tmp_path / "link.nii.gz"
    link.symlink_to(path)
    for p in (path, link):
        assert checksum._local_file_stat(str(p)) == checksum._file_stat(fs, str(p))
    broken = tmp_path / "broken"
    broken.symlink_to(tmp_path / "absent")
    for p in (tmp_path, broken, tmp_path / "absent"):
        assert checksum._local_file_stat(str(p)) is None


@pytest.mark.parametrize(
    "path",
    [
        "sub-01/func/sub-01_task-rest_bold.nii.gz",
        "/data/sub-01_task-rest_bold.nii",
        "s3://bucket/sub-02_task-nback_run-1_bold.nii.gz",
        "study/sub-03_task-rest_bold.zarr/",
        "study/sub-04_bold.zarr/.",
        "a//b.nii.gz",
        "/",
        "",
        ".",
        "..",
    ],
)
def test_run_names_are_pathlibs(path):
    """Run names are taken without pathlib (a resume names every run), as pathlib named them."""
    stem = re.sub(r"(\.nii(\.gz)?|\.zarr)$", "", PurePosixPath(path).name)
    assert item_name(path, 7) == (re.sub(r"_bold$", "", stem) or "item-0007")


@pytest.fixture
def encoded(monkeypatch):
    """How many run fingerprints the resume check encodes (the slow path's per-run JSON)."""
    from daskmasker.batch import record

    count = [0]
    original = record.fingerprint_sha

    def counted(fp):
        count[0] += 1
        return original(fp)

    monkeypatch.setattr(record, "fingerprint_sha", counted)
    return count


def test_an_unchanged_store_encodes_no_fingerprint(study, encoded):
    """The quick path compares the index's columns: no run's fingerprint is encoded."""
    assert sorted(_batch(study, study["out"], study["brain"]).skipped) == RUNS
    assert encoded[0] == 0


def test_a_changed_package_version_is_refused(study, monkeypatch):
    """The fields every run shares are compared by one sha256: a new version of a package
    that shapes the numbers changes it, and each run is refused naming the package."""
    from daskmasker.batch import provenance

    installed = provenance._package_versions()
    monkeypatch.setattr(provenance, "_package_versions", lambda: {**installed, "numpy": "0.0.1"})
    with pytest.raises(StaleStoreError, match="package 'numpy' was .*, now 0.0.1") as info:
        _batch(study, study["out"], study["brain"])
    assert all(f"run {name}" in str(info.value) for name in RUNS)


def test_a_format_1_index_is_read_then_rewritten_by_column(study, encoded, reads):
    """An index of one JSON object per run (format 1, without the ``shared`` and ``own``
    sha256) still resumes without reading any input; its runs are checked the slow way once
    and their entries rewritten in format 2, so the next resume takes the quick path."""
    location = Location(study["out"])
    entries = read_index(location)
    legacy = {
        name: {k: v for k, v in entry.items() if k not in ("shared", "own")}
        for name, entry in entries.items()
    }
    path = os.path.join(study["out"], "runs", "index.json")
    with open(path, "w") as f:
        json.dump(legacy, f)
    assert sorted(_batch(study, study["out"], study["brain"]).skipped) == RUNS
    assert encoded[0] == len(RUNS) and _inputs_read(reads) == []
    with open(path) as f:
        assert json.load(f)["format"] == 2
    assert read_index(location) == entries
    encoded[0] = 0
    assert sorted(_batch(study, study["out"], study["brain"]).skipped) == RUNS
    assert encoded[0] == 0


def test_the_index_by_column_holds_every_entry():
    """Entries of every kind (a file's digest, a list of files, an in-memory table read from
    a file, no input, a brain mask on one run, two batches' shared fields) come back equal
    from the stored columns, and a format-1 file is read as the same entries."""
    from daskmasker.batch.index import ResumeIndex

    def file(name, sha):
        return {"source": f"/data/{name}", "stat": "10:1.5", "sha256": sha * 64}

    versions = {"numpy": "2.4"}
    entries = {
        "sub-01": {
            "fingerprint": "a" * 64,
            "shared": "b" * 64,
            "own": "c" * 64,
            "image": file("sub-01_bold.nii.gz", "d"),
            "maps": file("maps.nii.gz", "e"),
            "mask": None,
            "confounds": None,
            "versions": versions,
        },
        "sub-02": {
            "fingerprint": "f" * 64,
            "shared": "0" * 64,
            "own": "c" * 64,
            "image": {
                "source": ["/data/a.nii.gz", "/data/b.nii.gz"],
                "stat": None,
                "sha256": "1" * 64,
                "parts": [file("a.nii.gz", "2"), file("b.nii.gz", "3")],
            },
            "maps": file("maps.nii.gz", "4"),
            "mask": file("mask.nii.gz", "5"),
            "confounds": {
                "source": "<table from /data/c.tsv>",
                "stat": None,
                "sha256": "6" * 64,
                "file": file("c.tsv", "7"),
            },
            "versions": {"numpy": "2.5"},
            "brain_mask": file("brain.nii.gz", "8"),
        },
    }
    index = ResumeIndex.from_entries(entries)
    assert len(index.columns["kinds"]) == 2
    assert dict(ResumeIndex.from_json(index.to_json()).items()) == entries
    assert dict(ResumeIndex.from_json(json.dumps(entries).encode()).items()) == entries
    assert "sub-03" not in index and sorted(index) == ["sub-01", "sub-02"]


def test_an_index_of_a_later_format_is_refused_naming_it(study):
    """An index written by a newer daskmasker is not read as runs named "format", "names"..."""
    path = os.path.join(study["out"], "runs", "index.json")
    with open(path, "w") as f:
        json.dump({"format": 3, "names": []}, f)
    with pytest.raises(ValueError, match=r"runs/index.json: a resume index of format 3, newer"):
        _batch(study, study["out"], study["brain"])
