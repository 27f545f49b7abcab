"""HTML report of a fitted masker, as nilearn's ``generate_report`` for ``NiftiMapsMasker``.

The report shows the description, how many maps the masker has and shows, one figure per displayed
map (the map over the middle volume of the image given to ``fit``, or alone when fit had none) in a
carousel, the table of every constructor parameter and the warnings.  Figures are drawn with
matplotlib (three orthogonal slices through the map's peak); building a report reads only what
``fit`` kept (the maps and one volume), never the series.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import string
import uuid
import warnings
from importlib import resources
from typing import Any

import numpy as np

from daskmasker.stacklevel import find_stack_level

NOT_FITTED = (
    "This estimator has not been fit yet. Make sure to run `fit` before inspecting reports."
)
DISABLED = "Report generation not enabled! No visual outputs created."
DISABLED_AT_FIT = (
    "Report generation was disabled when fit was run. No reporting data is available. "
    "Make sure to set self.reports=True before fit."
)
NO_IMAGE = "No image provided to fit in NiftiMapsMasker. Plotting only spatial maps for reporting."


def check_displayed_maps(displayed_maps: Any) -> None:
    """nilearn's type check of ``displayed_maps``."""
    ok = (
        (isinstance(displayed_maps, str) and displayed_maps == "all")
        or (isinstance(displayed_maps, int | np.integer) and not isinstance(displayed_maps, bool))
        or (
            isinstance(displayed_maps, list | np.ndarray)
            and all(isinstance(i, int | np.integer) for i in np.ravel(displayed_maps))
        )
    )
    if not ok:
        kind = type(displayed_maps).__name__
        raise TypeError(
            "Parameter 'displayed_maps' of ``generate_report()`` should be either 'all' or a "
            f"positive 'int', or a list/array of ints. You provided a {kind}."
        )


def select_maps(displayed_maps: Any, n_maps: int) -> tuple[list[int], list[str]]:
    """Indices to show and the report warnings, with nilearn's rules."""
    check_displayed_maps(displayed_maps)
    notes: list[str] = []
    if isinstance(displayed_maps, str):
        return list(range(n_maps)), notes
    if isinstance(displayed_maps, int | np.integer):
        if displayed_maps > n_maps:
            notes.append(
                f"'displayed_maps={displayed_maps}' to be displayed. But masker only has "
                f"{n_maps} map(s). 'displayed_maps' was set to {n_maps}."
            )
        return list(range(min(int(displayed_maps), n_maps))), notes
    indices = [int(i) for i in np.ravel(displayed_maps)]
    wrong = [i for i in indices if i >= n_maps or i < 0]
    if wrong:
        notes.append(
            f"Report cannot display the following map {wrong} because masker only has "
            f"{n_maps} map(s)."
        )
    return [i for i in indices if 0 <= i < n_maps], notes


def _figure(map_xyz: np.ndarray, background: np.ndarray | None, cmap: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    peak = np.unravel_index(np.argmax(np.abs(map_xyz)), map_xyz.shape)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), facecolor="white")
    vmax = float(np.abs(map_xyz).max()) or 1.0
    views = [
        (lambda a: a[peak[0], :, :].T, "sagittal x"),
        (lambda a: a[:, peak[1], :].T, "coronal y"),
        (lambda a: a[:, :, peak[2]].T, "axial z"),
    ]
    for ax, (cut, name) in zip(axes, views, strict=True):
        if background is not None:
            ax.imshow(cut(background), origin="lower", cmap=cmap, interpolation="nearest")
        overlay = np.ma.masked_equal(cut(map_xyz), 0)
        ax.imshow(
            overlay,
            origin="lower",
            cmap="winter" if background is not None else "hot",
            vmin=0,
            vmax=vmax,
            alpha=0.9,
            interpolation="nearest",
        )
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def describe_value(value: Any) -> str:
    """A parameter value as the seed report shows it (images with shape, affine and header)."""
    import nibabel as nib

    if isinstance(value, nib.spatialimages.SpatialImage):
        affine = np.array2string(np.asarray(value.affine), separator=" ")
        return (
            f"{type(value)} data shape {tuple(value.shape)} affine: {affine} "
            f"metadata: {type(value.header)} object, {value.header!s}"
        )
    return str(value)


