"""Connectivity of a study's runs as labelled, lazy xarray: :func:`connectivity` and
:func:`connectivity_measure` (nilearn's ``ConnectivityMeasure``, on the Dataset that
:func:`daskmasker.open_timeseries` returns).

The Dataset's ``signals`` are (run, time, region), each run's ``n_frames`` kept frames first and
NaN after them; the run axis carries the runs' coordinates (BIDS entities, ``t_r``, ...), which
the results keep, so ``ds.groupby("task")``, ``sel`` and ``where`` select runs before or after.
The numbers are :mod:`daskmasker.compute.connectivity`'s (nilearn's, to ~1e-14); the graph is
:mod:`daskmasker.compute.connectivity_graph`'s (one task per chunk of runs; tangent's geometric
mean a reduction over all runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from daskmasker.compute import connectivity as conn
from daskmasker.compute.connectivity_graph import lazy_connectivity

if TYPE_CHECKING:
    import dask.array as da

SECOND = "region_"  # the matrices' second region axis (xarray needs two names)


class _FittedEstimator:
    """A scikit-learn covariance estimator as a function: a fresh clone fitted per run
    (nilearn clones ``cov_estimator`` once and refits it on each subject)."""

    def __init__(self, estimator: Any) -> None:
        from sklearn.base import clone

        self.estimator = clone(estimator)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from sklearn.base import clone

        return clone(self.estimator).fit(x).covariance_

    def __repr__(self) -> str:
        return repr(self.estimator)


def covariance_function(cov_estimator: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The per-run covariance of ``cov_estimator``: None or ``"ledoit_wolf"`` (nilearn's default,
    ``LedoitWolf(store_precision=False)``, in numpy), ``"empirical"`` (maximum likelihood), or
    any estimator with ``fit`` and ``covariance_`` (scikit-learn's ``sklearn.covariance``)."""
    if cov_estimator is None:
        return conn.ledoit_wolf
    if isinstance(cov_estimator, str):
        if cov_estimator not in conn.ESTIMATOR_FUNCTIONS:
            raise ValueError(
                f"cov_estimator must be one of {list(conn.ESTIMATORS)} or an estimator with "
                f"fit() and covariance_ (sklearn.covariance), got {cov_estimator!r}"
            )
        return conn.ESTIMATOR_FUNCTIONS[cov_estimator]
    if not hasattr(cov_estimator, "fit"):
        raise ValueError(
            "'cov_estimator' must be an estimator with '.fit()' and '.covariance_' (e.g., from "
            f"`sklearn.covariance`), 'ledoit_wolf' or 'empirical'. Got: "
            f"`{type(cov_estimator).__name__}`."
        )
    return _FittedEstimator(cov_estimator)


def _signals(ds: xr.Dataset | xr.DataArray) -> xr.DataArray:
    signals = ds["signals"] if isinstance(ds, xr.Dataset) else ds
    if not isinstance(signals, xr.DataArray) or set(signals.dims) != {"run", "time", "region"}:
        raise ValueError(
            "connectivity needs the signals of runs with dims (run, time, region), as "
            f"daskmasker.open_timeseries(store) returns; got dims {getattr(signals, 'dims', ())}"
        )
    if "n_frames" not in signals.coords:
        raise ValueError(
            "the signals have no 'n_frames' coordinate on their run axis (each run's kept "
            "frames, the rest being padding): open them with daskmasker.open_timeseries(store)"
        )
    return signals.transpose("run", "time", "region")


