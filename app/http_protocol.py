"""uvicorn's HTTP/1.1 protocol (h11) with a header timeout.

uvicorn closes idle keep-alive connections (``KEEP_ALIVE_TIMEOUT_S``) and caps the size of a request
head (h11's 16 KiB), but it waits forever for a head that arrives slowly or not at all, so stalled or
slow-loris connections stay open. Here a connection must deliver a complete request head within
``HEADER_TIMEOUT_S`` of opening, or of its first byte after a previous answer; otherwise it gets 408
``header_timeout`` and is closed. The body has its own timeout (``BODY_READ_TIMEOUT_S``, in
:class:`app.middleware.RequestLogMiddleware`).
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("app.access")


def _timeout_answer(seconds: float) -> bytes:
    message = f"the request head did not arrive within {seconds:g} s (HEADER_TIMEOUT_S)"
    body = json.dumps({"error": {"code": "header_timeout", "message": message}}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _HeaderTimeoutH11Protocol(H11Protocol):
    header_timeout_s: float = 30.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._awaiting_head():
            self._arm_header_timer()
        else:
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_head():
            return
        client = "%s:%d" % self.client if self.client else "unknown"  # noqa: UP031
        log.info("connection from %s closed: no complete request head within %g s", client, self.header_timeout_s)
        self.transport.write(_timeout_answer(self.header_timeout_s))
        self.transport.close()


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """The h11 protocol class to give ``uvicorn.Config(http=...)``, closing heads slower than ``seconds``."""
    return type("HeaderTimeoutH11Protocol", (_HeaderTimeoutH11Protocol,), {"header_timeout_s": seconds})
