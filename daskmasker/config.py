"""daskmasker's knobs, kept in Dask's configuration under ``daskmasker.*``.

The defaults are ``daskmasker.yaml`` beside this file; Dask's usual mechanisms override them
(``dask.config.set``, YAML files in ``~/.config/dask/``, ``DASKMASKER__*`` environment variables).
Values are read when used, not at import, so a ``dask.config.set`` block applies to what runs
inside it.

Examples
--------
>>> import dask
>>> get("chunk-bytes")
33554432
>>> with dask.config.set({"daskmasker.chunk-bytes": 1024}):
...     get("chunk-bytes")
1024
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import dask.config
import yaml


@functools.cache
def _defaults() -> dict:
    """The packaged defaults, registered with Dask's configuration once."""
    text = resources.files("daskmasker").joinpath("daskmasker.yaml").read_text("utf-8")
    defaults = yaml.safe_load(text)
    dask.config.update_defaults(defaults)
    return defaults


def get(key: str) -> Any:
    """The value of ``daskmasker.<key>`` (dotted for nested keys, e.g. ``"retry.attempts"``).

    The packaged default answers when Dask's configuration lost the key (leaving a
    ``dask.config.set`` block that ran before the defaults were registered drops them).
    """
    default: Any = _defaults()
    for part in f"daskmasker.{key}".split("."):
        default = default[part]
    return dask.config.get(f"daskmasker.{key}", default=default)
