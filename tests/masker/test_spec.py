"""The public extraction spec: what every layer above the estimator builds its extractions from."""

from __future__ import annotations

import ast
import dataclasses
import pickle
from pathlib import Path

import dask
import numpy as np
import pytest
import tomllib

import daskmasker
from daskmasker import MultiNiftiMapsMasker, NiftiMapsMasker

from helpers import make_mask

PARAMS = dict(mask_img=make_mask(), detrend=True, standardize="zscore_sample", t_r=2.0)
KEEP = np.r_[0:10, 14:40]
NILEARN_REPORT_PROTOCOL = {
    "_reporting_data",
    "_report_content",
    "_report_warnings",
    "_has_report_data",
    "_repr_html_",
}


def _computed(lazy):
    return dask.compute(lazy.signals.data, lazy.raw, lazy.confounds)


@pytest.mark.parametrize("cls", [NiftiMapsMasker, MultiNiftiMapsMasker])
def test_the_spec_extracts_what_transform_returns(cls, maps, data):
    conf = np.random.default_rng(3).normal(size=(data.shape[-1], 2))
    masker = cls(maps, high_variance_confounds=True, **PARAMS).fit(data)
    spec = masker.extraction_spec()
    signals, raw, confounds = _computed(spec.lazy(data, conf, KEEP))
    if cls is MultiNiftiMapsMasker:  # a list of images: one list entry each
        expected = masker.transform([data], [conf], [KEEP])[0]
    else:
        expected = masker.transform(data, conf, KEEP)
    np.testing.assert_array_equal(signals, expected)
    # the high-variance confounds where each masker puts them: first (single), last (multi)
    hv_first = cls is NiftiMapsMasker
    np.testing.assert_array_equal(confounds[:, 5:] if hv_first else confounds[:, :2], conf)
    assert raw.shape == (data.shape[-1], spec.kept.size)


def test_the_spec_is_frozen_and_travels(maps, data):
    masker = NiftiMapsMasker(maps, region_names=[f"r{k}" for k in range(6)], **PARAMS).fit(data)
    spec = masker.extraction_spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.params = {}
    masker.set_params(detrend=False)  # a later change of the masker leaves the spec as it was
    assert spec.params["detrend"] is True and spec.attrs["detrend"] is True
    assert spec.names_of(spec.kept).tolist() == [f"r{k}" for k in spec.kept]
    again = pickle.loads(pickle.dumps(spec))
    np.testing.assert_array_equal(_computed(again.lazy(data))[0], _computed(spec.lazy(data))[0])
    assert not np.array_equal(_computed(again.lazy(data))[0], masker.transform(data))


def test_the_packages_above_the_masker_use_no_private_estimator_state():
    """batch/, cli/, report/, the demo and the public import path reach a fitted masker through
    public API only: every module above masker/ (the layers of pyproject.toml) is read."""
    root = Path(daskmasker.__file__).parent
    pyproject = tomllib.loads((root.parent / "pyproject.toml").read_text())
    (layers,) = [
        c["layers"] for c in pyproject["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    ]
    above = [name for layer in layers[: layers.index("masker")] for name in layer.split(" | ")]
    above.append("report")  # beside runtime below masker/, but nilearn's report of a masker
    assert set(above) == {"cli", "demo", "batch", "maskers", "report"}
    files = [
        path
        for name in above
        for path in (
            (root / name).rglob("*.py") if (root / name).is_dir() else [root / f"{name}.py"]
        )
    ]
    private = []
    for path in files:
        tree = ast.parse(path.read_text())
        # a module's private names (argparse._SubParsersAction in annotations) are no estimator's
        modules = {
            alias.asname or alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (
                    isinstance(node.value, ast.Name) and node.value.id in {"self", "cls", *modules}
                )
                # nilearn's report protocol: its maskers keep what their report shows there, and
                # nilearn's report checks read and write these attributes on the masker
                and node.attr not in NILEARN_REPORT_PROTOCOL
            ):
                private.append(f"{path.relative_to(root)}:{node.lineno} {ast.unparse(node)}")
            # the same read spelled getattr(masker, "_name") / hasattr / setattr
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"getattr", "hasattr", "setattr"}
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_")
                and not str(node.args[1].value).startswith("__")
                and node.args[1].value not in NILEARN_REPORT_PROTOCOL
            ):
                private.append(f"{path.relative_to(root)}:{node.lineno} {ast.unparse(node)}")
    assert not private, private
