"""ASGI middleware: API key, request body cap (enforced while streaming), request log line and metrics."""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ARRIVED, REQUEST_ID, error_payload
from app.metrics import Metrics
from app.uploads import BodyTooLarge

log = logging.getLogger("app.access")


class BodyLimitMiddleware:
    """Refuse request bodies over ``limit`` bytes (``path_limits`` overrides it for some paths): at once
    from ``Content-Length``, else while streaming."""

    def __init__(self, app: ASGIApp, limit: int, path_limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.limit)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(scope, send, limit)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, limit: int) -> None:
        message = f"the request body exceeds the limit of {limit / 1024 / 1024:g} MB"
        body = json.dumps(error_payload(scope, 413, "upload_too_large", message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """When ``API_KEY`` is set, require ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

    Probes (``/health``, ``/ready``, ``/metrics``) and the static web page stay open: they carry no
    documents. Keys are compared in constant time.
    """

    OPEN_PATHS = frozenset({"/health", "/ready", "/metrics", "/", "/favicon.ico"})
    OPEN_PREFIXES = ("/ui/",)

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open(scope["path"]) or scope["method"] == "OPTIONS" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        message = "missing or wrong API key: send Authorization: Bearer <key> or X-API-Key: <key>"
        body = json.dumps(error_payload(scope, 401, "unauthorized", message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _open(self, path: str) -> bool:
        return path in self.OPEN_PATHS or path.startswith(self.OPEN_PREFIXES)

    def _allowed(self, scope: Scope) -> bool:
        offered = []
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                offered.append(value[7:].strip())
            elif name == b"x-api-key":
                offered.append(value.strip())
        return any(hmac.compare_digest(candidate, self.key) for candidate in offered)


class RequestLogMiddleware:
    """One log line and the HTTP metrics per request, with an ``X-Request-ID`` (accepted or generated).

    Routes add details for the line (pages, engine, job id) to ``request.state.log``.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state[REQUEST_ID] = request_id
        state[ARRIVED] = time.monotonic()
        status = 500
        sent = received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(seconds)
            details = scope.get("state", {}).get("log", {})
            extra = "".join(f" {key}={value}" for key, value in details.items())
            level = logging.DEBUG if route in ("/health", "/ready", "/metrics") else logging.INFO
            log.log(
                level,
                "request id=%s %s %s status=%d in=%d out=%d ms=%.1f%s",
                request_id,
                scope["method"],
                route if route != "unmatched" else scope["path"][:200],
                status,
                received,
                sent,
                seconds * 1000,
                extra,
                extra={"request_id": request_id, "route": route, "status": status, **details},
            )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            text = value.decode("latin-1")[:128]
            return text if text.isprintable() else None
    return None
