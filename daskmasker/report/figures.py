"""The report's figures, drawn with nilearn's plotting (the ``daskmasker[plotting]`` extra).

nilearn's ``plot_stat_map`` is what a nilearn user reads every day: an
anatomical background, neurological-convention orthogonal cuts with their mm coordinates, a
and a colorbar.  Drawing the same with bare matplotlib gave
unlabelled panels whose size followed each map's bounding box; nilearn's gives panels of one size
(the figure size is fixed here) and the conventions of every nilearn tutorial.  Figures are SVG
(as nilearn's reports embed them) and are built from what ``fit`` kept: the maps, the mask and
one volume of the data, never the series.
"""

from __future__ import annotations

import functools
import io
from types import ModuleType
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

if TYPE_CHECKING:
    from nilearn.plotting.displays import BaseSlicer

PANEL_SIZE = (9.0, 3.4)  # inches: every map's panel has this size
THRESHOLD = 0.05  # weights below 5 % of the map's peak are not drawn (the anatomy shows through)
MISSING = (
    "generate_report draws its figures with nilearn's plotting: install daskmasker[plotting] "
    "(pip install 'daskmasker[plotting]')"
)

# the MNI152 template's field of view (mm), with a margin: maps inside it are in MNI space
_MNI_BOX = np.array([[-100.0, -136.0, -82.0], [100.0, 104.0, 112.0]])


def _plotting() -> ModuleType:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from nilearn import plotting
    except ImportError as exc:  # pragma: no cover - the extra is installed with the tests
        raise ImportError(MISSING) from exc
    return plotting


@functools.cache
def mni_template() -> nib.Nifti1Image:
    """nilearn's MNI152 template (2 mm), from its package data (no download)."""
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=2)


def in_mni_space(maps: nib.Nifti1Image) -> bool:
    """Whether the maps' grid covers a brain in MNI space.

    True when the header says so (sform/qform code 4, MNI152) or when the grid's world bounding
    box lies inside the MNI152 template's field of view and spans at least 100 mm left-right (a
    whole-brain atlas): nilearn's test images on identity affines are a few mm wide and are not.
    """
    header = maps.header
    if any(int(header.get(code, 0)) == 4 for code in ("sform_code", "qform_code")):
        return True
    shape = np.asarray(maps.shape[:3])
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * (shape - 1)
    world = nib.affines.apply_affine(maps.affine, corners)
    low, high = world.min(axis=0), world.max(axis=0)
    inside = np.all(low >= _MNI_BOX[0]) and np.all(high <= _MNI_BOX[1])
    return bool(inside and high[0] - low[0] >= 100.0)


def peak_mm(map_img: nib.Nifti1Image) -> tuple[float, float, float]:
    """World coordinates (mm) of the voxel of largest absolute weight: where the map is cut."""
    data = np.nan_to_num(np.asarray(map_img.dataobj, dtype=np.float64))
    voxel = np.unravel_index(int(np.argmax(np.abs(data))), data.shape)
    x, y, z = (float(c) for c in nib.affines.apply_affine(map_img.affine, voxel))
    return x, y, z


def _svg(display: BaseSlicer) -> bytes:
    """The display's figure as SVG, the same bytes for the same figure (fixed ids, no date)."""
    import matplotlib
    import matplotlib.pyplot as plt

    figure = display.frame_axes.figure
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "daskmasker"}):
        figure.savefig(buffer, format="svg", facecolor="white", metadata={"Date": None})
    display.close()
    plt.close(figure)
    return buffer.getvalue()


def map_figure(
    map_img: nib.Nifti1Image, background: nib.Nifti1Image | None, name: str, cmap: str
) -> bytes:
    """One map over its background, cut at the map's peak, with a colorbar and the map's name.

    Returns the SVG document.
    """
    plotting = _plotting()
    import matplotlib.pyplot as plt

    peak = float(np.nanmax(np.abs(np.asarray(map_img.dataobj))))
    display = plotting.plot_stat_map(
        map_img,
        threshold=THRESHOLD * peak,
        bg_img=background,  # None: no background
        cut_coords=peak_mm(map_img),
        colorbar=True,
        title=name,
        cmap=cmap,
        black_bg=False,
        draw_cross=True,
        figure=plt.figure(figsize=PANEL_SIZE),
    )
    return _svg(display)


def overview_figure(
    maps: nib.Nifti1Image, background: nib.Nifti1Image | None, title: str, cmap: str
) -> bytes:
    """All maps at once: each voxel's largest absolute weight over the maps, as an SVG document.

    nilearn's probabilistic-atlas view (``plot_prob_atlas``) draws a colour per map but fails in
    nilearn 0.14.1 on a map absent from one of its cuts ("zero-size array to reduction
    operation"), which atlases on a sub-grid or masked maps often are; the envelope of the maps,
    drawn as one stat map cut where the maps weigh most, shows the same coverage and never fails.
    """
    envelope = nib.Nifti1Image(_envelope(maps), maps.affine)
    return map_figure(envelope, background, title, cmap)


def _envelope(maps: nib.Nifti1Image) -> np.ndarray:
    """Largest absolute weight per voxel, one map at a time (sparse maps stay sparse)."""
    out = np.zeros(maps.shape[:3], dtype=np.float32)
    for k in range(maps.shape[3]):
        np.maximum(out, np.abs(np.nan_to_num(np.asarray(maps.dataobj[..., k]))), out=out)
    return out
