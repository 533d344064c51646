"""HTTP to the VLM server: the transport under paddlex's OpenAI client, and the start-up model check.

:class:`VlmTransport` handles every request the pipeline sends (one per page without layout detection,
one per block with it): it waits for a slot of the request limit (:mod:`.slots`), puts the bearer credential
in (:mod:`.auth`; after a 401 with an IAM token, once more with a renewed one), replaces the request's timeouts
with ``VL_REQUEST_TIMEOUT_S`` (httpx carries them in the ``timeout`` request extension, which the connection
pool honours; paddlex asks for 600 s), reads the whole answer and reports its latency and outcome to the limit:
2xx ok; 429, 502, 503, 504, a broken connection and timeouts overload; the rest errors. Transient faults (a
broken connection, 429/502/503/504 from the server or a gateway) are tried again, ``VL_REQUEST_ATTEMPTS`` in all,
after a jittered backoff and in a new slot: a page is idempotent, and a blip must not fail a user's document.

:func:`list_models` and :func:`choose_model` are the start-up check: which models ``GET /models`` lists, and
which one requests name (``VL_MODEL_NAME``, or the only one served).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence

import httpx

from app.cpu_turns import request_leaving
from app.engines.base import EngineLoadError
from app.engines.paddleocr_vl.auth import VlmCredentials
from app.engines.paddleocr_vl.block_images import BlockImages
from app.engines.paddleocr_vl.limiter import Outcome
from app.engines.paddleocr_vl.slots import SlotSource

#: The connection pool of the pipeline's client (paddlex may have ~200 requests in flight).
POOL_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)


#: Statuses that mean "the server (or the gateway in front of it) is overloaded or restarting": retried.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
#: Seconds of the first retry's backoff (doubling, half of it random), and the most one backoff may wait.
BACKOFF_S = 1.0
BACKOFF_CAP_S = 8.0
#: Header on the answer handed to the pipeline: how many attempts it took (read by the engine's error text).
ATTEMPTS_HEADER = "x-vlm-attempts"


def outcome_of(status: int) -> Outcome:
    if 200 <= status < 300:
        return "ok"
    return "overload" if status in TRANSIENT_STATUSES else "error"


class VlmConnectionFailed(httpx.TransportError):
    """The connection to the VLM server failed on every attempt; the last failure is the cause."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


def backoff_s(
    attempt: int, retry_after: str | None = None, *, first_s: float = BACKOFF_S, rng: random.Random | None = None
) -> float:
    """Seconds to wait before attempt ``attempt + 1``: ``first_s * 2**(attempt-1)`` (at most ``BACKOFF_CAP_S``),
    half of it random (jitter: replicas and pages do not retry in step); a ``Retry-After`` in seconds is honoured up
    to the cap."""
    base = min(BACKOFF_CAP_S, first_s * 2 ** (attempt - 1))
    wait = base / 2 + (rng or random).uniform(0, base / 2)
    if retry_after is not None:
        with contextlib.suppress(ValueError):
            wait = max(wait, min(BACKOFF_CAP_S, float(retry_after)))
    return float(wait)


