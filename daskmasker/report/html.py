"""HTML report of a fitted masker, as nilearn's ``generate_report`` for ``NiftiMapsMasker``.

The report has the seed report's sections and wording (the class and its description, the
warnings, "Component": an overview of all maps and one figure per displayed map in a carousel,
with "The masker has N spatial maps in total.", then "Parameters": every constructor parameter,
images described with their shape, affine and header, paths made absolute).  The masker's
``_report_content`` records what nilearn's does (:mod:`daskmasker.report.content`) and the result is
a ``nilearn.reporting.HTMLReport``, so nilearn's report checks and notebooks take it as nilearn's.
Figures come from :mod:`daskmasker.report.figures`; building a report reads only what ``fit`` kept
(the maps, the mask and one volume), never the series.
"""

from __future__ import annotations

import base64
import functools
import html
import os
import string
import uuid
import warnings
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nilearn.reporting.html_report import HTMLReport

from daskmasker.report import content, figures, output
from daskmasker.stacklevel import find_stack_level

HEAD = string.Template(
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    "<title>$page_title</title></head>\n<body>\n$body\n"
    '<footer style="font-size:11px;color:#888">daskmasker report, $date</footer>\n'
    "</body></html>"
)
INFO = (
    "<p>This report was generated based on information provided at instantiation and fit time. "
    "Note that the masker can potentially perform resampling at transform time.</p>"
)


class Report(HTMLReport):
    """nilearn's ``HTMLReport`` (``body``, ``get_iframe``, ``resize``, ``open_in_browser``...)
    whose ``save_as_html`` also writes to fsspec URLs, through a temporary name."""

    def __init__(self, body: str, page_title: str) -> None:
        date = datetime.now().replace(microsecond=0).isoformat()
        super().__init__(
            HEAD, body, head_values={"page_title": html.escape(page_title), "date": date}
        )

    def save_as_html(
        self, file_name: str | os.PathLike, storage_options: dict | None = None
    ) -> None:
        """Write the whole page to a local path or an fsspec URL."""
        output.write_page(self.get_standalone(), file_name, storage_options)


def describe_value(value: Any) -> str:
    """A parameter as the seed report shows it: images with their shape, affine and header,
    paths absolute (a relative path means nothing once the report is moved or shared)."""
    if isinstance(value, nib.spatialimages.SpatialImage):
        affine = np.array2string(np.asarray(value.affine), separator=" ")
        return (
            f"{type(value)} data shape {tuple(value.shape)} affine: {affine} "
            f"metadata: {type(value.header)} object, {value.header!s}"
        )
    if isinstance(value, os.PathLike) or (
        isinstance(value, str) and "://" not in value and Path(value).suffix in _IMAGE_SUFFIXES
    ):
        return str(Path(value).expanduser().resolve())
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(v, str | os.PathLike) for v in value)
    ):
        return str([describe_value(v) for v in value])
    return str(value)


_IMAGE_SUFFIXES = {".nii", ".gz", ".zarr", ".txt", ".tsv", ".csv", ".img", ".hdr", ".mgz"}


def _background(masker: Any) -> tuple[nib.Nifti1Image | None, str]:
    """The anatomy the maps are drawn over, and its name: the MNI152 template when the maps are
    in MNI space, else the image given to fit (its middle volume), else the mask."""
    data = masker._reporting_data
    if figures.in_mni_space(data["maps_image"]):
        return figures.mni_template(), "MNI152 template"
    if data["images"] is not None:
        images = data["images"]
        return (images.load() if hasattr(images, "load") else images), "image given to fit"
    if data["mask"] is not None:
        return data["mask"], "mask"
    return None, "no background"


def _map_image(maps: nib.Nifti1Image, k: int) -> nib.Nifti1Image:
    return nib.Nifti1Image(np.asarray(maps.dataobj[..., k], dtype=np.float32), maps.affine)


def _figures(masker: Any, shown: list[int]) -> tuple[str, list[tuple[str, str]]]:
    """The overview and the displayed maps' figures (base64 SVG), with the maps' names."""
    maps = masker._reporting_data["maps_image"]
    background, _ = _background(masker)
    names = masker.extraction_spec().names_of(np.arange(maps.shape[3]))
    panels = [
        (
            str(names[k]),
            _base64(
                figures.map_figure(_map_image(maps, k), background, f"{k}: {names[k]}", "cold_hot")
            ),
        )
        for k in shown
    ]
    title = f"All {maps.shape[3]} maps (largest weight per voxel)"
    svg = figures.overview_figure(maps, background, title, "cold_hot").decode("utf-8")
    return svg[svg.index("<svg") :], panels


def _base64(svg: bytes) -> str:
    return base64.b64encode(svg).decode("ascii")


