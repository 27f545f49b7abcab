"""A real HTTP file server on 127.0.0.1 that logs every request and fails the ones it is told to.

It serves a directory with single ``Range`` requests (206), as object stores and web servers do,
so fsspec's HTTP file system reads from it exactly as from a remote host.  Every request is
logged (time, method, path, byte range, status, bytes sent); :meth:`FileServer.fail` makes
chosen requests to a path fail the way networks and servers do:

* ``"503"``, ``"404"``, ``"403"``: that status, no body;
* ``"reset"``: the connection is dropped (TCP RST) before any answer;
* ``"truncate"``: the headers promise the whole range, half the body is sent, then the
  connection is closed;
* ``"stall"``: no answer for ``stall`` seconds (longer than the client's timeout), then the
  connection is closed.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    """One logged request: ``start``/``end`` the byte range asked for (end exclusive)."""

    time: float
    method: str
    path: str
    start: int
    end: int
    status: int
    sent: int = 0


@dataclass
class Fault:
    path: str
    kind: str
    nth: set[int] | None  # 1-based numbers of the requests to ``path`` that fail (None: all)
    method: str = "GET"
    seen: int = 0
    hits: list[int] = field(default_factory=list)


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.log: list[Request] = []
        self.faults: list[Fault] = []
        self.stall = 3.0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fail(self, path: str, kind: str, nth=None, method: str = "GET") -> Fault:
        """Make the ``nth`` (int or iterable, 1-based; None: every) ``method`` request to
        ``path`` fail as ``kind``."""
        nth = {nth} if isinstance(nth, int) else (None if nth is None else set(nth))
        fault = Fault(path.lstrip("/"), kind, nth, method)
        self.faults.append(fault)
        return fault

    def reset(self) -> None:
        """Forget the log and the faults."""
        with self.lock:
            self.log.clear()
            self.faults.clear()

    def requests(self, path: str, method: str | None = None) -> list[Request]:
        """The logged requests to ``path`` (optionally of one method), in order."""
        path = path.lstrip("/")
        return [r for r in self.log if r.path == path and method in (None, r.method)]

    def _fault(self, method: str, path: str) -> Fault | None:
        chosen = None
        with self.lock:
            for fault in self.faults:
                if fault.path == path and fault.method == method:
                    fault.seen += 1
                    if chosen is None and (fault.nth is None or fault.seen in fault.nth):
                        fault.hits.append(fault.seen)
                        chosen = fault
        return chosen


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FileServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _record(self, start: int, end: int, status: int) -> Request:
        request = Request(time.monotonic(), self.command, self.path.lstrip("/"), start, end, status)
        with self.server.lock:
            self.server.log.append(request)
        return request

    def _answer(self, body: bool) -> None:
        path = self.path.lstrip("/").split("?")[0]
        local = os.path.join(self.server.root, path)
        size = os.path.getsize(local) if os.path.isfile(local) else None
        start, end = 0, size or 0
        ranged = self.headers.get("Range")
        if ranged and size is not None:
            first, _, last = ranged.removeprefix("bytes=").partition("-")
            start, end = int(first), min(int(last) + 1 if last else size, size)
        fault = self.server._fault(self.command, path)
        kind = fault.kind if fault else None
        if kind == "stall":
            self._record(start, end, 0)
            time.sleep(self.server.stall)
            self.close_connection = True
            return
        if kind == "reset":
            self._record(start, end, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        status = {"503": 503, "404": 404, "403": 403}.get(kind)
        if status is None and size is None:
            status = 404
        if status is not None:
            self._record(start, end, status)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = 206 if ranged else 200
        request = self._record(start, end, status)
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start))
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if not body:
            return
        with open(local, "rb") as f:
            f.seek(start)
            data = f.read(end - start)
        if kind == "truncate":
            data = data[: len(data) // 2]
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        request.sent = len(data)
        if kind == "truncate":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


@contextmanager
def file_server(root):
    """Serve ``root`` on a free port of 127.0.0.1; yield the :class:`FileServer`."""
    server = FileServer(str(root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
