"""paddleocr-vl on a VLM server behind Cloud.ru IAM, in the real service: the IAM stand-in issues tokens that
expire after 2 s (the documented exchange), the VLM stand-in accepts only live ones (like a Model RUN with
authentication on). A job that outlives several tokens loses no page; a wrong secret fails clearly, once."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.cloud import IAM_PATH, IamState, iam_app
from tests.support.documents import cer, pdf_bytes, render_page
from tests.support.server import ServiceProcess, ThreadServer, wait_for
from tests.support.vlm_standin import VlmStandin

pytestmark = pytest.mark.integration

KEY_ID = "vlm-sa-key-id"
SECRET = "vlm-sa-secret-93c1e"  # pragma: allowlist secret
TTL_S = 2.0


@dataclass
class Cloud:
    iam: IamState
    iam_url: str
    vlm: VlmStandin

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "OCR_ENGINE": "paddleocr-vl",
            "VL_BACKEND": "vllm-server",
            "VL_SERVER_URL": self.vlm.url,
            "VL_IAM_KEY_ID": KEY_ID,
            "VL_IAM_SECRET": SECRET,
            "VL_IAM_URL": self.iam_url,
            "VL_USE_LAYOUT_DETECTION": "false",
            "VL_REQUEST_TIMEOUT_S": "120",  # the machine may be busy: this test is about tokens
            # At most 4 requests at once (auto from 4, not from 16): a job's requests are then sent over its whole
            # time, under several tokens, rather than all at its start under one.
            "VL_AUTO_CONCURRENCY_MAX": "4",
            **extra,
        }


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    iam = IamState(KEY_ID, SECRET, ttl_s=TTL_S)
    # The model name vLLM serves by default; VL_MODEL_NAME stays empty, so the service must ask for it.
    vlm = VlmStandin(model_id="PaddlePaddle/PaddleOCR-VL", authorize=iam.valid, capacity=2)
    with ThreadServer(iam_app(iam)) as iam_server, vlm:
        yield Cloud(iam, iam_server.url + IAM_PATH, vlm)


def page(number: int) -> list[str]:
    return [f"Page {number} under a token that expires", f"every two seconds, line {number * 7}"]


def test_a_job_outliving_several_tokens_loses_no_page(cloud: Cloud, tmp_path: Path) -> None:
    cloud.vlm.delay_s = 0.5  # with 2 at once, 16 pages take 4 s and more: two tokens' lives at least
    pages = 16
    pdf = pdf_bytes([render_page(page(n), size=(900, 170), top=30) for n in range(1, pages + 1)])
    with ServiceProcess(tmp_path, env=cloud.env()) as service, httpx.Client(base_url=service.url, timeout=60) as http:
        health = service.wait_ready(timeout=240)
        vlm = health["engine"]["vlm"]
        assert vlm["model"] == "PaddlePaddle/PaddleOCR-VL" and vlm["models_offered"] == ["PaddlePaddle/PaddleOCR-VL"]
        assert vlm["auth"]["mode"] == "iam" and vlm["auth"]["valid_until"] and vlm["auth"]["last_error"] is None
        assert vlm["concurrency"]["mode"] == "auto"
        issued_before = cloud.iam.issued
        began = time.monotonic()
        job = http.post("/jobs", files={"file": ("doc.pdf", pdf)}, data={"dpi": "100"}).json()
        final = wait_for(
            lambda: (s := http.get(job["status_url"]).json())["status"] in ("succeeded", "failed") and s,
            180,
            "the job",
            interval=0.2,
        )
        took = time.monotonic() - began
        errors = [p["error"] for p in http.get(job["result_url"]).json()["pages"] if p["error"]]
        assert final["status"] == "succeeded" and final["failed_pages"] == [], (errors, service.log()[-3000:])
        result = http.get(job["result_url"]).json()
        for number, result_page in enumerate(result["pages"], 1):
            assert result_page["error"] is None
            assert cer("\n".join(page(number)), result_page["text"]) <= 0.05, result_page["text"]
        issued = cloud.iam.issued - issued_before
        assert took > 2 * TTL_S and issued >= 2, (took, issued)  # the job outlived tokens, which were renewed
        auth = http.get("/health").json()["engine"]["vlm"]["auth"]
        assert auth["renewals"] >= issued and auth["last_error"] is None
        metrics = http.get("/metrics").text
        for series in ("vlm_concurrency_limit", "vlm_requests_in_flight", "vlm_request_duration_seconds_bucket"):
            assert re.search(rf'^{series}{{.*engine="paddleocr-vl"', metrics, re.MULTILINE), series
        renewals = re.search(r'^vlm_token_renewals_total\{engine="paddleocr-vl"\} (\d+)', metrics, re.MULTILINE)
        assert renewals is not None and int(float(renewals.group(1))) >= issued
        exposed = http.get("/health").text + metrics + service.log()
    assert SECRET not in exposed
    assert not any(token in exposed for token in cloud.iam.tokens), "an IAM token was logged or shown"
    print(f"job of {pages} pages took {took:.1f} s; {issued} tokens; {cloud.vlm.rejected} 401s from the VLM")


def test_a_wrong_secret_fails_clearly_without_a_retry_storm(cloud: Cloud, tmp_path: Path) -> None:
    wrong = "not-the-secret-0000"  # pragma: allowlist secret
    requests = cloud.iam.requests
    with ServiceProcess(tmp_path, env=cloud.env(VL_IAM_SECRET=wrong)) as service:
        service.wait_up()

        def failed() -> dict | None:  # type: ignore[type-arg]
            health = service.health()
            return health if health and health["status"] == "unhealthy" else None

        health = wait_for(failed, 120, "the engine to fail", interval=0.2)
        time.sleep(3)  # nothing keeps asking IAM
        assert cloud.iam.requests - requests == 1
        error = health["engine"]["error"]
        assert "IAM refused the key pair (HTTP 401)" in error and "VL_IAM_SECRET" in error
        assert health["engine"]["vlm"]["auth"]["last_error"] == error
        assert wrong not in service.log() and wrong not in str(health)
