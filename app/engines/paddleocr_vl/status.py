"""What the paddleocr-vl engine knows about its VLM server, as plain data for ``/health`` and ``/metrics``.

Imports nothing but the standard library: the health and metrics code reads it without loading the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

#: Upper bounds (seconds) of the VLM latency histogram exported on /metrics.
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class TokenState:
    """The bearer credential sent to the VLM server; never the token itself."""

    mode: Literal["none", "api_key", "iam"]
    valid_until: str | None = None  # ISO 8601 UTC; IAM only
    renewed_at: str | None = None
    renewals: int = 0  # tokens obtained from IAM so far
    last_error: str | None = None  # the last failed renewal (kept after later successes: see renewed_at)
    last_error_at: str | None = None


@dataclass(frozen=True)
class ConcurrencyState:
    """The limit on VLM requests in flight and what the server's latency looks like."""

    mode: Literal["auto", "fixed"]
    limit: int
    maximum: int
    in_flight: int
    waiting: int  # requests waiting for a slot
    latency_s: float | None  # mean latency of the last completed requests
    baseline_s: float | None  # auto: the latency the server shows without a queue (estimated)
    requests: dict[str, int] = field(default_factory=dict)  # completed requests by outcome
    #: Cumulative counts of successful requests at or under each bound of LATENCY_BUCKETS, then their sum.
    latency_buckets: tuple[int, ...] = ()
    latency_sum_s: float = 0.0
    #: What tells the auto limit that the server is full: its latency, or its own queue (its metrics).
    signal: Literal["latency", "queue"] = "latency"
    retries: int = 0  # requests sent again after a transient failure (connection, 429, 502-504)


@dataclass(frozen=True)
class ProcessesState:
    """The page processes that build and send the VLM requests (``VL_PAGE_PROCESSES``)."""

    count: int
    ready: int
    restarts: int  # started again after one exited


@dataclass(frozen=True)
class VlmStatus:
    """The VLM server as the engine sees it."""

    server: str
    model: str | None  # the model name requests carry (resolved at start)
    models_offered: tuple[str, ...] | None  # what GET /models listed; None until asked
    auth: TokenState
    concurrency: ConcurrencyState
    processes: ProcessesState | None = None  # None: the requests are built in the service process


@runtime_checkable
class CallsVlmServer(Protocol):
    """An engine that calls a VLM server (``None``: it is configured to run the VLM itself)."""

    def vlm_status(self) -> VlmStatus | None: ...


def vlm_status_of(engine: object) -> VlmStatus | None:
    """The VLM server ``engine`` calls, for ``/health`` and ``/metrics``; ``None`` for engines without one."""
    return engine.vlm_status() if isinstance(engine, CallsVlmServer) else None