class Report:
    """An HTML report: ``save_as_html``, ``open_in_browser``, and rich display in Jupyter."""

    def __init__(self, body: str, title: str):
        self.body = body
        self.title = title

    @property
    def html(self) -> str:
        return self.body

    def __str__(self) -> str:
        return self.body

    def _repr_html_(self) -> str:
        srcdoc = html.escape(self.body, quote=True)
        return f'<iframe srcdoc="{srcdoc}" style="width:100%;height:800px;border:none"></iframe>'

    def save_as_html(self, path, storage_options: dict | None = None) -> None:
        """Write the report to a local path or fsspec URL (via a temporary name)."""
        import fsspec

        fs, _, (target,) = fsspec.get_fs_token_paths(
            str(path), storage_options=storage_options or {}
        )
        tmp = f"{target}.partial"
        with fs.open(tmp, "w") as f:
            f.write(self.body)
        fs.mv(tmp, target)

    def open_in_browser(self) -> str:
        """Write to a temporary file and open it in the default browser."""
        import tempfile
        import webbrowser

        with tempfile.NamedTemporaryFile("w", suffix=".html", delete=False) as f:
            f.write(self.body)
        webbrowser.open(f"file://{f.name}")
        return f.name


def generate_report(masker, displayed_maps: Any = 10, title: str | None = None) -> Report:
    """The report of ``masker`` (see the module docstring)."""
    title = title or type(masker).__name__
    notes: list[str] = []
    figures: list[tuple[str, str]] = []
    fitted = hasattr(masker, "maps_img_")
    n_maps = 0
    check_displayed_maps(displayed_maps)
    if not masker.reports:
        notes.append(DISABLED)
    if not fitted:
        notes.append(NOT_FITTED)
    elif getattr(masker, "_reporting_data", None) is None:
        notes += [DISABLED, DISABLED_AT_FIT]
    else:
        data = masker._reporting_data
        maps = data["maps_image"].dataobj  # sparse maps: one map made dense at a time
        n_maps = maps.shape[3]
        shown, selection_notes = select_maps(displayed_maps, n_maps)
        notes += selection_notes
        background = None
        if data["images"] is None:
            notes.append(NO_IMAGE)
        else:
            images = data["images"]
            images = images.load() if hasattr(images, "load") else images
            background = np.asarray(images.dataobj, dtype=np.float32)
        for k in shown:
            figure = _figure(np.asarray(maps[..., k]), background, masker.cmap, f"map {k}")
            figures.append((f"Map {k}", figure))
    for note in dict.fromkeys(notes):
        warnings.warn(note, UserWarning, stacklevel=find_stack_level())
    uid = uuid.uuid4().hex[:8]
    imgs = "\n".join(
        f'<img src="data:image/png;base64,{png}" alt="{label}" data-label="{label}"'
        f"{' class=' + chr(34) + 'hidden' + chr(34) if i else ''}>"
        for i, (label, png) in enumerate(figures)
    )
    description = (type(masker).__doc__ or "").strip().split("\n\n")[0]
    counts = ""
    if fitted and n_maps:
        counts = f"<p>The masker has <b>{n_maps}</b> spatial maps in total.</p>"
        if len(figures) < n_maps:
            counts += f"<p>Only <b>{len(figures)}</b> spatial maps are shown in this report.</p>"
    rows = "\n".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(describe_value(v))}</td></tr>"
        for k, v in sorted(masker.get_params(deep=False).items())
    )
    warn_html = "".join(
        f'<div class="warning">{html.escape(n)}</div>' for n in dict.fromkeys(notes)
    )
    carousel = ""
    if figures:
        carousel = (
            f'<div class="carousel" id="carousel-{uid}">{imgs}</div>'
            f'<div><button id="prev-{uid}" onclick="step(\'{uid}\',-1)">Previous Map</button>'
            f'<span id="label-{uid}">{figures[0][0]}</span>'
            f'<button id="next-{uid}" onclick="step(\'{uid}\',1)">Next Map</button></div>'
        )
    body = _template("report.html").substitute(
        title=html.escape(title),
        css=_template("report.css").template,
        js=_template("report.js").template,
        description=html.escape(description),
        carousel=carousel,
        counts=counts,
        rows=rows,
        warnings=warn_html or "<p>None</p>",
    )
    return Report(body, title)


@functools.cache
def _template(name: str) -> string.Template:
    """A template of the package's ``templates/`` folder (package data)."""
    text = resources.files("daskmasker.report").joinpath("templates", name).read_text("utf-8")
    return string.Template(text)
