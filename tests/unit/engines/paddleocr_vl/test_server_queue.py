"""The VLM server's queue from its Prometheus /metrics (vLLM's gauges), read from the stand-in over real HTTP; and
the page buffers the engine keeps for reuse."""

from __future__ import annotations

import httpx

from app.engines.paddleocr_vl.buffers import PIL_BLOCKS, reuse_page_buffers
from app.engines.paddleocr_vl.server_queue import QueueWatcher, label, metrics_url, parse_queue
from tests.support.vlm_standin import VlmStandin

VLLM_METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="PaddleOCR-VL-0.9B"} 7.0
vllm:num_requests_running{engine="1",model_name="PaddleOCR-VL-0.9B"} 5.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="PaddleOCR-VL-0.9B"} 3.0
vllm:num_requests_waiting_by_reason{reason="capacity"} 9.0
vllm:num_requests_swapped 4.0
"""


def test_the_queue_gauges_are_summed_over_series() -> None:
    assert parse_queue(VLLM_METRICS) == (12.0, 3.0)
    assert parse_queue("vllm:num_requests_running 2\nvllm:num_requests_waiting 0 1700000000000\n") == (2.0, 0.0)
    assert parse_queue("vllm:num_requests_running 2\n") is None  # no queue gauge: not vLLM's metrics
    assert parse_queue("<html>gateway</html>") is None
    assert parse_queue("vllm:num_requests_running x\nvllm:num_requests_waiting 1\n") is None


def test_the_endpoint_is_derived_from_the_server_url() -> None:
    assert metrics_url("", "http://vlm:8000/v1") == "http://vlm:8000/metrics"
    assert (
        metrics_url("", "https://x.modelrun.inference.cloud.ru/v1") == "https://x.modelrun.inference.cloud.ru/metrics"
    )
    assert metrics_url(" http://vlm:9090/metrics ", "http://vlm:8000/v1") == "http://vlm:9090/metrics"
    assert metrics_url("OFF", "http://vlm:8000/v1") is None
    assert metrics_url("", "not a url") is None
    assert label("http://user:secret@vlm:8000/metrics?token=x") == "http://vlm:8000/metrics"  # pragma: allowlist secret


def test_the_watcher_reads_the_stand_in_and_notices_when_it_cannot() -> None:
    readings: list[tuple[float, float]] = []
    with VlmStandin(reply="x", capacity=2, metrics=True) as server:
        url = server.url.removesuffix("/v1") + "/metrics"
        watcher = QueueWatcher(url, lambda r, w: readings.append((r, w)), lambda: True, lambda: "token")
        with httpx.Client(timeout=5) as http:
            assert watcher.read_once(http) and watcher.available
            assert readings == [(0.0, 0.0)]
            server.metrics = False  # a gateway without the endpoint: 404
            assert not watcher.read_once(http) and watcher.available is False
            server.stop()
            assert not watcher.read_once(http)
    assert readings == [(0.0, 0.0)]


def test_page_buffers_are_kept_for_reuse() -> None:
    from PIL import _imaging

    reuse_page_buffers()
    assert _imaging.get_blocks_max() >= PIL_BLOCKS
    assert all(isinstance(line, str) for line in reuse_page_buffers())
