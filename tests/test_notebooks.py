"""The notebooks run as a user runs them: ``jupyter nbconvert --to notebook --execute`` on the
python3 kernel (small data; notebook 03 against the S3 server it starts on 127.0.0.1 when no
endpoint is set, and against the tests' own S3 server through ``DASKMASKER_S3_ENDPOINT``), then
``jupyter nbconvert --to html``.  The rendered page, opened offline in headless Chromium, shows
every printed line and every figure (decoded and drawn) and no error; the notebooks need nothing
beyond the ``[notebooks]`` extra."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import s3fs
import tomllib

from daskmasker import NiftiMapsMasker, open_timeseries

from browser import drawn_fraction, open_page
from s3server import s3_server, storage_options

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
S3_NOTEBOOK = ROOT / "notebooks" / "03_bids_on_s3.ipynb"


def test_there_are_three_notebooks():
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_batch_localcluster.ipynb",
        "03_bids_on_s3.ipynb",
    ]


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_notebooks_extra_holds_what_they_import():
    """Every module a notebook imports comes from the standard library, daskmasker's own
    dependencies or the ``[notebooks]`` extra, which also brings JupyterLab and a kernel."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = {_requirement_name(r) for r in project["optional-dependencies"]["notebooks"]}
    allowed = extra | {_requirement_name(r) for r in project["dependencies"]} | {"daskmasker"}
    assert {"jupyterlab", "ipykernel"} <= extra
    providers = packages_distributions()
    imported = set()
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names)
    assert {"moto", "s3fs", "matplotlib", "daskmasker"} <= third_party  # the probe sees them
    for module in sorted(third_party):
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [module])}
        assert dists & allowed, f"the notebooks import {module} ({dists}), not in [notebooks]"


def nbconvert(*args: str, env: dict[str, str]) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert ran.returncode == 0, ran.stderr[-4000:]


def run_and_render(path: Path, out: Path, env: dict[str, str]) -> tuple:
    """Execute ``path`` as a user does, render it; the executed notebook and the HTML page."""
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "notebooks are committed without outputs"
    )
    execute = ["--to", "notebook", "--execute", "--ExecutePreprocessor.timeout=600"]
    nbconvert(*execute, "--output-dir", str(out), str(path), env=env)
    executed = out / path.name
    nbconvert("--to", "html", str(executed), env=env)
    return nbformat.read(executed, as_version=4), out / f"{path.stem}.html"


def outputs(notebook, kind: str) -> list:
    return [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == kind]


def check_page(notebook, page_path: Path) -> None:
    """The page shows every printed line and figure of ``notebook``, and no error."""
    assert not outputs(notebook, "error")
    printed = [
        " ".join(line.split())
        for out in outputs(notebook, "stream")
        if out.name == "stdout"
        for line in out.text.splitlines()
        if line.strip()
    ]
    assert printed, "the notebook printed nothing"  # negative control: there is text to find
    stderr = [out.text for out in outputs(notebook, "stream") if out.name == "stderr"]
    assert not [t for t in stderr if re.search(r"Warning|Error|Traceback", t)], stderr
    figures = sum(
        "image/png" in out.get("data", {})
        for kind in ("display_data", "execute_result")
        for out in outputs(notebook, kind)
    )
    with open_page(page_path, offline=True) as page:
        shown = " ".join(page.inner_text("body").split())
        for line in printed:
            assert line in shown, line
        assert "Traceback" not in shown
        images = page.locator(".jp-OutputArea-output img")
        assert images.count() == figures
        for k in range(figures):
            image = images.nth(k)
            image.scroll_into_view_if_needed()
            width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
            assert width > 100, f"figure {k} of {page_path.name} is not decoded"
            assert drawn_fraction(image.screenshot()) > 0.03, f"figure {k} is blank"


def user_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DASKMASKER_S3"))}
    return {**env, **extra}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_renders(path, tmp_path):
    notebook, page = run_and_render(path, tmp_path, user_environment())
    check_page(notebook, page)
    if path == S3_NOTEBOOK:
        printed = "".join(out.text for out in outputs(notebook, "stream"))
        for read in ("maps read from s3://", "mask read from s3://", "BIDS TSV read from s3://"):
            assert read in printed, printed
        assert len(re.findall(r"^run s3://\S+ confounds s3://\S+$", printed, re.M)) == 2


def test_s3_notebook_reads_and_writes_only_the_bucket(tmp_path):
    """On the tests' S3 server: the notebook's outputs in the bucket are the time series of the
    bucket's runs, their confounds, maps and mask (recomputed here from downloaded copies), and
    every input the store records is an ``s3://`` URL."""
    with s3_server() as endpoint:
        env = user_environment(
            DASKMASKER_S3_ENDPOINT=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
        )
        notebook, page = run_and_render(S3_NOTEBOOK, tmp_path, env)
        check_page(notebook, page)
        opts = storage_options(endpoint)
        fs = s3fs.S3FileSystem(**opts)
        fs.get("lab-bucket/ds", str(tmp_path / "ds"), recursive=True)
        fs.get("lab-bucket/atlas", str(tmp_path / "atlas"), recursive=True)
        ds = open_timeseries("s3://lab-bucket/derivatives/timeseries.zarr", storage_options=opts)
        ds = ds.load()  # before the server stops
        tsvs = fs.glob("lab-bucket/derivatives/tsv/**/*_timeseries.tsv")
        tables = [pd.read_csv(fs.open(t), sep="\t").to_numpy() for t in sorted(tsvs)]
    assert ds.sizes["run"] == 2 == len(tables)
    masker = NiftiMapsMasker(
        str(tmp_path / "atlas" / "maps.nii.gz"),
        mask_img=str(tmp_path / "atlas" / "mask.nii.gz"),
        standardize="zscore_sample",
        detrend=True,
    )
    for k in range(2):
        source, confounds = str(ds["source"].values[k]), str(ds["confounds_source"].values[k])
        assert source.startswith("s3://lab-bucket/ds/") and confounds.startswith("s3://"), source
        local = str(tmp_path / source.removeprefix("s3://lab-bucket/"))
        want = masker.fit_transform(
            local, confounds=local.replace("_bold.nii.gz", "_desc-confounds_timeseries.tsv")
        )
        got = ds["signals"].isel(run=k).values
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(tables[k], want, rtol=1e-6, atol=1e-6)
