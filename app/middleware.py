"""ASGI middleware: API key, request body cap (enforced while streaming), admission of new work, the
request log line and metrics (with 499 for clients that leave, 500s rendered here) and the body-read timeout."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import Collection, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import ARRIVED, REQUEST_ID, error_payload, http_headers, http_status
from app.errors import ServiceError, Unavailable
from app.metrics import Metrics
from app.shutdown import InFlight

log = logging.getLogger("app.access")
CLIENT_CLOSED = 499
"""Status recorded (log and metrics; nothing is sent) when the client disconnects before the answer."""


class BodyTooLarge(HTTPException):
    """Raised while a request body is still streaming in. An HTTPException so that FastAPI's body
    parser re-raises it unchanged (it turns other exceptions into a 400)."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, f"the upload exceeds the limit of {limit_bytes / 1024 / 1024:g} MB")


class BodyReadTimeout(HTTPException):
    """No piece of the request body arrived for ``BODY_READ_TIMEOUT_S``. An HTTPException so that body
    parsers re-raise it unchanged."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"no request body data arrived for {seconds:g} s (BODY_READ_TIMEOUT_S)")


async def send_json_error(
    scope: Scope, send: Send, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> None:
    """Answer with the JSON error envelope from middleware (no route ran)."""
    body = json.dumps(error_payload(scope, status, code, message)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


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
        await send_json_error(scope, send, 413, "upload_too_large", message)


class AdmissionMiddleware:
    """New work (a POST to one of ``paths``) is refused before its body is read: 503 ``shutting_down``
    while the service drains, 507 while the output disk cannot take documents (see
    :mod:`app.storage.disk`). Reads ``service`` and ``disk`` from the app's state; absent = admit."""

    def __init__(self, app: ASGIApp, paths: Collection[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            error = self._refusal(scope)
            if error is not None:
                await send_json_error(
                    scope, send, http_status(error), error.code, error.message, headers=http_headers(error)
                )
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _refusal(scope: Scope) -> ServiceError | None:
        state = getattr(scope.get("app"), "state", None)
        service: Any = getattr(state, "service", None)
        if service is not None and service.draining:
            return Unavailable("shutting_down", "the service is restarting; retry shortly", retry_after=15)
        disk: Any = getattr(state, "disk", None)
        refusal: ServiceError | None = disk.refusal() if disk is not None else None
        return refusal


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

    Routes add details for the line (pages, engine, job id) to ``request.state.log``. Also:

    - a client that disconnects before its answer is logged at INFO as ``client_disconnected`` with
      status 499 (its own metric label), never as a server error;
    - an unexpected exception is logged with its traceback and answered 500 ``internal_error`` here, so
      that the line counts the bytes sent;
    - while the body is still arriving, each wait for its next piece is capped at ``body_timeout_s``
      (408 ``body_timeout``); an answer sent before the whole body was read carries ``Connection: close``;
    - requests in flight are tracked in ``in_flight`` (a shutdown waits for them).
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics, body_timeout_s: float | None = None, in_flight: InFlight | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.body_timeout_s = body_timeout_s
        self.in_flight = in_flight or InFlight()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: PLR0915
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state[REQUEST_ID] = request_id
        state[ARRIVED] = arrived = time.monotonic()
        status = 500
        sent = received = 0
        body_done = not _has_body(scope)
        disconnected = response_started = response_done = False
        timeout = self.body_timeout_s

        async def counting_receive() -> Message:
            nonlocal received, body_done, disconnected
            if body_done or timeout is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), timeout)
                except asyncio.TimeoutError:
                    raise BodyReadTimeout(timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = body_done or not message.get("more_body", False)
            elif message["type"] == "http.disconnect":
                disconnected = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent, response_started, response_done
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                extra = [(b"x-request-id", request_id.encode())]
                if not body_done:  # the rest of the body will not be read: the connection cannot be reused
                    extra.append((b"connection", b"close"))
                message["headers"] = [*message.get("headers", []), *extra]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                response_done = not message.get("more_body", False)
            await send(message)

        failure: BaseException | None = None
        self.in_flight.enter(arrived)
        try:
            await self.app(scope, counting_receive, send_with_id)
        except Exception as exc:
            if not disconnected:
                if response_started:
                    log.exception("error while sending the answer: %s", type(exc).__name__)
                    raise
                log.exception("unhandled error: %s", type(exc).__name__)
                message = "an unexpected error occurred; it has been logged"
                await send_json_error(scope, send_with_id, 500, "internal_error", message)
            failure = exc
        finally:
            self.in_flight.leave(arrived)
            if disconnected and not response_done:
                status = CLIENT_CLOSED
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(seconds)
            details: dict[str, Any] = dict(scope.get("state", {}).get("log", {}))
            if status == CLIENT_CLOSED:
                details["outcome"] = "client_disconnected"
                if failure is not None:
                    details["during"] = type(failure).__name__
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
