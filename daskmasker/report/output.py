"""Where reports are written: beside a batch store (never inside it), to a path or fsspec URL."""

from __future__ import annotations

import os


def beside(store: str, suffix: str) -> str:
    """The path of a file next to ``store`` (a path or URL): ``out.zarr`` -> ``out.zarr<suffix>``.

    A report inside the store would be a file among the run groups, where nobody looks and where
    a store tool may take it for data.

    >>> beside("s3://bucket/study/out.zarr/", ".report.html")
    's3://bucket/study/out.zarr.report.html'
    """
    return f"{str(store).rstrip('/')}{suffix}"


def write_page(text: str, target: str | os.PathLike, storage_options: dict | None = None) -> None:
    """Write an HTML page to a local path or fsspec URL, through a temporary ``.partial`` name
    (a reader never sees half a page)."""
    import fsspec

    fs, _, (path,) = fsspec.get_fs_token_paths(str(target), storage_options=storage_options or {})
    tmp = f"{path}.partial"
    with fs.open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    fs.mv(tmp, path)
