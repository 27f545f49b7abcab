"""Several atlases in one batch: ``run_batch`` with a list of maskers (and ``extract`` with
several ``--maps``) writes a store per atlas, each as that atlas's own batch writes it, from one
read of each image; a rerun skips, refuses and resumes per atlas, before anything is computed."""

from __future__ import annotations

import os

import numpy as np
import pytest

from daskmasker import NiftiMapsMasker, open_timeseries, run_batch
from daskmasker.batch.record import StaleStoreError
from daskmasker.cli import main

from browser import drawn_fraction, open_page
from helpers import make_maps

PARAMS = dict(standardize="zscore_sample", detrend=True, t_r=2.0)
RUNS = ["sub-01_task-rest", "sub-02_task-rest"]


@pytest.fixture
def atlases(study):
    """The study's maps and a second atlas of 4 other maps, as files."""
    other = study["root"] / "other.nii.gz"
    make_maps(n_maps=4, seed=7, dtype=np.float64).to_filename(other)
    return [study["maps"], str(other)]


def _maskers(study, atlases, **params):
    return [
        NiftiMapsMasker(maps, mask_img=study["mask"], **{**PARAMS, **params}) for maps in atlases
    ]


def _batch(study, atlases, stores, **params):
    imgs = [r["img"] for r in study["runs"]]
    confounds = [r["conf"] for r in study["runs"]]
    return run_batch(_maskers(study, atlases, **params), imgs, stores, confounds=confounds)


def _packs(store: str) -> dict[str, float]:
    """The store's packed runs and their modification times."""
    folder = os.path.join(store, "runs")
    return {n: os.path.getmtime(os.path.join(folder, n)) for n in sorted(os.listdir(folder))}


