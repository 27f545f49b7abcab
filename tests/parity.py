"""Comparing daskmasker with nilearn 0.14.1: one relative error, tolerances near the measured one.

The error of an output against nilearn's is ``max|ours - nilearn| / max|nilearn|`` (both taken
in float64). Measured over the parity tests (tests/masker/test_*parity*.py, test_multi.py):

* float64 data: at most 1.1e-12 (most configurations 2e-15 to 2e-13; the largest, 8e-13 and
  1.1e-12, with high-variance confounds, whose eigenvectors nilearn and we compute differently).
  ``TOL64 = 1e-11`` leaves a factor ~10; a single float32 rounding (~6e-8) or a
  1e-7 perturbation is 4 orders of magnitude above it (see the negative controls).
* float32 or int16 data: we compute in float64 and cast the result to nilearn's output dtype
  (float32), so against nilearn run on the float64 cast of the same data the error is the
  float32 rounding of the output: at most 6e-8. ``TOL_F32_OUTPUT = 2e-7``.
* against nilearn's own float32 run (it solves in float32): up to 3.4e-5 after detrending and
  standardizing (nilearn's own error, see the reference's field notes). ``TOL32 = 1e-4``.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np

TOL64 = 1e-11
TOL_F32_OUTPUT = 2e-7
TOL32 = 1e-4


def relative_error(out, ref) -> float:
    """``max|out - ref| / max|ref|`` in float64 (the scale floored at 1e-12)."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-12)
    return float(np.abs(out - ref).max(initial=0.0)) / scale


def assert_close(out, ref, tol: float = TOL64, what: str = "output") -> float:
    """Raise AssertionError unless ``out`` has ``ref``'s shape and is within ``tol`` of it
    (relative error, see :func:`relative_error`); return the error."""
    out, ref = np.asarray(out), np.asarray(ref)
    assert out.shape == ref.shape, f"{what}: shape {out.shape} != nilearn's {ref.shape}"
    err = relative_error(out, ref)
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:.0e}"
    return err


def user_warnings(records) -> list[tuple[str, str]]:
    """(category, message) of the User/Future warnings recorded, sorted."""
    return sorted(
        (w.category.__name__, str(w.message))
        for w in records
        if issubclass(w.category, UserWarning | FutureWarning)
        and not issubclass(w.category, DeprecationWarning)
    )


def run(cls, params: dict, fit_imgs, imgs, **kwargs):
    """Fit ``cls(**params)`` on ``fit_imgs``, transform ``imgs``: (output, warnings, masker)."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        masker = cls(**params).fit(fit_imgs)
        out = masker.transform(imgs, **kwargs)
    return out, user_warnings(records), masker


def assert_parity(params, fit_imgs, imgs, tol=TOL64, check_warnings=True, ref_imgs=None, **kw):
    """Our NiftiMapsMasker against nilearn's on the same inputs: the dtype, the shape, the
    values within ``tol`` and (``check_warnings``) the same warnings. nilearn reads ``ref_imgs``
    when given (for inputs it cannot read, such as Zarr stores). Returns (output, masker)."""
    from nilearn.maskers import NiftiMapsMasker as NilearnMasker

    from daskmasker import NiftiMapsMasker

    ref_imgs = imgs if ref_imgs is None else ref_imgs
    ref_fit = fit_imgs if fit_imgs is not imgs else ref_imgs
    ref, ref_w, _ = run(NilearnMasker, params, ref_fit, ref_imgs, **kw)
    out, out_w, masker = run(NiftiMapsMasker, params, fit_imgs, imgs, **kw)
    assert isinstance(out, np.ndarray)
    assert out.dtype == ref.dtype
    assert_close(out, ref, tol)
    if check_warnings:
        assert out_w == ref_w
    return out, masker


def as64(img) -> nib.Nifti1Image:
    """The image's data cast to float64 (as scaled on disk)."""
    return nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float64), img.affine, img.header)
