"""The HTML report: its content and states, and as a person sees it in headless Chromium."""

from __future__ import annotations

import io
import shutil
import warnings

import numpy as np
import pytest

from daskmasker import NiftiMapsMasker

from helpers import make_data, make_maps, make_mask


@pytest.fixture(scope="module")
def fitted():
    maps = make_maps(n_maps=6, dtype=np.float32)
    data = make_data(maps, n_scans=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NiftiMapsMasker(maps, mask_img=make_mask(), standardize="zscore_sample").fit(data)


def report(masker, **kwargs):
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        out = masker.generate_report(**kwargs)
    return out, [str(w.message) for w in records]


def test_content_of_a_fitted_report(fitted):
    rep, _ = report(fitted)
    body = rep.body
    assert "The masker has <b>6</b> spatial maps in total." in body
    assert "This report shows the spatial maps provided to the mask." in body
    assert body.count("<img ") == 6
    for name in fitted.get_params():
        assert f"<td>{name}</td>" in body
    assert "data shape (14, 16, 12, 6)" in body  # maps_img described as in the seed report


@pytest.mark.parametrize(
    ("displayed", "n_img", "warning"),
    [
        ("all", 6, None),
        (3, 3, None),
        ([0, 2], 2, None),
        (9, 6, "'displayed_maps=9' to be displayed. But masker only has 6 map(s)."),
        ([1, 66], 1, "Report cannot display the following map [66] because masker only has 6"),
    ],
)
def test_displayed_maps(fitted, displayed, n_img, warning):
    rep, warns = report(fitted, displayed_maps=displayed)
    assert rep.body.count("<img ") == n_img
    if n_img < 6:
        assert f"Only <b>{n_img}</b> spatial maps are shown in this report." in rep.body
    if warning:
        assert any(warning in w for w in warns)


@pytest.mark.parametrize("bad", [1.5, "some", [1.0, 2.0]])
def test_bad_displayed_maps(fitted, bad):
    with pytest.raises(TypeError, match="Parameter 'displayed_maps' of ``generate_report"):
        fitted.generate_report(displayed_maps=bad)


def test_unfitted_and_disabled_states():
    maps = make_maps(n_maps=3)
    rep, warns = report(NiftiMapsMasker(maps))
    assert "This estimator has not been fit yet." in rep.body and "<img " not in rep.body
    assert any("has not been fit yet" in w for w in warns)
    rep, warns = report(NiftiMapsMasker(maps, reports=False).fit())
    assert "Report generation not enabled! No visual outputs created." in rep.body
    assert any("not enabled" in w for w in warns)


def test_fit_without_image_warns(fitted):
    rep, warns = report(NiftiMapsMasker(make_maps(n_maps=2)).fit())
    assert any("No image provided to fit in NiftiMapsMasker" in w for w in warns)
    assert rep.body.count("<img ") == 2


def test_save_as_html_and_jupyter(fitted, tmp_path):
    rep, _ = report(fitted, displayed_maps=2)
    path = tmp_path / "report.html"
    rep.save_as_html(path)
    assert path.read_text() == rep.body
    assert rep._repr_html_().startswith("<iframe srcdoc=")


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium; `.ci/run` installs it (tests never install system packages)."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run .ci/run or `apt-get install chromium`")
    return path


def _non_background_fraction(png: bytes) -> float:
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return float((np.abs(pixels - 255).sum(-1) > 30).mean())


def test_report_in_headless_chromium(fitted, tmp_path, chromium):
    from playwright.sync_api import sync_playwright

    rep, _ = report(fitted, displayed_maps=4)
    path = tmp_path / "report.html"
    rep.save_as_html(path)
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1300, "height": 1100})
        page.goto(path.as_uri())
        images = page.locator(".carousel img")
        assert images.count() == 4
        assert page.locator(".carousel img:visible").count() == 1
        first = images.nth(0)
        assert first.evaluate("img => img.naturalWidth") > 100
        shot = first.screenshot()
        assert _non_background_fraction(shot) > 0.05, "the map figure must not be blank"
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        shutil.copy(tmp_path / "report.png", "/tmp/daskmasker-report.png")
        page.locator("button", has_text="Next Map").click()
        assert not images.nth(0).is_visible()
        assert images.nth(1).is_visible()
        second = images.nth(1).screenshot()
        assert _non_background_fraction(second) > 0.05
        assert second != shot, "the carousel shows another map"
        browser.close()
