"""Retrying transient storage failures (dropped connections, timeouts, throttling)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from daskmasker import config

T = TypeVar("T")
PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_transient(exc: BaseException) -> bool:
    """Connection and I/O errors are worth another try; missing or forbidden paths are not."""
    if isinstance(exc, PERMANENT):
        return False
    names = {cls.__name__ for cls in type(exc).__mro__}
    return (
        isinstance(exc, ConnectionError | TimeoutError)
        or bool(
            names
            & {
                "EndpointConnectionError",
                "ClientConnectorError",
                "ReadTimeoutError",
                "ServerDisconnectedError",
                "ClientOSError",
            }
        )
        or (isinstance(exc, OSError) and exc.errno is None and "connect" in str(exc).lower())
    )


def retry(
    fn: Callable[[], T], what: str, attempts: int | None = None, backoff: float | None = None
) -> T:
    """Call ``fn``; on a transient error wait (``backoff``, doubling) and try again.

    Raises
    ------
    OSError
        Naming ``what`` and the number of attempts, when every attempt failed.
    """
    if attempts is None:
        attempts = int(config.get("retry.attempts"))
    if backoff is None:
        backoff = float(config.get("retry.backoff"))
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise OSError(f"'{what}': still failing after {attempts} attempts: {exc}") from exc
            time.sleep(backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # pragma: no cover
