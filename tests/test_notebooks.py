"""The notebooks run top to bottom as a user runs them (a python3 Jupyter kernel, small data;
the S3 one against the moto server it starts on 127.0.0.1) and render to HTML (nbconvert) with
their outputs and no error."""

from __future__ import annotations

import html
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_three_notebooks():
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_batch_localcluster.ipynb",
        "03_bids_on_s3.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_renders(path, tmp_path, monkeypatch):
    for name in ("DASKMASKER_S3_ENDPOINT", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "notebooks are committed without outputs"
    )
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors

    page, _ = HTMLExporter().from_notebook_node(notebook)
    (tmp_path / f"{path.stem}.html").write_text(page)
    assert "Traceback" not in page and 'data-mime-type="text/plain"' in page
    texts = [
        line
        for cell in notebook.cells
        for out in cell.get("outputs", [])
        if out.output_type == "stream"
        for line in out.text.splitlines()
        if line.strip()
    ]
    assert texts, "the notebook printed nothing"  # negative control: there is something to find
    for line in texts:
        assert html.escape(line.strip(), quote=False) in page, line
    if path.stem == "03_bids_on_s3":
        assert "maps read from s3://lab-bucket/atlas/maps.nii.gz" in texts
