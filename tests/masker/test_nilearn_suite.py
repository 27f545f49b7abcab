"""nilearn 0.14.1's own tests of its maps maskers, run on daskmasker's classes.

nilearn's test modules ``maskers/tests/test_nifti_maps_masker.py``,
``test_multi_nifti_maps_masker.py`` (and the maps tests of ``test_html_report.py``) are executed
afresh (their source, from the installed package)
while ``nilearn.maskers.NiftiMapsMasker``/``MultiNiftiMapsMasker`` and the names nilearn's estimator
checks branch on stand for daskmasker's (``nilearn_checks.ours_as_nilearns``), so every
``NiftiMapsMasker``/``MultiNiftiMapsMasker`` the tests build, parametrize over or check is ours.
Their fixtures are nilearn's (``nilearn.conftest``). No test is skipped or expected to fail.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from pathlib import Path

import nilearn.conftest
import nilearn.exceptions
import nilearn.maskers
import pytest

import daskmasker
from daskmasker.io.image import DimensionError

from nilearn_checks import ours_as_nilearns

pytestmark = pytest.mark.slow

# nilearn's test modules and the tests of each that concern the maps maskers (None: all)
MODULES = {
    "test_nifti_maps_masker": None,
    "test_multi_nifti_maps_masker": None,
    "test_html_report": (
        "test_displayed_maps_valid_inputs",
        "test_displayed_maps_error",
        "test_displayed_maps_warning_too_many",
        "test_displayed_maps_warning_int_too_large",
    ),
}

# nilearn's fixtures (its conftest and its maskers tests' conftest), found by pytest here
for _fixtures in (nilearn.conftest, importlib.import_module("nilearn.maskers.tests.conftest")):
    for _name in dir(_fixtures):
        _value = getattr(_fixtures, _name)
        if type(_value).__name__ == "FixtureFunctionDefinition":
            globals()[_name] = _value


def _with_our_classes(test):
    """The test run while nilearn's estimator checks see our classes as nilearn's."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        with ours_as_nilearns():
            return test(*args, **kwargs)

    return run


def _rebound(name: str) -> types.ModuleType:
    """nilearn's test module ``name`` executed with daskmasker's classes under nilearn's names."""
    spec = importlib.util.find_spec(f"nilearn.maskers.tests.{name}")
    module = types.ModuleType(f"nilearn_on_daskmasker.{name}")
    module.__file__ = spec.origin
    source = Path(spec.origin).read_text("utf-8")
    saved = {k: getattr(nilearn.maskers, k) for k in ("NiftiMapsMasker", "MultiNiftiMapsMasker")}
    saved_error = nilearn.exceptions.DimensionError
    try:
        for k in saved:
            setattr(nilearn.maskers, k, getattr(daskmasker, k))
        # nilearn's or ours (a TypeError with nilearn's message, docs/differences.md #14)
        nilearn.exceptions.DimensionError = (saved_error, DimensionError)
        with ours_as_nilearns():
            exec(compile(source, spec.origin, "exec"), module.__dict__)
    finally:
        for k, v in saved.items():
            setattr(nilearn.maskers, k, v)
        nilearn.exceptions.DimensionError = saved_error
    sys.modules[module.__name__] = module
    return module


for _module_name, _selected in MODULES.items():
    _module = _rebound(_module_name)
    assert _module.NiftiMapsMasker is daskmasker.NiftiMapsMasker
    assert _module.MultiNiftiMapsMasker is daskmasker.MultiNiftiMapsMasker
    for _name, _value in vars(_module).items():
        if type(_value).__name__ == "FixtureFunctionDefinition":  # the module's own fixtures
            globals()[_name] = _value
        if _selected is not None and _name not in _selected:
            continue
        if _name.startswith("test_") and callable(_value):
            short = _module_name.removeprefix("test_")
            globals()[f"test_{short}__{_name.removeprefix('test_')}"] = _with_our_classes(_value)


class _NotMulti:
    """Stands for nilearn's ``_MultiMixin`` so that multi maskers get the single-masker checks."""


def _single_image_checks() -> list:
    """The checks nilearn runs on single maskers only (a single 4D image with an array of
    confounds or a sample mask): nilearn skips them on its multi maskers, which refuse those
    arguments; run on both multi maskers, they must fail the same way."""
    from nilearn._utils.estimator_checks import nilearn_check_estimator
    from nilearn.conftest import _img_maps
    from nilearn.maskers import MultiNiftiMapsMasker as NilearnMulti

    from nilearn_checks import MAPPING

    def names(mixin):
        saved = MAPPING["_MultiMixin"]
        MAPPING["_MultiMixin"] = mixin
        try:
            with ours_as_nilearns():
                masker = NilearnMulti(_img_maps(n_regions=2), standardize=None)
                return {n: c for _, c, n in nilearn_check_estimator(estimators=[masker])}
        finally:
            MAPPING["_MultiMixin"] = saved

    multi = names(MAPPING["_MultiMixin"])
    return [pytest.param(c, id=n) for n, c in names((_NotMulti,)).items() if n not in multi]


@pytest.mark.parametrize("check", _single_image_checks())
def test_multi_masker_refuses_single_image_arguments_as_nilearns(check):
    from nilearn.conftest import _img_maps
    from nilearn.maskers import MultiNiftiMapsMasker as NilearnMulti

    outcomes = []
    for cls in (NilearnMulti, daskmasker.MultiNiftiMapsMasker):
        with ours_as_nilearns(), pytest.raises(Exception) as info:
            check(cls(_img_maps(n_regions=2), standardize=None))
        outcomes.append((type(info.value), str(info.value)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] is TypeError and "must be a None or a list" in outcomes[0][1]
