"""The deployment's HTTP API as the client uses it: retries with backoff, jobs, results.

Retried: 429 (waiting ``Retry-After`` when given), 5xx, and connection errors; each wait is capped by
:attr:`RetryPolicy.max_wait_s`. Anything else is returned (or raised as :class:`DeploymentError`) at once.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


class DeploymentError(Exception):
    """The deployment answered with an error (or not at all); the message says what and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Interrupted(Exception):
    """The caller asked to stop (Ctrl-C) while a request waited for a retry or a job."""


def describe(response: httpx.Response) -> str:
    """``HTTP 413 upload_too_large: ...`` from the service's error envelope, or the start of the body."""
    try:
        error = response.json()["error"]
        return f"HTTP {response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = " ".join(response.text.split())[:200]
        return f"HTTP {response.status_code}" + (f": {text}" if text else "")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: exponential backoff from ``base_s``, each wait at most ``max_wait_s``."""

    attempts: int = 8
    base_s: float = 1.0
    max_wait_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None, jitter: float = 1.0) -> float:
        """Seconds before retry number ``attempt`` (1-based): ``Retry-After`` when the server gave one,
        else ``base_s * 2**(attempt-1)`` scaled by ``jitter`` (0.5..1.0); never more than ``max_wait_s``.
        """
        wanted = retry_after if retry_after is not None else self.base_s * 2 ** (attempt - 1) * jitter
        return max(0.0, min(self.max_wait_s, wanted))


@dataclass
class RetryLog:
    """What the retries met, for summaries (thread-safe counters)."""

    by_reason: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, reason: str) -> None:
        with self._lock:
            self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


class DeploymentClient:
    """Thread-safe client of one deployment: ``base_url`` plus auth, with retries on transient failures."""

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth | None = None,
        *,
        policy: RetryPolicy | None = None,
        timeout: float = 120.0,
        connections: int = 8,
        stop: threading.Event | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.stop = stop or threading.Event()
        self.retries = RetryLog()
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            follow_redirects=False,
        )
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DeploymentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sleep(self, seconds: float) -> None:
        """Wait, unless a stop is requested (then :class:`Interrupted`)."""
        if self.stop.wait(seconds):
            raise Interrupted

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with retries; returns the last response (possibly still a 429/5xx when attempts ran out).

        ``kwargs`` are rebuilt into a new request on every attempt, so uploads are sent whole again.
        """
        for attempt in range(1, self.policy.attempts + 1):
            if self.stop.is_set():
                raise Interrupted
            last = attempt == self.policy.attempts
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise DeploymentError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
                self.retries.add(type(exc).__name__)
                self.sleep(self.policy.delay(attempt, jitter=self._jitter()))
                continue
            if response.status_code not in RETRY_STATUSES or last:
                return response
            self.retries.add(str(response.status_code))
            wait = parse_retry_after(response.headers.get("retry-after"))
            self.sleep(self.policy.delay(attempt, wait, jitter=self._jitter()))
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    def _jitter(self) -> float:
        return 0.5 + self._random.random() / 2

    def expect(self, response: httpx.Response, *statuses: int) -> httpx.Response:
        if response.status_code not in statuses:
            raise DeploymentError(
                f"{response.request.method} {response.request.url.path}: {describe(response)}", response.status_code
            )
        return response

    # --- jobs ------------------------------------------------------------------------------------
    def submit_job(
        self,
        filename: str,
        content: bytes,
        pages: str | None = None,
        dpi: int | None = None,
        export_name: str | None = None,
    ) -> dict[str, Any]:
        """``POST /jobs``: the accepted job (``id``, ``status_url``, ``result_url``)."""
        options = (("pages", pages), ("dpi", dpi), ("export_name", export_name))
        form = {key: str(value) for key, value in options if value is not None}
        response = self.request("POST", "/jobs", files={"file": (filename, content)}, data=form)
        body: dict[str, Any] = self.expect(response, 202).json()
        return body

    def job_status(self, job_id: str) -> dict[str, Any] | None:
        """``GET /jobs/{id}``; ``None`` when the deployment does not know the job (404)."""
        response = self.request("GET", f"/jobs/{job_id}")
        if response.status_code == 404:
            return None
        body: dict[str, Any] = self.expect(response, 200).json()
        return body

    def wait_job(
        self,
        job_id: str,
        poll_s: float = 2.0,
        timeout_s: float = 3600.0,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job is finished; its last status. :class:`DeploymentError` on timeout or loss."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.job_status(job_id)
            if status is None:
                raise DeploymentError(f"job {job_id} is unknown to the deployment (expired, or another replica)", 404)
            if on_status is not None:
                on_status(status)
            if status["status"] in FINISHED:
                return status
            if time.monotonic() >= deadline:
                raise DeploymentError(f"job {job_id} not finished after {timeout_s:.0f} s ({status['status']})")
            self.sleep(poll_s)

    def job_result(self, job_id: str, output: str = "json") -> httpx.Response:
        """``GET /jobs/{id}/result`` (200 expected; :class:`DeploymentError` otherwise)."""
        return self.expect(self.request("GET", f"/jobs/{job_id}/result", params={"output": output}), 200)
