"""Knobs live under dask.config as daskmasker.*, with the packaged defaults behind them."""

from __future__ import annotations

import subprocess
import sys

import dask

from daskmasker import config


def test_set_overrides_and_restores():
    before = config.get("chunk-bytes")
    with dask.config.set({"daskmasker.chunk-bytes": 1024}):
        assert config.get("chunk-bytes") == 1024
    assert config.get("chunk-bytes") == before == 33554432


def test_nested_keys():
    with dask.config.set({"daskmasker.retry.attempts": 2}):
        assert config.get("retry.attempts") == 2
        assert config.get("retry.backoff") == 0.25


def test_set_before_the_defaults_are_registered_keeps_them():
    """A fresh process whose first daskmasker setting is a ``dask.config.set`` block: leaving
    the block dropped the whole daskmasker subtree, defaults included."""
    code = (
        "import dask\n"
        "from daskmasker import config\n"
        "with dask.config.set({'daskmasker.chunk-bytes': 1024}):\n"
        "    assert config.get('chunk-bytes') == 1024\n"
        "print(config.get('gzip-stash-bytes'), config.get('chunk-bytes'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["268435456", "33554432"]
