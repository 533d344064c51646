"""API key, metrics, request logs, /version and CORS on a real server process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.documents import ENGLISH_LINES, image_bytes, render_page
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.integration

KEY = "test-key-" + "x" * 24


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {"API_KEY": KEY, "LOG_FORMAT": "json", "CORS_ORIGINS": "https://ocr.example.test"}
    with ServiceProcess(tmp_path_factory.mktemp("secured"), env=env) as server:
        server.wait_ready()
        yield server


def page() -> bytes:
    return image_bytes(render_page(ENGLISH_LINES[:2]), "PNG")


@pytest.mark.parametrize(
    "headers,status",
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Basic {KEY}"}, 401),
        ({"X-API-Key": KEY[:-1]}, 401),
        ({"Authorization": f"Bearer {KEY}"}, 200),
        ({"authorization": f"bearer {KEY}"}, 200),
        ({"X-API-Key": KEY}, 200),
    ],
)
def test_auth_matrix(secured: ServiceProcess, headers: dict[str, str], status: int) -> None:
    with httpx.Client(base_url=secured.url, timeout=60, headers=headers) as client:
        response = client.post("/ocr", files={"file": ("p.png", page())})
        assert response.status_code == status, response.text
        if status == 401:
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
            assert client.get("/jobs/0123456789abcdef0123456789abcdef").status_code == 401
            assert client.get("/openapi.json").status_code == 401
            assert client.get("/version").status_code == 401
        # Probes stay open whatever the headers.
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_metrics_change_with_requests(secured: ServiceProcess) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=secured.url, timeout=60, headers=auth) as client:

        def sample(name: str, **labels: str) -> float:
            for line in client.get("/metrics").text.splitlines():
                if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        before_ok = sample("http_requests_total", route="/ocr", status="200")
        before_pages = sample("ocr_pages_total", engine="tesseract", outcome="ok")
        before_bad = sample("http_requests_total", route="/ocr", status="415")
        assert client.post("/ocr", files={"file": ("p.png", page())}).status_code == 200
        assert client.post("/ocr", files={"file": ("p.txt", b"not a document")}).status_code == 415
        assert sample("http_requests_total", route="/ocr", status="200") == before_ok + 1
        assert sample("http_requests_total", route="/ocr", status="415") == before_bad + 1
        assert sample("ocr_pages_total", engine="tesseract", outcome="ok") == before_pages + 1
        text = client.get("/metrics").text
        for name in ("http_request_duration_seconds_bucket", "ocr_page_duration_seconds_count", "ocr_queue_pages",
                     "ocr_jobs_active", "ocr_engine_state", "ocr_jobs_finished_total"):  # fmt: skip
            assert name in text, name
        assert 'ocr_engine_state{engine="tesseract",state="ready"} 1.0' in text


def test_request_ids_in_json_logs_and_no_secret(secured: ServiceProcess) -> None:
    auth = {"Authorization": f"Bearer {KEY}", "X-Request-ID": "client-chosen-id-42"}
    with httpx.Client(base_url=secured.url, timeout=60) as client:
        response = client.post("/ocr", files={"file": ("p.png", page())}, headers=auth)
        assert response.headers["x-request-id"] == "client-chosen-id-42"
        generated = client.get("/health").headers["x-request-id"]
        assert len(generated) == 32
        unauthorized = client.get("/version", headers={"Authorization": "Bearer " + KEY + "-wrong"})
        assert unauthorized.status_code == 401 and KEY not in unauthorized.text
    lines = [json.loads(line) for line in secured.log().splitlines() if line.startswith("{")]
    requests = [entry for entry in lines if entry.get("request_id") == "client-chosen-id-42"]
    assert requests and requests[-1]["route"] == "/ocr" and requests[-1]["status"] == 200
    assert requests[-1]["pages"] == 1 and requests[-1]["engine"] == "tesseract"
    assert KEY not in secured.log()
    assert ENGLISH_LINES[0] not in secured.log()  # no document text at INFO


def test_version(secured: ServiceProcess) -> None:
    body = httpx.get(secured.url + "/version", headers={"X-API-Key": KEY}).json()
    assert body["engine"]["name"] == "tesseract"
    assert body["packages"]["rapidocr"] and body["service"]


def test_cors_only_for_configured_origins(secured: ServiceProcess) -> None:
    preflight = {"Origin": "https://ocr.example.test", "Access-Control-Request-Method": "POST"}
    allowed = httpx.options(secured.url + "/ocr", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://ocr.example.test"
    other = httpx.options(secured.url + "/ocr", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_cors_off_by_default(client: httpx.Client) -> None:
    response = client.options("/ocr", headers={"Origin": "https://x.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in response.headers
