"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

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
        s3 = state.get("s3")
        if s3 is not None:
            yield CounterMetricFamily("s3_uploads", "Objects uploaded to S3", value=s3["uploaded"])
            yield CounterMetricFamily("s3_upload_failures", "Failed S3 upload attempts (retried)", value=s3["failures"])
            yield GaugeMetricFamily("s3_pending_uploads", "Outbox entries waiting for upload", value=s3["pending"])
            yield GaugeMetricFamily(
                "ocr_jobs_leased", "Unfinished jobs this replica holds a lease on", value=s3["leases"]
            )
            yield CounterMetricFamily(
                "ocr_jobs_taken_over", "Jobs this replica took over from stopped replicas", value=s3["takeovers"]
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

    def watch(self, read: Callable[[], dict[str, Any]]) -> None:
        """Expose live gauges computed by ``read`` at each scrape."""
        self.registry.register(_LiveState(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
