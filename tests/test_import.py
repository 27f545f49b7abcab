"""``import daskmasker`` is cheap: public names load on first use (PEP 562)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import daskmasker

HEAVY = ("distributed", "sklearn", "matplotlib", "pandas", "xarray", "zarr", "nibabel")


def test_import_pulls_in_no_heavy_dependency():
    code = "import sys, daskmasker; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "daskmasker" in loaded  # negative control: the probe sees what it imports
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_constructing_a_masker_pulls_in_no_dask_xarray_or_nibabel():
    """A one-shot job (a CLI call, a SLURM array task) pays for the extraction stack when it
    fits or transforms, not when it builds its masker; scikit-learn not even then
    (``tests/masker/test_sklearn_protocol.py``)."""
    code = (
        "import sys, daskmasker; daskmasker.NiftiMapsMasker('maps.nii.gz', t_r=2.0); "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "daskmasker.masker.estimator" in loaded  # negative control
    lazy = {"dask", "distributed", "xarray", "zarr", "nibabel", "fsspec", "matplotlib", "sklearn"}
    assert not loaded & lazy, sorted(loaded & lazy)


@pytest.mark.parametrize("name", daskmasker.__all__)
def test_every_public_name_resolves(name):
    assert getattr(daskmasker, name) is not None
    assert name in dir(daskmasker)


def test_dir_is_the_public_api_and_version_a_string():
    assert dir(daskmasker) == sorted(daskmasker.__all__)
    assert set(daskmasker.__all__) == {"__version__", *daskmasker._EXPORTS}
    assert isinstance(daskmasker.__version__, str)
    assert daskmasker.__version__ == importlib.metadata.version("daskmasker")
    for helper in ("version", "importlib", "Any", "TYPE_CHECKING", "annotations"):
        assert not hasattr(daskmasker, helper), helper


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NiftiLabelsMasker'"):
        daskmasker.NiftiLabelsMasker  # noqa: B018


# --- a one-shot job extracting here imports what its path needs --------------------------------


def _loaded(code: str) -> set[str]:
    """The modules a fresh process has imported after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return set(run.stdout.split())


@pytest.fixture(scope="module")
def job_files(tmp_path_factory):
    from helpers import write_maps_and_mask, write_run

    root = tmp_path_factory.mktemp("oneshot")
    paths = write_maps_and_mask(root)
    paths["run"] = str(root / "sub-01_task-rest_bold.nii.gz")
    write_run(paths["run"], paths.pop("maps_img"), n_scans=30, seed=0)
    return paths


# imported by a local extraction only when its parameters need them: a cluster, a Zarr store,
# temporal filters, a report (each 0.5-1 s of a one-shot job: benchmarks/bench_startup.py)
LAZY = {"distributed", "zarr", "scipy.signal", "scipy.interpolate", "matplotlib", "nilearn"}


def test_a_local_extraction_imports_no_cluster_store_or_filter_stack(job_files):
    """``fit_transform`` of a .nii.gz without a cluster: Dask's ``compute`` would import
    ``distributed`` to look for a client; ``scipy.signal`` is for filters only.  What
    scikit-learn's base class imports itself is left out of the count (the masker drops it
    separately)."""
    job = (
        "from daskmasker import NiftiMapsMasker\n"
        f"masker = NiftiMapsMasker({job_files['maps']!r}, mask_img={job_files['mask']!r}, "
        "standardize='zscore_sample'{extra})\n"
        f"assert masker.fit_transform({job_files['run']!r}).shape == (30, 6)"
    )
    by_sklearn = _loaded("import sklearn.base")
    plain = _loaded(job.format(extra=""))
    assert "daskmasker.compute.filters" in plain  # the probe sees the extraction's imports
    assert not (plain - by_sklearn) & LAZY, sorted((plain - by_sklearn) & LAZY)
    # negative control: a low-pass filter needs scipy.signal, and it is then imported
    filtered = _loaded(job.format(extra=", low_pass=0.1, t_r=2.0"))
    assert "scipy.signal" in filtered


def test_the_extract_command_without_a_cluster_imports_no_distributed(job_files, tmp_path):
    out = str(tmp_path / "out.zarr")
    argv = ["extract", job_files["run"], "--maps", job_files["maps"], "--mask", job_files["mask"]]
    argv += ["--out", out, "--no-report", "-q"]
    code = f"from daskmasker.cli import main\nassert main({argv!r}) == 0"
    loaded = _loaded(code) - _loaded("import sklearn.base")
    assert "zarr" in loaded  # the store is written: the probe sees the command's imports
    assert not loaded & (LAZY - {"zarr"}), sorted(loaded & (LAZY - {"zarr"}))
    # negative control: with a local cluster, distributed is imported
    workers = _loaded(code.replace("'-q']", "'-q', '--overwrite', '--workers', '1']"))
    assert "distributed" in workers
