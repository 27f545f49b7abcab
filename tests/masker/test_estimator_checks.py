"""nilearn's own estimator checks on our maskers, collected as nilearn's tests collect them for its
NiftiMapsMasker and MultiNiftiMapsMasker (``maskers/tests/test_{,multi_}nifti_maps_masker.py``):

* scikit-learn's checks with nilearn's ``return_expected_failed_checks`` (the same expected
  failures, with nilearn's reasons: images, not arrays, are the input);
* ``nilearn_check_estimator``, selected by our ``__sklearn_tags__`` (a "masker" taking
  ``niimg_like`` input) on maskers of 2 and 1 maps, as nilearn does.

While they are collected and run, the nilearn classes the checks branch on stand for nilearn's
class *or* ours (``nilearn_checks.ours_as_nilearns``), so ours get the branches nilearn's get.

Every check passes, with no expected failure: the report ones included (``generate_report`` returns
nilearn's ``HTMLReport`` and records ``_report_content`` as nilearn does).
"""

from __future__ import annotations

import pytest
from nilearn._utils.estimator_checks import nilearn_check_estimator, return_expected_failed_checks
from nilearn.conftest import _img_maps
from nilearn.maskers import MultiNiftiMapsMasker as NilearnMulti
from nilearn.maskers import NiftiMapsMasker as NilearnMasker
from sklearn.utils.estimator_checks import parametrize_with_checks

from daskmasker import MultiNiftiMapsMasker, NiftiMapsMasker

from nilearn_checks import ours_as_nilearns

pytestmark = pytest.mark.slow


def _collect():
    params = []
    with ours_as_nilearns():
        for cls in (NiftiMapsMasker, MultiNiftiMapsMasker):
            maskers = [cls(_img_maps(n_regions=n), standardize=None) for n in (2, 1)]
            for estimator, check, name in nilearn_check_estimator(estimators=maskers):
                n_maps = estimator.maps_img.shape[3]
                params.append(
                    pytest.param(estimator, check, id=f"{cls.__name__}-{n_maps}maps-{name}")
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


@pytest.mark.parametrize(("estimator", "check"), CHECKS)
def test_nilearn_check(estimator, check):
    with ours_as_nilearns():
        check(estimator)


@parametrize_with_checks(
    estimators=[NiftiMapsMasker(), MultiNiftiMapsMasker()],
    expected_failed_checks=return_expected_failed_checks,
)
def test_sklearn_check(estimator, check):
    """scikit-learn's checks, with nilearn's expected failures for image estimators."""
    check(estimator)