def _carousel(uid: str, panels: list[tuple[str, str]]) -> str:
    imgs = "\n".join(
        f'<img class="map" alt="{html.escape(name)}" data-label="{html.escape(name)}" '
        f'style="display: {"block" if i == 0 else "none"}"\n'
        f'src="data:image/svg+xml;base64,{svg}"\n/>'
        for i, (name, svg) in enumerate(panels)
    )
    return (
        '<div class="image">\n'
        '<div class="nav"><button onclick="daskmaskerStep(this, -1)">Previous Map</button>\n'
        f'<span class="map-name" id="name-UUID-{uid}">{html.escape(panels[0][0])}</span>\n'
        '<button onclick="daskmaskerStep(this, 1)">Next Map</button></div>\n'
        f"{imgs}\n</div>"
    )


def generate_report(
    masker: Any,
    displayed_maps: Any = 10,
    title: str | None = None,
    engine: str = "matplotlib",
) -> Report:
    """The report of ``masker`` (see the module docstring); its warnings are also raised.

    Parameters
    ----------
    masker : NiftiMapsMasker
        (Typed ``Any``: the report reads the estimator's private report state,
        ``_reporting_data`` and ``_report_content``, which the estimator does not type yet.)
    displayed_maps : int, 'all' or sequence of int, default=10
        The maps drawn, as nilearn's ``generate_report``.
    title : str, optional
        Default: the masker's class name.
    engine : {'matplotlib'}
        nilearn's plotting engine (the only one supported).

    Returns
    -------
    Report
    """
    if engine != "matplotlib":
        raise ValueError(f"generate_report draws with engine='matplotlib' only, got {engine!r}")
    if "_report_content" not in vars(masker):
        masker._report_content = content.initial_content()
    record = masker._report_content
    record["warning_messages"] = []
    uid = uuid.uuid4().hex
    record.update(
        unique_id=uid,
        title=title if title is not None else type(masker).__name__,
        engine=engine,
        has_plotting_engine=True,
        docstring=(type(masker).__doc__ or "").split("Parameters\n")[0].strip(),
        estimator_type="masker",
    )
    record["page_title"] = f"{record['title']} report"
    fitted = masker.__sklearn_is_fitted__()
    record["warning_messages"] += content.status_warnings(
        masker.reports, fitted, record.get("reports_at_fit_time", masker.reports)
    )
    panels: list[tuple[str, str]] = []
    overview = ""
    if masker._has_report_data():
        data = masker._reporting_data
        n_maps = data["maps_image"].shape[3]
        shown, notes = content.select_maps(displayed_maps, n_maps)
        record["warning_messages"] += notes
        record["number_of_maps"] = n_maps
        record["displayed_maps"] = shown
        if data["images"] is None:
            record["warning_messages"].append(content.no_image_warning(type(masker).__name__))
        elif data["dim"] == 5:
            record["warning_messages"].append(content.LIST_OF_4D)
        if shown and masker.reports:
            svg, panels = _figures(masker, shown)
            # inline: nilearn's tests count one <img> per displayed map
            overview = f'<div class="overview" title="All maps">\n{svg}\n</div>'
    for message in masker._report_warnings:
        warnings.warn(message, UserWarning, stacklevel=find_stack_level())
    return Report(_body(masker, record, overview, panels), record["page_title"])


def _body(masker: Any, record: dict, overview: str, panels: list[tuple[str, str]]) -> str:
    n_maps, n_shown = record["number_of_maps"], len(panels)
    counts = ""
    if n_maps:
        counts = f"<p>The masker has <b>{n_maps}</b> spatial maps in total.</p>"
        if panels and n_shown != n_maps:
            counts += f"<p>Only <b>{n_shown}</b> spatial maps are shown in this report.</p>"
    messages = masker._report_warnings
    warn_html = ""
    if messages:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in messages)
        warn_html = f'<section id="warnings"><h2>WARNING</h2><ul>{items}</ul></section>'
    rows = "\n".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(describe_value(v))}</td></tr>"
        for k, v in sorted(masker.get_params(deep=False).items())
    )
    estimator = masker._repr_html_() if masker.__sklearn_is_fitted__() else ""
    return _template("report.html").substitute(
        title=html.escape(record["title"]),
        docstring=html.escape(" ".join(record["docstring"].split())),
        css=_template("report.css").template,
        js=_template("report.js").template,
        warnings=warn_html,
        overview=overview,
        carousel=_carousel(record["unique_id"], panels) if panels else "",
        description=html.escape(record["description"]),
        counts=counts,
        estimator=estimator,
        rows=rows,
        info=INFO if panels else "",
    )


@functools.cache
def _template(name: str) -> string.Template:
    """A template of the package's ``templates/`` folder (package data)."""
    text = resources.files("daskmasker.report").joinpath("templates", name).read_text("utf-8")
    return string.Template(text)
