"""BIDS-derivatives outputs of a batch: ``*_timeseries.tsv`` files with JSON sidecars."""

from __future__ import annotations

import json
from collections.abc import Sequence

import fsspec
import numpy as np


def write_tsv(
    directory: str,
    name: str,
    signals: np.ndarray,
    columns: Sequence[str],
    sidecar: dict,
    storage_options: dict | None = None,
) -> str:
    """A BIDS-derivatives ``<name>_desc-daskmasker_timeseries.tsv`` and its JSON sidecar."""
    fs, _, (root,) = fsspec.get_fs_token_paths(directory, storage_options=storage_options or {})
    fs.makedirs(root, exist_ok=True)
    stem = f"{root.rstrip('/')}/{name}_desc-daskmasker_timeseries"
    header = "\t".join(columns)
    lines = [header] + ["\t".join(repr(float(v)) for v in row) for row in signals]
    for path, text in (
        (f"{stem}.tsv", "\n".join(lines) + "\n"),
        (f"{stem}.json", json.dumps(sidecar, indent=2)),
    ):
        tmp = f"{path}.partial"
        with fs.open(tmp, "w") as f:
            f.write(text)
        fs.mv(tmp, path)
    return f"{stem}.tsv"
