"""nilearn's denoising strategies for fMRIPrep confounds, with exactly nilearn's meaning.

The confounds and sample mask of each run come from nilearn's own
``nilearn.interfaces.fmriprep.load_confounds_strategy`` (presets ``simple``, ``scrubbing``,
``compcor``, ``ica_aroma``) and ``load_confounds`` (any strategy tuple), called on the run's
BOLD file: the columns, the n/a filling, the demeaning, scrubbing's ``sample_mask`` (motion
outliers, short segments, non-steady-state volumes) are nilearn's, not a copy of them.  nilearn
is the ``daskmasker[fmriprep]`` extra: a missing install is an error naming the pip command.

:func:`resolve` gives the parameters a preset runs with (nilearn's preset table merged with
the user's values, those a preset does not take refused), recorded in each run's attributes,
fingerprint and JSON sidecar; :func:`denoise_run` loads one run's confounds and sample mask and
the record of what was removed.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

STRATEGIES = ("simple", "scrubbing", "compcor", "ica_aroma")
PARAMETERS = (
    "motion",
    "wm_csf",
    "global_signal",
    "scrub",
    "fd_threshold",
    "std_dvars_threshold",
    "compcor",
    "n_compcor",
    "ica_aroma",
    "demean",
)
INSTALL_HINT = "pip install 'daskmasker[fmriprep]' (or: pip install nilearn)"


def _nilearn_fmriprep() -> tuple[ModuleType, dict[str, dict[str, Any]]]:
    try:
        import importlib

        from nilearn.interfaces import fmriprep

        presets = importlib.import_module("nilearn.interfaces.fmriprep.load_confounds_strategy")
    except ImportError as exc:
        raise ImportError(
            f"denoising fMRIPrep confounds calls nilearn's load_confounds_strategy, and nilearn "
            f"is not installed: {INSTALL_HINT}"
        ) from exc
    return fmriprep, presets.preset_strategies


def resolve(strategy: str, **given: Any) -> dict[str, Any]:
    """The full parameters of a denoising strategy, as nilearn runs it.

    Parameters
    ----------
    strategy : {'simple', 'scrubbing', 'compcor', 'ica_aroma'}
    **given
        The user's values (None: the preset's); ``global_signal`` adds the global signal
        regressors to any preset but ``compcor``, as in nilearn.

    Returns
    -------
    dict
        ``{"strategy": name, "load_confounds": {...}}``: the ``load_confounds`` parameters the
        preset resolves to (its ``strategy`` tuple as a list).

    Raises
    ------
    ValueError
        An unknown strategy, or a parameter the preset does not take (nilearn only warns and
        ignores it; a command line should not).
    """
    _, presets = _nilearn_fmriprep()
    if strategy not in STRATEGIES:
        raise ValueError(f"denoise strategy must be one of {STRATEGIES}, got {strategy!r}")
    preset = dict(presets[strategy])
    takes = [k for k in preset if k not in ("strategy", "ica_aroma")]
    if strategy != "compcor":
        takes.append("global_signal")
    given = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(given) - set(takes))
    if unknown:
        raise ValueError(
            f"denoise strategy {strategy!r} does not take {', '.join(unknown)} "
            f"(it takes: {', '.join(sorted(set(takes)))})"
        )
    params = {**preset, **given}
    params["strategy"] = list(preset["strategy"])
    if isinstance(params.get("global_signal"), str):
        params["strategy"].append("global_signal")
    else:
        params.pop("global_signal", None)
    return {"strategy": strategy, "load_confounds": params}


def denoise_run(
    bold: str, strategy: str, given: dict[str, Any]
) -> tuple[pd.DataFrame, np.ndarray | None, dict[str, Any]]:
    """One run's confounds and sample mask by nilearn's ``load_confounds_strategy``.

    Parameters
    ----------
    bold : str
        The run's BOLD file in an fMRIPrep tree (its confounds TSV/JSON beside it).
    strategy : str
        A preset name.
    given : dict
        The user's parameters (None values: the preset's).

    Returns
    -------
    (DataFrame, ndarray or None, dict)
        The confounds (``attrs["source"]``: the confounds file), the sample mask (None: all
        volumes), and the record of the run's denoising: strategy, parameters, the confound
        columns, the volumes removed by scrubbing and as non-steady-state, the mean framewise
        displacement.
    """
    fmriprep, _ = _nilearn_fmriprep()
    from nilearn.interfaces.fmriprep.load_confounds_utils import get_confounds_file

    record = resolve(strategy, **given)
    given = {k: v for k, v in given.items() if v is not None}
    confounds, sample_mask = fmriprep.load_confounds_strategy(bold, strategy, **given)
    full_aroma = strategy == "ica_aroma"
    source = get_confounds_file(bold, flag_full_aroma=full_aroma, flag_tedana=False)
    raw = pd.read_csv(source, sep="\t", na_values=["n/a"])
    n = len(raw)
    steady = [c for c in raw.columns if c.startswith("non_steady_state_outlier")]
    n_steady = int(raw[steady].to_numpy().any(axis=1).sum()) if steady else 0
    kept = n if sample_mask is None else len(sample_mask)
    fd = raw["framewise_displacement"] if "framewise_displacement" in raw else None
    record.update(
        {
            "ConfoundRegressors": [str(c) for c in confounds.columns],
            "NumberOfVolumes": n,
            "NumberOfVolumesKept": kept,
            "NumberOfVolumesDiscardedByNonsteadyStatesDetector": n_steady,
            "NumberOfVolumesDiscardedByMotionScrubbing": n - kept - n_steady,
            "MeanFramewiseDisplacement": None if fd is None else float(fd.mean(skipna=True)),
        }
    )
    confounds = confounds.astype("float64")
    confounds.attrs["source"] = str(source)
    return confounds, None if sample_mask is None else np.asarray(sample_mask), record
