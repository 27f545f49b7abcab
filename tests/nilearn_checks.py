"""nilearn's estimator checks and test modules pointed at daskmasker's classes.

nilearn's checks branch on its own classes (``isinstance(estimator, NiftiMapsMasker)``,
``_MultiMixin``, ``CacheMixin``) and expect ``nilearn.exceptions.DimensionError``; while
:func:`ours_as_nilearns` is active each of those names stands for nilearn's class *or* ours, so our
maskers get the branches nilearn's get.
"""

from __future__ import annotations

import contextlib

import nilearn._utils.estimator_checks as nilearn_checks
from nilearn._utils.cache_mixin import CacheMixin
from nilearn.exceptions import DimensionError as NilearnDimensionError
from nilearn.maskers import MultiNiftiMapsMasker as NilearnMulti
from nilearn.maskers import NiftiMapsMasker as NilearnMasker
from nilearn.maskers._mixin import _MultiMixin

from daskmasker import MultiNiftiMapsMasker, NiftiMapsMasker
from daskmasker.io.image import DimensionError

MAPPING = {
    "NiftiMapsMasker": (NilearnMasker, NiftiMapsMasker),
    "MultiNiftiMapsMasker": (NilearnMulti, MultiNiftiMapsMasker),
    "_MultiMixin": (_MultiMixin, MultiNiftiMapsMasker),
    "CacheMixin": (CacheMixin, NiftiMapsMasker),  # memory/memory_level with nilearn's warning
    "DimensionError": (NilearnDimensionError, DimensionError),
}


@contextlib.contextmanager
def ours_as_nilearns():
    """nilearn's check module with each nilearn class it names standing for nilearn's or ours."""
    saved = {name: getattr(nilearn_checks, name) for name in MAPPING}
    for name, classes in MAPPING.items():
        setattr(nilearn_checks, name, classes)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(nilearn_checks, name, value)
