"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from app.engines.paddleocr_vl.status import LATENCY_BUCKETS as VLM_BUCKETS
from app.engines.paddleocr_vl.status import VlmStatus
from app.heap import GENERATIONS, PAUSE_BUCKETS, gc_pauses

if TYPE_CHECKING:
    from app.jobs.store import StorageHealth

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _LiveState(Collector):
    """Gauges read at scrape time from the running service (queue depth, jobs, engine state)."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        state = self.read()
        if not state:
            return
        queue = GaugeMetricFamily("ocr_queue_pages", "Pages waiting for or running on an OCR worker", labels=["state"])
        queue.add_metric(["waiting"], state["pages_waiting"])
        queue.add_metric(["running"], state["pages_running"])
        yield queue
        jobs = GaugeMetricFamily("ocr_jobs_active", "Jobs accepted and not finished", labels=["status"])
        for status, count in state["jobs"].items():
            jobs.add_metric([status], count)
        yield jobs
        engine = GaugeMetricFamily("ocr_engine_state", "1 for the engine's current state", labels=["engine", "state"])
        for engine_name, engine_state in state["engines"].items():
            for name in ("initializing", "ready", "failed"):
                engine.add_metric([engine_name, name], 1.0 if engine_state == name else 0.0)
        yield engine
        s3: StorageHealth | None = state.get("s3")
        if s3 is not None:
            mirror = s3.mirror
            yield CounterMetricFamily("s3_uploads", "Objects uploaded to S3", value=mirror.uploaded)
            yield CounterMetricFamily(
                "s3_upload_failures", "Failed S3 upload attempts (retried)", value=mirror.failures
            )
            yield GaugeMetricFamily("s3_pending_uploads", "Outbox entries waiting for upload", value=mirror.pending)
            if s3.ownership is not None:
                yield GaugeMetricFamily(
                    "ocr_jobs_leased", "Unfinished jobs this replica holds a lease on", value=s3.ownership.jobs_held
                )
                yield CounterMetricFamily(
                    "ocr_jobs_taken_over",
                    "Jobs this replica took over from stopped replicas",
                    value=s3.ownership.jobs_taken_over,
                )


class _VlmState(Collector):
    """The VLM server of each engine that calls one: request limit, in flight, latency, tokens."""

    def __init__(self, read: Callable[[], dict[str, VlmStatus | None]]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        statuses = {name: status for name, status in self.read().items() if status is not None}
        if not statuses:
            return
        gauges = {
            "limit": GaugeMetricFamily(
                "vlm_concurrency_limit", "VLM requests allowed in flight now", labels=["engine"]
            ),
            "in_flight": GaugeMetricFamily("vlm_requests_in_flight", "VLM requests in flight", labels=["engine"]),
            "waiting": GaugeMetricFamily("vlm_requests_waiting", "VLM requests waiting for a slot", labels=["engine"]),
        }
        baseline = GaugeMetricFamily(
            "vlm_latency_baseline_seconds", "The VLM server's latency at light load (auto limit)", labels=["engine"]
        )
        requests = CounterMetricFamily("vlm_requests", "VLM requests by outcome", labels=["engine", "outcome"])
        latency = HistogramMetricFamily(
            "vlm_request_duration_seconds", "Latency of successful VLM requests", labels=["engine"]
        )
        renewals = CounterMetricFamily(
            "vlm_token_renewals", "IAM tokens obtained for the VLM server", labels=["engine"]
        )
        expiry = GaugeMetricFamily(
            "vlm_token_expiry_timestamp_seconds", "When the current IAM token expires (Unix time)", labels=["engine"]
        )
        for name, status in statuses.items():
            c = status.concurrency
            for key, family in gauges.items():
                family.add_metric([name], getattr(c, key))
            if c.baseline_s is not None:
                baseline.add_metric([name], c.baseline_s)
            for outcome, count in c.requests.items():
                requests.add_metric([name, outcome], count)
            buckets = [(f"{bound:g}", count) for bound, count in zip(VLM_BUCKETS, c.latency_buckets, strict=True)]
            latency.add_metric([name], [*buckets, ("+Inf", c.requests.get("ok", 0))], c.latency_sum_s)
            if status.auth.mode == "iam":
                renewals.add_metric([name], status.auth.renewals)
                if status.auth.valid_until:
                    expiry.add_metric([name], datetime.fromisoformat(status.auth.valid_until).timestamp())
        yield from (*gauges.values(), baseline, requests, latency, renewals, expiry)


class _GcState(Collector):
    """The garbage collector's pauses (app.heap) and the objects frozen out of its walks."""

    def __init__(self) -> None:
        self.pauses = gc_pauses()  # timed from now on

    def collect(self) -> Iterable[Metric]:
        pauses = self.pauses
        histogram = HistogramMetricFamily(
            "python_gc_pause_seconds", "How long each garbage collection held the process", labels=["generation"]
        )
        for generation in GENERATIONS:
            cumulative = pauses.cumulative(generation)
            buckets = [(f"{bound:g}", count) for bound, count in zip(PAUSE_BUCKETS, cumulative, strict=True)]
            histogram.add_metric(
                [str(generation)], [*buckets, ("+Inf", pauses.counts[generation])], pauses.seconds[generation]
            )
        yield histogram
        yield GaugeMetricFamily(
            "python_gc_frozen_objects",
            "Objects set aside from garbage collection once loaded",
            value=gc.get_freeze_count(),
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("http_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram(
            "http_request_duration_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.pages = Counter("ocr_pages", "Pages processed by engine and outcome", ["engine", "outcome"], registry=r)
        self.page_seconds = Histogram(
            "ocr_page_duration_seconds", "OCR time of one page", ["engine"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.jobs_finished = Counter("ocr_jobs_finished", "Jobs that ended, by status", ["status"], registry=r)
        r.register(_GcState())

    def watch(
        self, read: Callable[[], dict[str, Any]], vlm: Callable[[], dict[str, VlmStatus | None]] | None = None
    ) -> None:
        """Expose live gauges computed by ``read`` at each scrape, and with ``vlm`` (engine name -> status)
        the VLM server of each engine that calls one."""
        self.registry.register(_LiveState(read))
        if vlm is not None:
            self.registry.register(_VlmState(vlm))

    def render(self) -> bytes:
        return generate_latest(self.registry)