class VlmTransport(httpx.AsyncBaseTransport):
    """The pipeline's transport: slot, credential, deadline, measured, transient faults retried (see the module
    docstring)."""

    def __init__(
        self,
        timeout_s: float,
        credentials: VlmCredentials,
        slots: SlotSource,
        connect_s: float = 10.0,
        *,
        attempts: int = 3,
        first_backoff_s: float = BACKOFF_S,
        block_images: BlockImages | None = None,
    ) -> None:
        self._inner = httpx.AsyncHTTPTransport(limits=POOL_LIMITS)
        connect = min(connect_s, timeout_s)
        self._timeouts = {"connect": connect, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
        self.credentials = credentials
        self.slots = slots
        self.attempts = max(1, attempts)
        self.first_backoff_s = first_backoff_s
        self.block_images = block_images
        self._renewing: asyncio.Lock | None = None  # one IAM exchange at a time (created on paddlex's loop)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The request through a slot; a broken connection or a transient status (:data:`TRANSIENT_STATUSES`) is
        tried again in a new slot after a backoff, up to ``attempts`` in all. Then the last answer is returned
        (with :data:`ATTEMPTS_HEADER`) or :class:`VlmConnectionFailed` raised. Timeouts are not retried: the
        deadline is the deadline."""
        if self.block_images is not None:
            request = self._with_block_images(request)
        request_leaving()  # the page's CPU turn (app.cpu_turns) is free: its request is built
        request.extensions = {**request.extensions, "timeout": self._timeouts}
        attempt = 1
        while True:
            started = await self.slots.acquire()
            outcome: Outcome = "error"
            rtt = 0.0
            response: httpx.Response | None = None
            try:
                response, rtt = await self._send(request)
                outcome = outcome_of(response.status_code)
            except httpx.TimeoutException:
                outcome, rtt = "overload", time.monotonic() - started[0]
                raise
            except httpx.TransportError as exc:
                outcome, rtt = "overload", time.monotonic() - started[0]
                if attempt >= self.attempts:
                    raise VlmConnectionFailed(f"{type(exc).__name__}: {exc}", attempt) from exc
            finally:
                self.slots.release(started, rtt, outcome)
            retry_after = None
            if response is not None:
                if response.status_code not in TRANSIENT_STATUSES or attempt >= self.attempts:
                    if attempt > 1:
                        response.headers[ATTEMPTS_HEADER] = str(attempt)
                    return response
                retry_after = response.headers.get("retry-after")
            await asyncio.sleep(backoff_s(attempt, retry_after, first_s=self.first_backoff_s))
            attempt += 1
            self.slots.count_retry()

    def _with_block_images(self, request: httpx.Request) -> httpx.Request:
        """``request`` with the block images the engine encoded in place of their placeholders
        (:mod:`.block_images`)."""
        assert self.block_images is not None
        try:
            body = request.content  # the OpenAI client's JSON body, in memory
        except httpx.RequestNotRead:
            return request
        filled = self.block_images.fill(body)
        if filled is body:
            return request
        headers = request.headers.copy()
        del headers["content-length"]
        return httpx.Request(
            request.method, request.url, headers=headers, content=filled, extensions=request.extensions
        )

    async def _send(self, request: httpx.Request) -> tuple[httpx.Response, float]:
        """The request with the current token; after a 401, once more with a renewed one."""
        token = self.credentials.cached()
        if token is None and self.credentials.refreshable:
            token = await self._exchange(None)
        while True:
            if token is not None:
                request.headers["Authorization"] = f"Bearer {token}"
            began = time.monotonic()
            response = await self._inner.handle_async_request(request)
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
            rtt = time.monotonic() - began
            answer = httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=httpx.ByteStream(raw),
                extensions=response.extensions,
            )
            if answer.status_code != 401 or not self.credentials.refreshable or token is None:
                return answer, rtt
            rejected, token = token, await self._exchange(token)
            if token is None or token == rejected:
                return answer, rtt

    async def _exchange(self, rejected: str | None) -> str | None:
        """A token from IAM (after a 401 to ``rejected``, if given): off the event loop, one at a time."""
        if self._renewing is None:
            self._renewing = asyncio.Lock()
        async with self._renewing:
            if rejected is None:
                cached = self.credentials.cached()  # renewed while this request waited for the lock?
                return cached if cached is not None else await asyncio.to_thread(self.credentials.token)
            return await asyncio.to_thread(self.credentials.renew_after_rejection, rejected)

    async def aclose(self) -> None:
        await self._inner.aclose()


class VlmServerNotReady(Exception):
    """The server cannot answer yet (unreachable, timed out, 5xx, no model listed): worth waiting for."""


def list_models(base_url: str, credentials: VlmCredentials, timeout_s: float) -> list[str]:
    """The model ids ``GET <base_url>/models`` lists.

    Raises :class:`VlmServerNotReady` (retry later), :class:`VlmAuthError` (no token; ``refused`` or not), or
    :class:`EngineLoadError` with the fix for a 4xx.
    """
    url = base_url.rstrip("/") + "/models"
    timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
    token = credentials.token()
    with httpx.Client(timeout=timeout) as http:
        try:
            response = http.get(url, headers=_bearer(token))
            if response.status_code == 401 and credentials.refreshable:
                renewed = credentials.renew_after_rejection(token)
                if renewed is not None and renewed != token:
                    response = http.get(url, headers=_bearer(renewed))
        except httpx.HTTPError as exc:
            raise VlmServerNotReady(f"{type(exc).__name__}: {exc}") from exc
    status = response.status_code
    if status >= 500:
        raise VlmServerNotReady(f"GET /models answered HTTP {status}")
    if status in (401, 403):
        raise EngineLoadError(
            f"the VLM server refused our credentials on GET /models (HTTP {status}): {_auth_hint(credentials)}"
        )
    if status != 200:
        raise EngineLoadError(
            f"GET {url} answered HTTP {status}: check VL_SERVER_URL (the OpenAI base URL of the server, usually "
            "ending in /v1)"
        )
    try:
        return [str(model["id"]) for model in response.json()["data"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineLoadError(f"GET {url} did not answer an OpenAI model list: check VL_SERVER_URL") from exc


def choose_model(requested: str, offered: Sequence[str]) -> str:
    """The model name requests carry: ``VL_MODEL_NAME`` when the server serves it, or the one it serves.

    Raises :class:`EngineLoadError` naming what the server offers; :class:`VlmServerNotReady` when it lists none
    (still loading).
    """
    if not offered:
        raise VlmServerNotReady("GET /models lists no model yet")
    names = ", ".join(offered)
    if requested:
        if requested in offered:
            return requested
        raise EngineLoadError(
            f"VL_MODEL_NAME={requested} is not served by the VLM server, which offers: {names}. Set VL_MODEL_NAME to "
            "one of them, or leave it empty to use the only model served"
        )
    if len(offered) == 1:
        return offered[0]
    paddle = [name for name in offered if "paddleocr-vl" in name.lower()]
    if len(paddle) == 1:
        return paddle[0]
    raise EngineLoadError(f"the VLM server offers several models ({names}): set VL_MODEL_NAME to the PaddleOCR-VL one")


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _auth_hint(credentials: VlmCredentials) -> str:
    if credentials.mode == "iam":
        return (
            "the IAM token was refused: give the service account of VL_IAM_KEY_ID access to the VLM's Model RUN "
            "(a role in its project), or check that VL_SERVER_URL is that Model RUN"
        )
    if credentials.mode == "api_key":
        return "check VL_API_KEY (sent as 'Authorization: Bearer ...'; vLLM's --api-key)"
    return "the server wants a credential: set VL_API_KEY, or VL_IAM_KEY_ID and VL_IAM_SECRET for a Cloud.ru Model RUN"
