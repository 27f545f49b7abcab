"""The masker's HTML report: what it records (as nilearn), and what a person sees in Chromium."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from nilearn.reporting import HTMLReport

from daskmasker import MultiNiftiMapsMasker, NiftiMapsMasker

from browser import coloured_fraction, drawn_fraction, has_colorbar, open_page, pixels
from helpers import make_data, make_maps, make_mask

NAMES = ["motor L", "motor R", "visual", "default", "salience", "language"]


@pytest.fixture(scope="module")
def fitted():
    maps = make_maps(n_maps=6, dtype=np.float32)
    data = make_data(maps, n_scans=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NiftiMapsMasker(
            maps, mask_img=make_mask(), standardize="zscore_sample", region_names=NAMES
        ).fit(data)


def report(masker, **kwargs):
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        out = masker.generate_report(**kwargs)
    return out, [str(w.message) for w in records]


def test_content_of_a_fitted_report(fitted):
    rep, warns = report(fitted, displayed_maps="all")
    assert isinstance(rep, HTMLReport) and not warns
    body = rep.body
    assert "The masker has <b>6</b> spatial maps in total." in body
    assert "This report shows the spatial maps provided to the mask." in body
    assert body.count("<img ") == 6 and body.count("<svg") == 1  # the maps and the overview
    for name in fitted.get_params():
        assert f"<td>{name}</td>" in body
    assert "data shape (14, 16, 12, 6)" in body  # maps_img described as in the seed report
    assert 'div id="sk-container-id' in body  # sklearn's repr, as nilearn's reports have it
    assert fitted._report_content["title"] == "NiftiMapsMasker"
    assert fitted._report_content["number_of_maps"] == 6


@pytest.mark.parametrize(
    ("displayed", "shown", "warning"),
    [
        ("all", [0, 1, 2, 3, 4, 5], None),
        (3, [0, 1, 2], None),
        ([2, 0], [2, 0], None),
        (np.array([4, 1]), [4, 1], None),
        (
            9,
            [0, 1, 2, 3, 4, 5],
            "'displayed_maps=9' to be displayed. But masker only has 6 map(s).",
        ),
        ([1, 66], [1], "Report cannot display the following map [66] because masker only has 6"),
    ],
)
def test_displayed_maps_as_nilearn_records_them(fitted, displayed, shown, warning):
    rep, warns = report(fitted, displayed_maps=displayed, title="A title")
    assert fitted._report_content["displayed_maps"] == shown
    assert fitted._report_content["title"] == "A title"
    assert fitted._report_content["page_title"] == "A title report"
    assert rep.body.count("<img ") == len(shown)
    assert [f'data-label="{NAMES[k]}"' in rep.body for k in shown] == [True] * len(shown)
    if len(shown) < 6:
        assert f"Only <b>{len(shown)}</b> spatial maps are shown in this report." in rep.body
    if warning:
        assert any(warning in w for w in warns)
        assert any(warning in w for w in fitted._report_warnings)
    else:
        assert not warns


@pytest.mark.parametrize("bad", [1.5, "some", [1.0, 2.0], np.array([1.2, 3.0]), [np.int64(1)]])
def test_bad_displayed_maps(fitted, bad):
    with pytest.raises(TypeError, match="Parameter 'displayed_maps' of ``generate_report"):
        fitted.generate_report(displayed_maps=bad)


def test_unfitted_and_disabled_states():
    maps = make_maps(n_maps=3)
    rep, warns = report(NiftiMapsMasker(maps))
    assert "This estimator has not been fit yet." in rep.body and "<img " not in rep.body
    assert any("has not been fit yet" in w for w in warns)
    masker = NiftiMapsMasker(maps, reports=False).fit()
    assert not masker._has_report_data()
    rep, warns = report(masker)
    assert "Report generation not enabled!\nNo visual outputs created." in rep.body
    assert any("Report generation was disabled when fit was run" in w for w in warns)


def test_fit_without_image_and_with_a_list_of_4d_images(fitted):
    maps = make_maps(n_maps=2)
    rep, warns = report(NiftiMapsMasker(maps).fit())
    assert any("No image provided to fit in NiftiMapsMasker" in w for w in warns)
    assert rep.body.count("<img ") == 2
    data = make_data(maps, n_scans=6)
    rep, warns = report(MultiNiftiMapsMasker(maps).fit([data, data]))
    assert any("A list of 4D subject images were provided to fit" in w for w in warns)


def test_input_paths_are_absolute(tmp_path, monkeypatch):
    import nibabel as nib

    nib.save(make_maps(n_maps=2), tmp_path / "maps.nii.gz")
    monkeypatch.chdir(tmp_path)
    rep, _ = report(NiftiMapsMasker("maps.nii.gz").fit())
    assert f"<td>{os.path.join(tmp_path, 'maps.nii.gz')}</td>" in rep.body


def test_save_as_html_and_jupyter(fitted, tmp_path):
    rep, _ = report(fitted, displayed_maps=2)
    path = tmp_path / "report.html"
    rep.save_as_html(path)
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and rep.body in page
    assert rep._repr_html_() == rep.body
    assert not list(tmp_path.glob("*.partial"))


def test_report_in_headless_chromium(fitted, tmp_path):
    rep, _ = report(fitted, displayed_maps=4)
    path = tmp_path / "report.html"
    rep.save_as_html(path)
    with open_page(path) as page:
        assert page.locator("h2").all_inner_texts()[:2] == ["Component", "Parameters"]
        overview = page.locator(".overview svg")
        box = overview.bounding_box()
        assert box["width"] > 400 and box["height"] > 100
        shot = overview.screenshot()
        assert drawn_fraction(shot) > 0.2, "the overview draws the anatomy and the maps"
        assert coloured_fraction(shot) > 0.01, "the overview has coloured maps and a colorbar"
        images = page.locator(".image img.map")
        assert images.count() == 4
        assert page.locator(".image img.map:visible").count() == 1
        sizes = {
            tuple(images.nth(i).evaluate("img => [img.naturalWidth, img.naturalHeight]"))
            for i in range(4)
        }
        assert len(sizes) == 1 and min(next(iter(sizes))) > 200, "every panel has one size"
        first = images.nth(0).screenshot()
        assert drawn_fraction(first) > 0.2, "the map is drawn over an anatomical background"
        assert has_colorbar(pixels(first)), "a colorbar is drawn right of the cuts"
        assert page.locator(".map-name").inner_text() == NAMES[0]
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        page.locator("button", has_text="Next Map").click()
        assert not images.nth(0).is_visible() and images.nth(1).is_visible()
        assert page.locator(".map-name").inner_text() == NAMES[1]
        second = images.nth(1).screenshot()
        assert second != first, "the carousel shows another map"
        table = page.locator("#parameters table.parameters")
        assert (
            "maps_img" in table.inner_text() and "data shape (14, 16, 12, 6)" in table.inner_text()
        )


def test_background_and_cut_of_each_map(fitted):
    """MNI-space maps are drawn over the MNI152 template, others over the image given to fit,
    else the mask, else nothing; each map is cut at its peak (in mm)."""
    import nibabel as nib

    from daskmasker.report import figures, html

    mni = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
    assert figures.in_mni_space(nib.Nifti1Image(np.zeros((91, 109, 91, 1), np.float32), mni))
    assert not figures.in_mni_space(fitted.maps_img_)  # a 28 mm grid
    small = nib.Nifti1Image(np.zeros((4, 4, 4, 1), np.float32), np.eye(4))
    small.header.set_sform(np.eye(4), code=4)  # the header says MNI
    assert figures.in_mni_space(small)
    assert html._background(fitted)[1] == "image given to fit"
    no_image = NiftiMapsMasker(make_maps(n_maps=2), mask_img=make_mask()).fit()
    assert html._background(no_image)[1] == "mask"
    assert html._background(NiftiMapsMasker(make_maps(n_maps=2)).fit())[1] == "no background"
    volume = np.zeros((5, 6, 7), np.float32)
    volume[1, 4, 2] = -3.0  # the largest absolute weight, negative
    volume[3, 3, 3] = 2.0
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    assert figures.peak_mm(nib.Nifti1Image(volume, affine)) == (2.0, 12.0, 8.0)