@pytest.mark.parametrize(
    "settings",
    [{}, {"daskmasker.batch.whole-item-bytes": 0}],
    ids=["whole", "graph-per-item"],
)
def test_each_store_is_its_own_atlas_batch(study, atlases, tmp_path, settings):
    """Each atlas's store, opened by ``open_timeseries``, holds what that atlas's batch alone
    writes: the same runs, region names and signals (the shared product sums in another order:
    1e-12), and the same fingerprints, so one atlas's batch resumes it with nothing to do."""
    import dask

    stores = [str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")]
    with dask.config.set(settings):
        results = _batch(study, atlases, stores)
    assert [sorted(r.done) for r in results] == [RUNS, RUNS]
    assert [r.store for r in results] == stores
    for k, (maps, store) in enumerate(zip(atlases, stores, strict=True)):
        alone = str(tmp_path / f"alone-{k}.zarr")
        (masker,) = _maskers(study, [maps])
        imgs = [r["img"] for r in study["runs"]]
        run_batch(masker, imgs, alone, confounds=[r["conf"] for r in study["runs"]])
        got, want = open_timeseries(store), open_timeseries(alone)
        assert list(got["run"].values) == RUNS
        assert got.sizes["region"] == (6, 4)[k]
        assert list(got["region_name"].values) == list(want["region_name"].values)
        scale = np.nanmax(np.abs(want["signals"].values))
        np.testing.assert_allclose(
            got["signals"].values, want["signals"].values, rtol=0, atol=1e-12 * scale
        )
        for run in RUNS:
            fp = open_timeseries(store, run).attrs["fingerprint"]
            assert fp == open_timeseries(alone, run).attrs["fingerprint"]
        (masker,) = _maskers(study, [maps])
        again = run_batch(masker, imgs, store, confounds=[r["conf"] for r in study["runs"]])
        assert again.done == [] and sorted(again.skipped) == RUNS


@pytest.mark.parametrize(
    "settings",
    [{}, {"daskmasker.batch.whole-item-bytes": 0}],
    ids=["whole", "graph-per-item"],
)
def test_on_a_local_cluster(study, atlases, tmp_path, settings):
    """On two worker processes (the recorders held on the cluster, each image's atlases computed
    and written by one worker), the stores equal the threaded scheduler's."""
    import dask

    from daskmasker import dask_client

    imgs = [r["img"] for r in study["runs"]]
    confounds = [r["conf"] for r in study["runs"]]
    local = [str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")]
    remote = [str(tmp_path / "ca.zarr"), str(tmp_path / "cb.zarr")]
    with dask.config.set(settings):
        _batch(study, atlases, local)
        with dask_client(workers=2) as client:
            results = run_batch(
                _maskers(study, atlases), imgs, remote, confounds=confounds, client=client
            )
    assert [sorted(r.done) for r in results] == [RUNS, RUNS]
    for got, want in zip(remote, local, strict=True):
        np.testing.assert_allclose(
            open_timeseries(got)["signals"].values,
            open_timeseries(want)["signals"].values,
            rtol=0,
            atol=1e-12,
        )


def test_a_changed_parameter_is_refused_before_any_atlas_is_computed(study, atlases, tmp_path):
    """A rerun with another parameter is refused naming it, and neither store changes (the
    refusal comes before anything is computed, for every atlas); a rerun where only the second
    atlas's maps changed is refused too, the first atlas's store untouched."""
    stores = [str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")]
    _batch(study, atlases, stores)
    before = [_packs(s) for s in stores]
    with pytest.raises(StaleStoreError, match="parameter 'detrend' was True, now False"):
        _batch(study, atlases, stores, detrend=False)
    assert [_packs(s) for s in stores] == before
    make_maps(n_maps=4, seed=8, dtype=np.float64).to_filename(atlases[1])
    with pytest.raises(StaleStoreError, match="maps content changed"):
        _batch(study, atlases, stores)
    assert [_packs(s) for s in stores] == before


def test_a_resume_extracts_only_what_each_atlas_lacks(study, atlases, tmp_path):
    """A run missing from one atlas's store only (its object removed, as a kill leaves it) is
    extracted for that atlas alone; the other atlas skips it, its object untouched."""
    stores = [str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")]
    _batch(study, atlases, stores)
    os.remove(os.path.join(stores[1], "runs", f"{RUNS[1]}.npz"))
    kept = _packs(stores[0])
    first, second = _batch(study, atlases, stores)
    assert first.done == [] and sorted(first.skipped) == RUNS
    assert second.done == [RUNS[1]] and second.skipped == [RUNS[0]]
    assert _packs(stores[0]) == kept
    assert list(open_timeseries(stores[1])["run"].values) == RUNS


def test_lists_must_match_the_maskers(study, atlases, tmp_path):
    maskers = _maskers(study, atlases)
    imgs = [study["runs"][0]["img"]]
    with pytest.raises(ValueError, match=r"store must be a list of 2 \(one per masker\)"):
        run_batch(maskers, imgs, str(tmp_path / "a.zarr"))
    with pytest.raises(ValueError, match=r"atlas_label must be a list of 2"):
        run_batch(maskers, imgs, ["a.zarr", "b.zarr"], atlas_label=["A"])


def test_cli_writes_each_atlas_its_reports_and_bids_files(study, atlases, tmp_path, capsys):
    """``extract --maps A --maps B`` writes, beside each atlas's store, the masker's report
    (naming that atlas's maps, its maps drawn: seen in Chromium) and the study report, and with
    ``--bids-dir`` each atlas's TSVs under its ``--atlas-label``."""
    out, bids_dir = tmp_path / "out", tmp_path / "derivatives"
    imgs = [r["img"] for r in study["runs"]]
    argv = ["extract", *imgs, "--maps", atlases[0], "--maps", atlases[1], "--out", str(out)]
    labels = ["--atlas-label", "Six", "--atlas-label", "Four"]
    flags = ["--detrend", "--t-r", "2", "--no-progress", "--bids-dir", str(bids_dir)]
    assert main([*argv, *flags, *labels]) == 0
    for name, label, n_maps in (("maps", "Six", 6), ("other", "Four", 4)):
        store = out / f"{name}.zarr"
        assert list(open_timeseries(str(store))["run"].values) == RUNS
        page = (out / f"{name}.zarr.masker.html").read_text()
        assert f"The masker has <b>{n_maps}</b> spatial maps in total." in page
        assert f"<td>{atlases[0] if name == 'maps' else atlases[1]}</td>" in page
        study_page = (out / f"{name}.zarr.report.html").read_text()
        assert str(store) in study_page and "sub-02_task-rest" in study_page
        tsvs = sorted(bids_dir.rglob(f"*_atlas-{label}_timeseries.tsv"))
        assert [p.name.split("_")[0] for p in tsvs] == ["sub-01", "sub-02"]
    assert not list(out.glob("*/*.html"))  # beside the stores, never inside
    with open_page(out / "other.zarr.masker.html") as page:
        assert page.locator(".image img.map").count() == 4
        assert drawn_fraction(page.locator(".image img.map").nth(0).screenshot()) > 0.2
        assert "other.nii.gz" in page.locator("#parameters table.parameters").inner_text()
    capsys.readouterr()
    assert main([*argv, *flags, "--atlas-label", "Six"]) == 2
    assert "1 --atlas-label for 2 --maps" in capsys.readouterr().err
