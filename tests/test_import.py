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
