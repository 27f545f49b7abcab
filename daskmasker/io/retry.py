"""Retrying transient storage failures (dropped connections, timeouts, throttling, 5xx).

Transient: connection errors and resets, timeouts, a response cut short (fewer body bytes than
announced), and HTTP 408, 425, 429, 500, 502, 503 and 504 (also when fsspec wraps them in
another error).  Permanent, never retried: missing or forbidden paths (404, 403), and anything
else, such as corrupt data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_TRANSIENT_NAMES = frozenset(
    {
        "EndpointConnectionError",
        "ClientConnectorError",
        "ReadTimeoutError",
        "ServerDisconnectedError",
        "ClientOSError",
        "ClientPayloadError",
    }
)
sleep = time.sleep  # the wait between attempts (a test may record the delays)


class RetriesExhausted(OSError):
    """Every attempt failed with a transient error (not itself retried again)."""


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed response behind ``exc`` (or its causes), if any."""
    for err in _chain(exc):
        status = getattr(err, "status", None)
        if isinstance(status, int) and status >= 400:
            return status
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth another try (see the module's docstring)."""
    if isinstance(exc, RetriesExhausted):
        return False
    status = http_status(exc)
    if status is not None:
        return status in TRANSIENT_STATUS
    if isinstance(exc, PERMANENT):
        return False
    names = {cls.__name__ for cls in type(exc).__mro__}
    return (
        isinstance(exc, ConnectionError | TimeoutError)
        or bool(names & _TRANSIENT_NAMES)
        or (isinstance(exc, OSError) and exc.errno is None and "connect" in str(exc).lower())
    )


def retry(
    fn: Callable[[], T], what: str, attempts: int | None = None, backoff: float | None = None
) -> T:
    """Call ``fn``; on a transient error wait (``backoff``, doubling) and try again.

    ``attempts`` and ``backoff`` default to ``daskmasker.retry.attempts`` and
    ``daskmasker.retry.backoff`` (4 attempts; 0.25 s, 0.5 s, 1 s between them).

    Raises
    ------
    RetriesExhausted
        An ``OSError`` naming ``what`` and the number of attempts, when every attempt failed.
    """
    # imported when used: daskmasker.config brings Dask, which `daskmasker info` does not need
    from daskmasker import config

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
                reason = f"{type(exc).__name__}: {exc}"
                raise RetriesExhausted(
                    f"'{what}': still failing after {attempts} attempts: {reason}"
                ) from exc
            sleep(backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # pragma: no cover
