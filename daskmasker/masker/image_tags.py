"""nilearn's input tags for scikit-learn's tags machinery (imports scikit-learn: only
``NiftiMapsMasker.__sklearn_tags__`` imports this module, when a scikit-learn tool asks)."""

from __future__ import annotations

from dataclasses import dataclass

from sklearn.utils import InputTags


@dataclass
class ImageInputTags(InputTags):
    """scikit-learn's input tags plus nilearn's: images in (``niimg_like``), no surfaces.

    The fields and defaults of ``nilearn._utils.tags.InputTags`` (nilearn 0.14.1), which nilearn's
    tools read by name (``getattr(tags.input_tags, "niimg_like", False)``).
    """

    niimg_like: bool = True
    surf_img: bool = False