def connectivity_measure(
    ds: xr.Dataset | xr.DataArray,
    kind: str = "correlation",
    *,
    vectorize: bool = False,
    discard_diagonal: bool = False,
    cov_estimator: Any = None,
) -> xr.Dataset:
    """nilearn's ``ConnectivityMeasure(kind=...).fit_transform`` of every run, lazily, with its
    fitted ``mean_`` and ``whitening_``.

    Parameters
    ----------
    ds : xarray.Dataset or DataArray
        :func:`daskmasker.open_timeseries`'s Dataset (or its ``signals``), or a selection of it.
    kind, vectorize, discard_diagonal, cov_estimator
        As :func:`connectivity`.

    Returns
    -------
    xarray.Dataset
        ``connectivity`` (as :func:`connectivity` returns it), ``mean`` (region, region_):
        nilearn's ``mean_`` (tangent: the geometric mean of the covariances; other kinds: the
        mean matrix, made symmetric) and, for tangent, ``whitening`` (nilearn's
        ``whitening_``).  All three share one graph: compute them together.
    """
    conn.check_kind(kind)
    signals = _signals(ds)
    estimator = covariance_function(cov_estimator)
    names = signals["run"].values if "run" in signals.coords else np.arange(signals.sizes["run"])
    lazy = lazy_connectivity(
        signals.data if _is_dask(signals) else _as_dask(signals),
        signals["n_frames"].values,
        names,
        kind,
        estimator,
        vectorize,
        discard_diagonal,
    )
    region = _region_coords(signals)
    run_coords = {k: v for k, v in signals.coords.items() if set(v.dims) <= {"run"}}
    attrs = {
        "kind": kind,
        "cov_estimator": "LedoitWolf(store_precision=False)"
        if cov_estimator is None
        else repr(estimator),
        "vectorize": int(vectorize),
        "discard_diagonal": int(discard_diagonal),
    }
    units = str(signals.attrs.get("units", "arbitrary"))
    if vectorize:
        rows, cols = conn.lower_pairs(signals.sizes["region"], discard_diagonal)
        feature = {
            f"{name}_{end}": ("feature", np.asarray(values)[index], _of(labels, side))
            for index, end, side in ((rows, "i", "row"), (cols, "j", "column"))
            for name, (_, values, labels) in region.items()
        }
        feature["feature"] = ("feature", np.arange(rows.size), _FEATURE)
        matrices = xr.DataArray(
            lazy.matrices, dims=("run", "feature"), coords={**run_coords, **feature}
        )
    else:
        matrices = xr.DataArray(
            lazy.matrices,
            dims=("run", "region", SECOND),
            coords={**run_coords, **region, **_second(region)},
        )
    square = {**region, **_second(region)}
    out = {
        "connectivity": matrices.assign_attrs(_matrix_labels(kind, units), **attrs),
        "mean": xr.DataArray(
            lazy.mean, dims=("region", SECOND), coords=square, attrs=_mean_labels(kind, units)
        ),
    }
    if lazy.whitening is not None:
        whitening = _cf(
            "whitening matrix",
            _power(units, "-1"),
            "inverse square root of the geometric mean of the runs' covariances (nilearn's "
            "whitening_): the tangent embedding's whitening",
        )
        out["whitening"] = xr.DataArray(
            lazy.whitening, dims=("region", SECOND), coords=square, attrs=whitening
        )
    return xr.Dataset(out, attrs=attrs)


_FEATURE = {
    "long_name": "feature index",
    "units": "1",
    "description": "position in the vectorized lower triangle (nilearn's sym_matrix_to_vec "
    "order); region_i and region_j name its row and column",
}

_MATRICES = {  # kind: long name, what each run's matrix is (the estimator is cov_estimator)
    "correlation": ("correlation", "Pearson correlation of the run's region time series"),
    "partial correlation": (
        "partial correlation",
        "partial correlation of the run's region time series, from the inverse of their covariance",
    ),
    "covariance": ("covariance", "covariance of the run's region time series"),
    "precision": ("precision", "inverse of the covariance of the run's region time series"),
    "tangent": (
        "tangent-space connectivity",
        "matrix logarithm of the run's covariance whitened by the geometric mean of the runs' "
        "covariances (the tangent space at that mean)",
    ),
}


def _cf(long_name: str, units: str, description: str) -> dict[str, str]:
    return {"long_name": long_name, "units": units, "description": description}


def _power(units: str, power: str) -> str:
    """The units of the signals' ``units`` to ``power`` (CF: "1" stays "1")."""
    return units if units in ("1", "arbitrary") else f"({units}){power}"


def _matrix_units(kind: str, units: str) -> str:
    return {"covariance": _power(units, "2"), "precision": _power(units, "-2")}.get(kind, "1")


def _matrix_labels(kind: str, units: str) -> dict[str, str]:
    """CF-style labels of each run's matrix of ``kind`` (``units``: the signals')."""
    long_name, what = _MATRICES[kind]
    return _cf(
        long_name,
        _matrix_units(kind, units),
        f"{what}, kept frames only, as nilearn's ConnectivityMeasure(kind={kind!r}); the "
        "covariance estimator is in cov_estimator",
    )


