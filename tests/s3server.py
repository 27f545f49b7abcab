"""A real S3-compatible server on 127.0.0.1 for the tests: moto in standalone server mode.

s3fs talks HTTP to it exactly as it would to AWS (moto's in-process mock cannot intercept s3fs's
asynchronous client, so the server mode is the one that tests the real code path).
"""

from __future__ import annotations

import socket
from contextlib import contextmanager

CREDENTIALS = {"key": "testing", "secret": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server():
    """Start moto's S3 server on a free port of 127.0.0.1; yield its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def storage_options(endpoint: str, **extra) -> dict:
    """s3fs options for the local server (credentials as a lab would pass them)."""
    return {**CREDENTIALS, "endpoint_url": endpoint, **extra}


def use_aws_environment(monkeypatch, endpoint: str) -> None:
    """Credentials and endpoint from the usual AWS environment variables, as a user sets them.

    fsspec caches a filesystem per storage options, not per environment: one made by another
    module's tests (its own server, stopped since) would be reused, so the cache is cleared.
    """
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["secret"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3fs.S3FileSystem.clear_instance_cache()
