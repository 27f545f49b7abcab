"""The study report of a batch store: its runs, what was kept, coverage and a carpet of signals.

A pure function of what the store's public reader gives (:func:`daskmasker.open_timeseries`: the
signals of the complete runs as an xarray Dataset, dims run, time, region) and of a status table
(one row per run: its status and, when known, its volume count and the error that stopped it), so
it does not depend on the store's layout.  It shows:

* the runs and their status, with the frames kept by the sample mask (``kept of volumes``);
* the runs refused or failed, with their messages;
* each map's coverage, when the Dataset holds a ``coverage`` variable (dims region, or run and
  region); otherwise it says the store does not record it;
* a carpet plot of the signals: every region (rows) over the frames of the runs one after the
  other (columns), z-scored per run and region; at most :data:`CARPET_RUNS` runs.

Figures are matplotlib PNGs embedded in the page, so the page is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CARPET_RUNS = 50  # runs drawn in the carpet plot (the first, in run order)
OK_STATUSES = ("complete",)
STATUS_COLUMNS = ("run", "status")


def kept_frames(signals: xr.DataArray) -> pd.Series:
    """Frames each run kept: time points whose signals are not all NaN (the reader pads runs
    shorter than the longest with NaN).

    >>> da = xr.DataArray(np.ones((2, 3, 1)), dims=("run", "time", "region"),
    ...                   coords={"run": ["a", "b"]})
    >>> da[1, 2] = np.nan
    >>> kept_frames(da).tolist()
    [3, 2]
    """
    counts = signals.notnull().any("region").sum("time")
    return pd.Series(np.asarray(counts), index=[str(r) for r in signals["run"].values])


def _png(figure: Figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, facecolor="white", bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def carpet(signals: xr.DataArray, names: list[str]) -> tuple[str, int]:
    """The carpet plot (base64 PNG) of the first :data:`CARPET_RUNS` runs, and how many."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    runs = list(signals["run"].values[:CARPET_RUNS])
    blocks, edges = [], [0]
    for run in runs:
        values = np.asarray(signals.sel(run=run).transpose("time", "region").values, float)
        values = values[~np.isnan(values).all(axis=1)]
        if values.size:
            with np.errstate(invalid="ignore", divide="ignore"):
                z = (values - values.mean(0)) / values.std(0)
            blocks.append(np.nan_to_num(z).T)
        edges.append(edges[-1] + values.shape[0])
    data = np.hstack(blocks) if blocks else np.zeros((len(names), 1))
    height = min(8.0, 1.5 + 0.12 * len(names))
    figure, ax = plt.subplots(figsize=(11, height))
    image = ax.imshow(data, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-3, vmax=3)
    for edge in edges[1:-1]:
        ax.axvline(edge - 0.5, color="black", linewidth=0.8)
    ax.set_xlabel("frames kept, run after run (black lines separate runs)")
    ax.set_ylabel("region")
    if len(names) <= 40:
        ax.set_yticks(range(len(names)), names, fontsize=7)
    figure.colorbar(image, ax=ax, label="z-score (per run and region)", fraction=0.03)
    ax.set_title("Carpet plot of the region signals")
    return _png(figure), len(runs)


def coverage_figure(coverage: xr.DataArray, names: list[str]) -> str:
    """Each map's coverage as bars (mean over runs when recorded per run), base64 PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    per_map = coverage.mean("run") if "run" in coverage.dims else coverage
    values = np.asarray(per_map.values, dtype=float)
    figure, ax = plt.subplots(figsize=(11, 3))
    ax.bar(range(values.size), values, color="#3b75af")
    ax.set_xlabel("map")
    ax.set_ylabel(str(coverage.attrs.get("units", "coverage")))
    if len(names) <= 40:
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_title("Coverage of each map")
    return _png(figure)


def _table(frame: pd.DataFrame, klass: str) -> str:
    return frame.to_html(index=False, classes=klass, border=0, na_rep="", escape=True)


def study_report(dataset: xr.Dataset | None, status: pd.DataFrame, title: str) -> str:
    """The study report's HTML page.

    Parameters
    ----------
    dataset : xarray.Dataset or None
        ``open_timeseries(store)``: ``signals`` (run, time, region) with ``region_name``; an
        optional ``coverage`` (region or run, region).  None when no run is complete.
    status : pandas.DataFrame
        One row per run: ``run``, ``status`` ('complete', 'incomplete', 'failed', 'refused'...),
        optionally ``volumes`` (volumes of the image), ``source`` and ``message``.
    title : str
        The page's title (the store's name).

    Returns
    -------
    str
        A self-contained HTML page.
    """
    missing = [c for c in STATUS_COLUMNS if c not in status.columns]
    if missing:
        raise ValueError(f"the status table has no column {missing}: it has {list(status.columns)}")
    runs = status.copy()
    runs["run"] = runs["run"].astype(str)
    names: list[str] = []
    figures = []
    if dataset is not None:
        signals = dataset["signals"]
        names = [str(n) for n in np.asarray(signals["region_name"].values)]
        kept = kept_frames(signals)
        runs["kept frames"] = [
            _kept(kept.get(r), v)
            for r, v in zip(runs["run"], runs.get("volumes", [None] * len(runs)), strict=True)
        ]
        png, n_drawn = carpet(signals, names)
        note = "" if n_drawn == signals.sizes["run"] else f" (the first {n_drawn} runs)"
        figures.append(
            f'<section id="carpet"><h2>Signals{note}</h2>'
            f'<img class="carpet" alt="carpet plot" src="data:image/png;base64,{png}"/></section>'
        )
        if "coverage" in dataset:
            png = coverage_figure(dataset["coverage"], names)
            figures.append(
                '<section id="coverage"><h2>Map coverage</h2>'
                f'<img class="coverage" alt="map coverage" src="data:image/png;base64,{png}"/>'
                "</section>"
            )
        else:
            figures.append(
                '<section id="coverage"><h2>Map coverage</h2>'
                "<p>This store does not record the maps' coverage.</p></section>"
            )
    bad = runs[~runs["status"].isin((*OK_STATUSES, "incomplete"))]
    counts = runs["status"].value_counts()
    summary = ", ".join(f"<b>{n}</b> {html.escape(str(s))}" for s, n in counts.items())
    shown = [c for c in ("run", "status", "kept frames", "source") if c in runs.columns]
    failed_html = "<p>None.</p>"
    if len(bad):
        cols = [c for c in ("run", "status", "message", "source") if c in bad.columns]
        failed_html = _table(bad[cols], "failed")
    n_regions = len(names) if names else "no"
    return _PAGE.format(
        title=html.escape(title),
        date=datetime.now().replace(microsecond=0).isoformat(),
        n_runs=len(runs),
        summary=summary or "no run",
        n_regions=n_regions,
        runs=_table(runs[shown], "runs"),
        failed=failed_html,
        figures="\n".join(figures),
    )


def _kept(kept: float | None, volumes: float | None) -> str:
    if kept is None or pd.isna(kept):
        return ""
    if volumes is None or pd.isna(volumes):
        return str(int(kept))
    return f"{int(kept)} of {int(volumes)}"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} study report</title>
<style>
body{{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222}}
table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}
table.failed td{{background:#fde8e8}} img{{max-width:100%;border:1px solid #ccc}}
</style></head><body>
<h1>{title}</h1>
<p>Study report of a daskmasker batch store: <b>{n_runs}</b> runs ({summary}), {n_regions} regions.
Generated {date}.</p>
<section id="runs"><h2>Runs</h2>{runs}</section>
<section id="failed"><h2>Refused or failed runs</h2>{failed}</section>
{figures}
</body></html>
"""
