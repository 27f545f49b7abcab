"""nilearn's own estimator checks on our maskers, collected as nilearn's tests collect them for its
NiftiMapsMasker and MultiNiftiMapsMasker (``maskers/tests/test_{,multi_}nifti_maps_masker.py``):

* scikit-learn's checks with nilearn's ``return_expected_failed_checks`` (the same expected
  failures, with nilearn's reasons: images, not arrays, are the input);
* ``nilearn_check_estimator``, selected by our ``__sklearn_tags__`` (a "masker" taking
  ``niimg_like`` input) on maskers of 2 and 1 maps, as nilearn does.

The checks branch on nilearn's own classes (``isinstance(estimator, NiftiMapsMasker)``,
``_MultiMixin``, ``CacheMixin``) and expect ``nilearn.exceptions.DimensionError``; while they are
collected and run, each of those names stands for nilearn's class *or* ours
(:func:`_ours_as_nilearns`), so our maskers get the branches nilearn's get.

Checks that fail on our maskers (they pass on nilearn's) are strict expected failures, each with
the difference that makes it fail; a strict xfail that starts passing fails the suite.
"""

from __future__ import annotations

import contextlib

import nilearn._utils.estimator_checks as nilearn_checks
import pytest
from nilearn._utils.cache_mixin import CacheMixin
from nilearn._utils.estimator_checks import nilearn_check_estimator, return_expected_failed_checks
from nilearn.conftest import _img_maps
from nilearn.exceptions import DimensionError as NilearnDimensionError
from nilearn.maskers import MultiNiftiMapsMasker as NilearnMulti
from nilearn.maskers import NiftiMapsMasker as NilearnMasker
from nilearn.maskers._mixin import _MultiMixin
from sklearn.utils.estimator_checks import parametrize_with_checks

from daskmasker import MultiNiftiMapsMasker, NiftiMapsMasker
from daskmasker.io.image import DimensionError

pytestmark = pytest.mark.slow

MAPPING = {
    "NiftiMapsMasker": (NilearnMasker, NiftiMapsMasker),
    "MultiNiftiMapsMasker": (NilearnMulti, MultiNiftiMapsMasker),
    "_MultiMixin": (_MultiMixin, MultiNiftiMapsMasker),
    "CacheMixin": (CacheMixin, NiftiMapsMasker),  # memory/memory_level with nilearn's warning
    "DimensionError": (NilearnDimensionError, DimensionError),
}

REPORT = (
    "daskmasker's report (daskmasker/report/html.py) is its own: PNG figures, its own Report "
    "class, no nilearn report internals (_report_content['description'], _has_report_data(), "
    "_report_warnings) and no sklearn HTML repr; the checks test nilearn's HTMLReport API"
)
DIFFERENCES = {
    "check_doc_link": (
        "the link pattern is nilearn's API site for a class of nilearn.<subpackage>; ours live "
        "in daskmasker.masker"
    ),
    "check_masker_generate_report": REPORT,
    "check_masker_generate_report_constant": REPORT,
    "check_masker_generate_report_false": REPORT,
    "check_nifti_masker_generate_report_after_fit_with_only_mask": REPORT,
    "check_multimasker_generate_report": REPORT,
}


@contextlib.contextmanager
def _ours_as_nilearns():
    """nilearn's check module with each nilearn class it names standing for nilearn's or ours."""
    saved = {name: getattr(nilearn_checks, name) for name in MAPPING}
    for name, classes in MAPPING.items():
        setattr(nilearn_checks, name, classes)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(nilearn_checks, name, value)


def _collect():
    params = []
    with _ours_as_nilearns():
        for cls in (NiftiMapsMasker, MultiNiftiMapsMasker):
            maskers = [cls(_img_maps(n_regions=n), standardize=None) for n in (2, 1)]
            for estimator, check, name in nilearn_check_estimator(estimators=maskers):
                marks = ()
                if name in DIFFERENCES:
                    marks = pytest.mark.xfail(strict=True, reason=DIFFERENCES[name])
                n_maps = estimator.maps_img.shape[3]
                params.append(
                    pytest.param(
                        estimator, check, id=f"{cls.__name__}-{n_maps}maps-{name}", marks=marks
                    )
                )
    return params


CHECKS = _collect()


def test_every_nilearn_masker_check_is_collected():
    """The checks nilearn runs on its NiftiMapsMasker all run on ours (the cache-warning check
    included, through memory/memory_level), and every listed difference names one of them."""
    names = {p.values[1].__name__ for p in CHECKS}
    reference = {name for *_, name in nilearn_check_estimator([NilearnMasker(_img_maps(2))])}
    reference |= {name for *_, name in nilearn_check_estimator([NilearnMulti(_img_maps(2))])}
    assert names == reference
    assert set(DIFFERENCES) <= names


@pytest.mark.parametrize(("estimator", "check"), CHECKS)
def test_nilearn_check(estimator, check):
    with _ours_as_nilearns():
        check(estimator)


@parametrize_with_checks(
    estimators=[NiftiMapsMasker(), MultiNiftiMapsMasker()],
    expected_failed_checks=return_expected_failed_checks,
)
def test_sklearn_check(estimator, check):
    """scikit-learn's checks, with nilearn's expected failures for image estimators."""
    check(estimator)
