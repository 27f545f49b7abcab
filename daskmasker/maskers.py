"""The maskers under nilearn's import path: ``from daskmasker.maskers import NiftiMapsMasker``.

``nilearn.maskers.NiftiMapsMasker`` becomes ``daskmasker.maskers.NiftiMapsMasker``; the classes
are defined in :mod:`daskmasker.masker` and carry this module as their ``__module__`` (their
pickles, reprs and documentation links name it, as nilearn's name ``nilearn.maskers``).
"""

from daskmasker.masker.estimator import NiftiMapsMasker
from daskmasker.masker.multi import MultiNiftiMapsMasker

__all__ = ["MultiNiftiMapsMasker", "NiftiMapsMasker"]
