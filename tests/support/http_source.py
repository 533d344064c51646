"""A real HTTP(S) server for URL-input tests: serves documents, redirects, slow and oversized answers."""

from __future__ import annotations

import contextlib
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class QuietHTTPServer(ThreadingHTTPServer):
    """A test server for which a client dropping its connection (a deadline passed, a process a test killed, a
    limit reached) is not an error: no traceback for it in the test output; anything else is printed as usual."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class DocumentSource:
    """``http://127.0.0.1:<port>`` in a thread. Paths:

    * ``/doc/<name>`` — the bytes registered with :meth:`add` (``?chunked=1`` without Content-Length);
    * ``/redirect?to=<url>`` — 302 to ``to``; ``/hops/<n>`` — a chain of ``n`` redirects ending at ``/doc/hello``;
    * ``/slow?s=<seconds>`` — answers after a delay; ``/big?mb=<n>&chunked=1`` — ``n`` MiB of zeros;
    * anything else — 404. ``hosts`` records the ``Host`` header of every request.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.documents: dict[str, bytes] = {"hello": b"hello"}
        self.hosts: list[str] = []
        source = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                source.hosts.append(self.headers.get("Host", ""))
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                chunked = query.get("chunked") == "1"
                if parts.path.startswith("/doc/") and parts.path[5:] in source.documents:
                    self._send(source.documents[parts.path[5:]], chunked)
                elif parts.path == "/redirect":
                    self._redirect(query["to"])
                elif parts.path.startswith("/hops/"):
                    left = int(parts.path[6:])
                    self._redirect(f"/hops/{left - 1}" if left > 1 else "/doc/hello")
                elif parts.path == "/slow":
                    time.sleep(float(query.get("s", "5")))
                    self._send(b"late", chunked=False)
                elif parts.path == "/big":
                    self._send(b"\0" * int(float(query.get("mb", "2")) * 1024 * 1024), chunked)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _send(self, data: bytes, chunked: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        for start in range(0, len(data), 64 * 1024):
                            piece = data[start : start + 64 * 1024]
                            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                        self.wfile.write(b"0\r\n\r\n")
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the client stopped reading at its limit
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:  # https: the listening socket hands out TLS connections
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, name: str, data: bytes) -> str:
        """Serve ``data`` at ``/doc/<name>``; returns its URL."""
        self.documents[name] = data
        return f"{self.url}/doc/{name}"

    def __enter__(self) -> DocumentSource:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
