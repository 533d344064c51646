"""The adaptive VLM limit across restarts and replicas, in the real service: its memory on the local disk and in a
real bucket (SeaweedFS), two replicas sharing one stand-in VLM server, and the server's queue (its /metrics) as the
signal. The pipeline is the real PaddleOCR-VL one (CPU, layout detection off); only the GPU model is a stand-in.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.engines.paddleocr_vl.memory import BucketMemory, Snapshot, server_key
from app.settings import Settings
from app.storage.s3.objects import S3Objects
from tests.support.documents import ENGLISH_LINES, image_bytes, render_page
from tests.support.s3server import S3Server
from tests.support.server import ServiceProcess, wait_for
from tests.support.vlm_standin import VlmStandin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAGE = image_bytes(render_page(ENGLISH_LINES[:2], size=(800, 160), top=30), "PNG")


def vl_env(standin: VlmStandin, **extra: str) -> dict[str, str]:
    """The engine on the stand-in with the defaults of the limit (``auto``)."""
    return {
        "OCR_ENGINE": "paddleocr-vl",
        "VL_BACKEND": "vllm-server",
        "VL_SERVER_URL": standin.url,
        "VL_USE_LAYOUT_DETECTION": "false",
        "VL_REQUEST_TIMEOUT_S": "30",
        **extra,
    }


def concurrency(service: ServiceProcess) -> dict[str, Any]:
    health = service.health()
    assert health is not None
    state: dict[str, Any] = health["engine"]["vlm"]["concurrency"]
    return state


def load(url: str, clients: int, seconds: float) -> int:
    """``clients`` closed-loop clients for ``seconds``: pages answered (every answer must be a 200)."""
    deadline = time.monotonic() + seconds

    def client() -> int:
        done = 0
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < deadline:
                response = http.post("/ocr", files={"file": ("page.png", PAGE)})
                assert response.status_code == 200, response.text
                done += 1
        return done

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(lambda _: client(), range(clients)))


@pytest.fixture(scope="module")
def standin() -> Iterator[VlmStandin]:
    with VlmStandin(reply="stand-in text", capacity=8, metrics=True) as server:
        server.delay_s = 0.4
        yield server


def test_a_restarted_service_starts_from_the_limit_it_learned(tmp_path: Path, standin: VlmStandin) -> None:
    """The limit is kept under OUTPUT_DIR/.engines when S3 is off: a snapshot there (as a previous run leaves it) is
    where the next start begins; the server's queue, readable at /metrics, is the signal."""
    service = ServiceProcess(tmp_path, env=vl_env(standin))
    folder = service.output_dir / ".engines" / "vlm" / "limits" / server_key(standin.url.rstrip("/"))
    folder.mkdir(parents=True)
    previous = Snapshot("local", time.time() - 600, "left", 40.0, 40.0, 0.4, False, 0, 40.0, 40.0, time.time() - 700)
    (folder / "local.json").write_bytes(previous.to_json())
    with service:
        service.wait_ready(timeout=240)
        assert concurrency(service)["limit"] == 40
        assert "the VLM request limit starts at 40 (learned; 0 other replica(s) active)" in service.log()
        assert load(service.url, 4, 3) > 0
        state = wait_for(lambda: (s := concurrency(service))["signal"] == "queue" and s, 10, "the queue signal")
        assert state["signal"] == "queue"
        assert "the VLM server's queue is read from http://127.0.0.1" in service.log()
        mine = json.loads((folder / "local.json").read_text())
        assert mine["state"] == "running" and mine["replica"] == "local" and "127.0.0.1" not in json.dumps(mine)
    assert json.loads((folder / "local.json").read_text())["state"] == "left"  # a clean stop says so


def test_without_server_metrics_latency_is_the_signal(tmp_path: Path) -> None:
    with VlmStandin(reply="stand-in text", capacity=8) as plain, ServiceProcess(tmp_path, env=vl_env(plain)) as service:
        plain.delay_s = 0.2
        service.wait_ready(timeout=240)
        assert load(service.url, 2, 2) > 0
        assert concurrency(service)["signal"] == "latency"
        assert "the VLM server's queue cannot be read at http://127.0.0.1" in service.log()
        assert "(HTTP 404): latency is the load signal" in service.log()


def test_the_memory_in_a_real_bucket(s3: S3Server) -> None:
    bucket = s3.new_bucket()
    settings = Settings(**{k.lower(): v for k, v in s3.service_env(bucket).items()})  # type: ignore[arg-type]
    objects = S3Objects(settings, [s3.secret_key], lambda described: None)
    memory = BucketMemory(objects, "ocr-results/vlm/limits/abc")
    assert memory.load() == []
    now = time.time()
    one = Snapshot("replica-a", now, "running", 12.0, None, 0.5, True, 12, 24.0)
    memory.save(one)
    memory.save(Snapshot("replica-b", now - 30 * 86400, "left", 12.0, None, 0.5, False, 0, 24.0))  # a month old
    assert memory.load() == [one]
    keys = objects.keys("ocr-results/")
    assert keys == ["ocr-results/vlm/limits/abc/replica-a.json"]  # the old one was deleted by the reader


def test_two_replicas_share_one_vlm_server(s3: S3Server, tmp_path: Path) -> None:
    """Two replicas on one bucket and one stand-in (8 at once, no metrics: latency is the signal): each publishes
    under <prefix>/vlm/limits/<server>/, sees the other, and they get comparable pages/s."""
    bucket = s3.new_bucket()
    with VlmStandin(reply="stand-in text", capacity=8) as shared:
        shared.delay_s = 0.4
        env = s3.service_env(bucket, CLOUDRU_S3_PREFIX="fleet", VL_LIMIT_SYNC_S="0.5", **vl_env(shared))
        replicas = []
        for index in range(2):
            folder = tmp_path / f"replica-{index}"
            folder.mkdir()
            replicas.append(ServiceProcess(folder, env={**env, "REPLICA_ID": f"replica-{index}"}).start())
        try:
            for replica in replicas:
                replica.wait_ready(timeout=300)
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                done = list(pool.map(lambda r: load(r.url, 8, 12), replicas))
            assert min(done) >= 0.6 * max(done), done  # neither replica starved
            assert shared.peak_waiting <= 24  # the limits together stayed near the server's 8
            objects = s3.client().list_objects_v2(Bucket=bucket, Prefix="fleet/vlm/limits/")
            names = sorted(item["Key"].rsplit("/", 1)[-1] for item in objects.get("Contents", []))
            assert names == ["replica-0.json", "replica-1.json"]
            assert any("1 other replica(s) active" in r.log() for r in replicas)
        finally:
            for replica in replicas:
                replica.stop()