def _mean_labels(kind: str, units: str) -> dict[str, str]:
    """CF-style labels of nilearn's ``mean_`` of ``kind``."""
    if kind == "tangent":
        return _cf(
            "geometric mean covariance",
            _power(units, "2"),
            "geometric mean of the runs' covariances (nilearn's mean_ for kind='tangent')",
        )
    long_name, _ = _MATRICES[kind]
    return _cf(
        f"mean {long_name}",
        _matrix_units(kind, units),
        f"mean of the runs' {long_name} matrices, made symmetric (nilearn's mean_)",
    )


def _of(labels: dict, where: str) -> dict[str, str]:
    """A region coordinate's labels (``region``'s by default) for the matrices' row or column."""
    labels = {**_REGION, **labels}
    return {
        **labels,
        "long_name": f"{labels['long_name']} of the {where}",
        "description": f"{labels['description']} (of each entry's {where})",
    }


def connectivity(
    ds: xr.Dataset | xr.DataArray,
    kind: str = "correlation",
    *,
    vectorize: bool = False,
    discard_diagonal: bool = False,
    cov_estimator: Any = None,
) -> xr.DataArray:
    """Each run's connectivity matrix, as nilearn's ``ConnectivityMeasure`` computes it, lazily.

    Parameters
    ----------
    ds : xarray.Dataset or DataArray
        :func:`daskmasker.open_timeseries`'s Dataset (or its ``signals``), or a selection of it
        (``ds.sel(run=...)``, ``ds.where(ds.task == "rest", drop=True)``...): signals (run, time,
        region) with each run's kept frames counted by its ``n_frames`` coordinate.
    kind : {"correlation", "partial correlation", "tangent", "covariance", "precision"}
        nilearn's kinds (nilearn's default is "covariance").  "tangent" whitens each run's
        covariance by the geometric mean of all the runs given.
    vectorize : bool, default=False
        The lower triangles (diagonal divided by √2), nilearn's ``sym_matrix_to_vec``.
    discard_diagonal : bool, default=False
        With ``vectorize``, leave the diagonal out.
    cov_estimator : None, "ledoit_wolf", "empirical" or estimator, optional
        nilearn's: default ``LedoitWolf(store_precision=False)`` (here in numpy, the same
        numbers); any scikit-learn covariance estimator is fitted per run.

    Returns
    -------
    xarray.DataArray
        Lazy, float64, dims (run, region, region_) or (run, feature) with ``vectorize``; the run
        axis keeps the input's run coordinates; ``region_name`` (and ``region_name_``) label the
        regions; vectorized, each feature's row and column regions are ``region_i``,
        ``region_j``, ``region_name_i`` and ``region_name_j``.

    Notes
    -----
    On a study store (its runs selected by their BIDS entities first)::

        ds = daskmasker.open_timeseries("study.zarr")
        rest = ds.where(ds.task == "rest", drop=True)
        daskmasker.connectivity(rest, kind="tangent").mean("run").compute()
    """
    return connectivity_measure(
        ds,
        kind,
        vectorize=vectorize,
        discard_diagonal=discard_diagonal,
        cov_estimator=cov_estimator,
    )["connectivity"]


def _is_dask(signals: xr.DataArray) -> bool:
    return hasattr(signals.data, "dask")


def _as_dask(signals: xr.DataArray) -> da.Array:
    import dask.array as da

    return da.from_array(np.asarray(signals.data), chunks=(1, -1, -1))


_REGION = {"long_name": "map index", "units": "1", "description": "index of the map"}


def _region_coords(signals: xr.DataArray) -> dict:
    """The region axis's coordinates (its index, ``region_name``...) as (dims, values, attrs)."""
    out = {}
    for name, coord in signals.coords.items():
        if coord.dims == ("region",):
            out[name] = ("region", np.asarray(coord.values), dict(coord.attrs))
    if "region" not in out:
        out["region"] = ("region", np.arange(signals.sizes["region"]), _REGION)
    return out


def _second(region: dict) -> dict:
    """The same coordinates on the second region axis, their names ending in ``_``."""
    renamed = {"region": SECOND}
    return {
        renamed.get(k, f"{k}_"): (SECOND, values, _of(attrs, "column"))
        for k, (_, values, attrs) in region.items()
    }
