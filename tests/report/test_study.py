"""The study report of a batch store: from ``extract`` and ``info --report``, seen in Chromium."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from daskmasker import open_timeseries
from daskmasker.cli import main
from daskmasker.report.study import kept_frames, study_report

from browser import coloured_fraction, drawn_fraction, open_page
from helpers import make_data, make_maps

N_SCANS = (30, 34, 38)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Three runs extracted by the CLI (the second with a bad confounds file: it fails)."""
    tmp = tmp_path_factory.mktemp("study")
    maps = make_maps(dtype=np.float64)
    maps.to_filename(tmp / "maps.nii.gz")
    imgs, confs = [], []
    for sub, n in enumerate(N_SCANS, start=1):
        imgs.append(str(tmp / f"sub-{sub:02d}_task-rest_bold.nii.gz"))
        make_data(maps, n_scans=n, seed=sub).to_filename(imgs[-1])
        confs.append(str(tmp / f"sub-{sub:02d}_desc-confounds_timeseries.tsv"))
        rows = n if sub != 2 else n - 5  # sub-02's confounds do not match its volumes
        rng = np.random.default_rng(sub)
        np.savetxt(confs[-1], rng.normal(size=(rows, 2)), delimiter="\t")
    out = str(tmp / "study.zarr")
    args = ["extract", *imgs, "--maps", str(tmp / "maps.nii.gz"), "--confounds", *confs]
    code = main([*args, "--out", out, "--no-progress", "-q"])
    return tmp, out, code


def test_extract_writes_both_reports_beside_the_store(study):
    tmp, _, code = study
    assert code == 1  # one run failed
    assert (tmp / "study.zarr.report.html").stat().st_size > 10_000
    assert (tmp / "study.zarr.masker.html").exists()
    assert not list((tmp / "study.zarr").glob("*.html"))
    page = (tmp / "study.zarr.report.html").read_text()
    assert "sub-02_task-rest" in page and "failed" in page


def test_kept_frames_and_the_table():
    signals = xr.DataArray(
        np.ones((2, 5, 3)),
        dims=("run", "time", "region"),
        coords={"run": ["a", "b"], "region_name": ("region", ["x", "y", "z"])},
    )
    signals[1, 3:] = np.nan
    assert kept_frames(signals).to_dict() == {"a": 5, "b": 3}
    status = pd.DataFrame(
        {
            "run": ["a", "b", "c"],
            "status": ["complete", "complete", "refused"],
            "volumes": [6, 3, 4],
        }
    )
    status["message"] = ["", "", "changed inputs"]
    page = study_report(signals.to_dataset(name="signals"), status, "s")
    assert "<td>5 of 6</td>" in page and "<td>3 of 3</td>" in page
    assert "changed inputs" in page and "does not record the maps' coverage" in page
    with pytest.raises(ValueError, match="the status table has no column \\['status'\\]"):
        study_report(None, pd.DataFrame({"run": ["a"]}), "s")


def test_info_report_in_headless_chromium(study, capsys):
    tmp, out, _ = study
    (tmp / "study.zarr.report.html").unlink()
    assert main(["info", out, "--report"]) == 0
    assert "study report:" in capsys.readouterr().out
    path = tmp / "study.zarr.report.html"
    signals = open_timeseries(out)
    with open_page(path) as page:
        assert page.locator("h2").all_inner_texts()[:4] == [
            "Runs",
            "Refused or failed runs",
            "Signals",
            "Map coverage",
        ]
        rows = page.locator("table.runs tbody tr")
        assert rows.count() == 2  # info sees the store: the failed run left no group
        texts = rows.all_inner_texts()
        assert "sub-01_task-rest\tcomplete\t30 of 30" in texts[0]
        assert "sub-03_task-rest\tcomplete\t38 of 38" in texts[1]
        carpet = page.locator("img.carpet")
        size = carpet.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert size[0] > 500 and size[1] > 100
        shot = carpet.screenshot()
        assert drawn_fraction(shot) > 0.3 and coloured_fraction(shot) > 0.2
        page.screenshot(path=str(tmp / "study.png"), full_page=True)
    assert signals.sizes["run"] == 2
