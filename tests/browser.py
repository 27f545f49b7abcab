"""Headless Chromium (Debian's, driven by Playwright) for the report tests, and pixel helpers."""

from __future__ import annotations

import contextlib
import io
import os
import shutil

import numpy as np
import pytest

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# where macOS keeps Chromium and Chrome, which Playwright drives as it drives Debian's Chromium
MACOS_BROWSERS = (
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)


def chromium_path() -> str:
    """Debian's Chromium (`.ci/run` installs it: tests never install system packages), or on
    macOS Chromium.app or Google Chrome.app."""
    path = shutil.which("chromium") or next(
        (p for p in MACOS_BROWSERS if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.fail(
            "Chromium is not installed: run .ci/run or `apt-get install chromium` "
            "(macOS: install Chromium.app or Google Chrome.app)"
        )
    return path


@contextlib.contextmanager
def open_page(path, width=1300, height=1100, offline=False):
    """The HTML file at ``path`` in a headless Chromium page; ``offline``: every request but
    ``file:`` ones is refused (what the page shows must be in its files)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            if offline:
                page.route(
                    "**/*",
                    lambda route: (
                        route.continue_()
                        if route.request.url.startswith("file:")
                        else route.abort()
                    ),
                )
            page.goto(path.as_uri())
            yield page
        finally:
            browser.close()


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def drawn_fraction(png: bytes) -> float:
    """Fraction of pixels that are not (near) white."""
    return float((np.abs(pixels(png) - 255).sum(-1) > 30).mean())


def coloured_fraction(png: bytes) -> float:
    """Fraction of saturated pixels (not grey, white or black): colour maps and colorbars."""
    rgb = pixels(png)
    return float((rgb.max(-1) - rgb.min(-1) > 60).mean())


def has_colorbar(rgb: np.ndarray) -> bool:
    """A vertical colour scale in the right fifth: a column coloured over half the height
    (a map's blob is never that tall; the gradient of a colorbar is)."""
    strip = rgb[:, int(rgb.shape[1] * 0.8) :]
    coloured = (strip.max(-1) - strip.min(-1)) > 60
    return bool(coloured.mean(axis=0).max() > 0.5)
