"""What a masker's report records and warns, as nilearn 0.14.1's maps maskers record it.

nilearn keeps a report's state in the masker's ``_report_content`` dict (its keys and values are
read by nilearn's tests and estimator checks, and by people who debug reports); these pure
functions build the same dict and the same warning texts, so a nilearn user finds
``displayed_maps``, ``title``, ``number_of_maps``, ``warning_messages``... where nilearn puts them.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

UNFITTED = (
    "\nThis estimator has not been fit yet.\nMake sure to run `fit` before inspecting reports."
)
DISABLED = "\nReport generation not enabled!\nNo visual outputs created."
DISABLED_AT_FIT = (
    "\nReport generation was disabled when fit was run. No reporting data is available.\n"
    "Make sure to set self.reports=True before fit."
)
LIST_OF_4D = (
    "A list of 4D subject images were provided to fit. Only first subject is shown in the report."
)
DESCRIPTION = "This report shows the spatial maps provided to the mask."

DEFAULTS: dict[str, Any] = {
    "unique_id": "",
    "title": "",
    "page_title": "",
    "engine": "matplotlib",
    "has_plotting_engine": False,
    "docstring": "",
    "parameters": "",
    "date": "",
    "version": "",
    "warning_messages": [],
    "description": DESCRIPTION,
    "summary": {},
    "coverage": "",
    "n_elements": 0,
    "displayed_maps": [],
    "number_of_maps": 0,
}


def initial_content() -> dict[str, Any]:
    """A fresh ``_report_content`` (nilearn's ``_REPORT_DEFAULTS`` of ``NiftiMapsMasker``)."""
    return copy.deepcopy(DEFAULTS)


def no_image_warning(class_name: str) -> str:
    """The warning of a report whose masker was fit without an image."""
    return f"No image provided to fit in {class_name}. Plotting only spatial maps for reporting."


def check_displayed_maps(displayed_maps: Any) -> None:
    """nilearn's type check of ``displayed_maps``: 'all', an int, or a list/array of ints.

    As nilearn's: list items must be Python ints, arrays must have the default int dtype.
    """
    incorrect_type = not isinstance(displayed_maps, list | np.ndarray | int | str)
    incorrect_string = isinstance(displayed_maps, str) and displayed_maps != "all"
    not_integer = (
        isinstance(displayed_maps, np.ndarray) and np.asarray(displayed_maps).dtype != int
    ) or (isinstance(displayed_maps, list) and not all(isinstance(i, int) for i in displayed_maps))
    if incorrect_type or incorrect_string or not_integer:
        kind = displayed_maps.__class__.__name__
        if isinstance(displayed_maps, np.ndarray | list):
            kind = f"{kind} of { {i.__class__.__name__ for i in displayed_maps} }"
        raise TypeError(
            "Parameter 'displayed_maps' of ``generate_report()`` should be either 'all' or a "
            f"positive 'int', or a list/array of ints. You provided a {kind}."
        )


def select_maps(displayed_maps: Any, n_maps: int) -> tuple[list[int], list[str]]:
    """The maps to show, in the order asked, and the report's warnings (nilearn's rules).

    An int above the number of maps is lowered to it; indices of maps that do not exist are
    dropped; both with nilearn's warning.

    >>> select_maps("all", 3)
    ([0, 1, 2], [])
    >>> select_maps([2, 7, 0], 3)[0]
    [2, 0]
    """
    check_displayed_maps(displayed_maps)
    notes: list[str] = []
    if isinstance(displayed_maps, str):
        displayed_maps = n_maps
    if isinstance(displayed_maps, int):
        if n_maps < displayed_maps:
            notes.append(
                f"`generate_report()` received 'displayed_maps={displayed_maps}' to be "
                f"displayed. But masker only has {n_maps} map(s). 'displayed_maps' was set to "
                f"{n_maps}."
            )
            displayed_maps = n_maps
        displayed_maps = list(range(displayed_maps))
    if isinstance(displayed_maps, np.ndarray):
        displayed_maps = displayed_maps.tolist()
    available = range(n_maps)
    missing = [x for x in displayed_maps if x not in available]
    shown = [x for x in displayed_maps if x in available]
    if missing:
        notes.append(
            f"`generate_report()` received 'displayed_maps={shown}' to be displayed. Report "
            f"cannot display the following map {missing} because masker only has {n_maps} "
            "map(s)."
        )
    return shown, notes


def status_warnings(reports: bool, fitted: bool, reports_at_fit_time: bool) -> list[str]:
    """nilearn's warnings on the masker's state: reports off, not fitted, off at fit time."""
    notes = []
    if reports is False:
        notes.append(DISABLED)
    if not fitted:
        notes.append(UNFITTED)
    if fitted and not reports_at_fit_time:
        notes.append(DISABLED_AT_FIT)
    return notes
