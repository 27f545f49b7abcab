"""Warnings that point at the caller's code, not at daskmasker's.

:func:`find_stack_level` counts the frames from its caller up to the first frame outside the
daskmasker package (pandas' ``find_stack_level``, nilearn's ``_utils.logger.find_stack_level``), so
a warning raised deep in the package is reported at the line of user code that called into it,
however many daskmasker frames lie between.  :func:`warn` is ``warnings.warn`` with that level.

:class:`reemitted_warnings` (and the method decorator :func:`reemits_warnings`) do the same for
warnings that Dask tasks emit in the scheduler's threads, whose stacks hold no user frame: they
record them while a computation runs and emit them again, in order, from the calling thread.

Examples
--------
>>> import warnings
>>> with warnings.catch_warnings(record=True) as records:
...     warnings.simplefilter("always")
...     warn("a message")
>>> records[0].filename.startswith("<doctest")  # the caller's code, not this module
True
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def find_stack_level() -> int:
    """The ``stacklevel`` for ``warnings.warn`` that names the first frame outside daskmasker.

    Returns
    -------
    int
        1 + the number of daskmasker frames between the caller of ``warnings.warn`` and user code.
    """
    frame = inspect.currentframe()
    level = 0
    try:
        while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            frame = frame.f_back
            level += 1
    finally:
        del frame
    return max(level, 1)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` reported at the first frame outside daskmasker."""
    warnings.warn(message, category, stacklevel=find_stack_level())


class reemitted_warnings:
    """Record the warnings emitted in the block (tasks' threads included) and emit them again
    on exit, at the caller's stack level and through the caller's warning filters.

    Used around a Dask computation: tasks run in the scheduler's threads, where no frame is the
    user's, so their warnings would otherwise name a file of Dask or of the standard library.
    (A class, not ``contextlib.contextmanager``: contextlib's frame would end the stack walk.)
    """

    def __enter__(self) -> None:
        self._catcher = warnings.catch_warnings(record=True)
        self._records = self._catcher.__enter__()
        warnings.simplefilter("always")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._catcher.__exit__(exc_type, exc, traceback)
        for record in self._records:
            warnings.warn(record.message, record.category, stacklevel=find_stack_level())


def reemits_warnings(method: Callable[P, R]) -> Callable[P, R]:
    """Decorate a method so that it runs in :class:`reemitted_warnings`: every warning it causes,
    in this thread or in Dask's, names the line of user code that called it."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with reemitted_warnings():
            return method(*args, **kwargs)

    return wrapper
