"""scripts/check_deployment.py as a subprocess against the real service behind stand-ins of the Cloud.ru
IAM token service and the platform's gateway (which checks the IAM token), with the service's API_KEY on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cloud import IAM_PATH, GatewayState, IamState, gateway_app, iam_app
from tests.support.server import ROOT, ServiceProcess, ThreadServer
from tests.support.vlm_standin import VlmStandin

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "scripts" / "check_deployment.py"
KEY_ID = "test-iam-key-id"
IAM_SECRET = "test-iam-secret-0123456789"  # pragma: allowlist secret
SERVICE_KEY = "test-service-api-key-42"  # pragma: allowlist secret
STEPS = ["config", "reachability", "token", "authenticated", "health", "ready", "ocr", "job", "latency"]
CLIENT_VARIABLES = ("CLOUD_RU_", "SERVICE_API_KEY")


@dataclass
class Cloud:
    service: ServiceProcess
    iam: IamState
    iam_url: str
    gateway: GatewayState
    gateway_url: str

    def platform_env(self, **extra: str) -> dict[str, str]:
        return {
            "CLOUD_RU_INFERENCE_URL": self.gateway_url,
            "CLOUD_RU_IAM_URL": self.iam_url,
            "CLOUD_RU_IAM_KEY_ID": KEY_ID,
            "CLOUD_RU_IAM_SECRET": IAM_SECRET,
            "SERVICE_API_KEY": SERVICE_KEY,
            **extra,
        }


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with ServiceProcess(tmp_path_factory.mktemp("check"), env={"API_KEY": SERVICE_KEY}) as service:
        service.wait_ready()
        iam = IamState(KEY_ID, IAM_SECRET, ttl_s=600)
        gateway = GatewayState(iam, service.url)
        with ThreadServer(iam_app(iam)) as iam_server, ThreadServer(gateway_app(gateway)) as gateway_server:
            yield Cloud(service, iam, iam_server.url + IAM_PATH, gateway, gateway_server.url)


@dataclass
class Run:
    returncode: int
    output: str
    report: dict[str, Any]
    report_text: str

    def step(self, name: str) -> dict[str, Any]:
        return next(step for step in self.report["steps"] if step["name"] == name)

    def statuses(self) -> dict[str, str]:
        return {step["name"]: step["status"] for step in self.report["steps"]}


def check(cwd: Path, env: dict[str, str], *args: str) -> Run:
    """Run the script in ``cwd`` (where a ``.env`` may lie) with only ``env`` as client configuration."""
    base = {key: value for key, value in os.environ.items() if not key.startswith(CLIENT_VARIABLES)}
    report = cwd / "report.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--report", str(report), "--ready-timeout", "20", "--timeout", "60", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    text = report.read_text(encoding="utf-8")
    return Run(result.returncode, result.stdout + result.stderr, json.loads(text), text)


def assert_no_secrets(run: Run, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in run.output and secret not in run.report_text


def test_every_step_passes_behind_the_platform_gateway(cloud: Cloud, tmp_path: Path) -> None:
    issued, forwarded = cloud.iam.issued, cloud.gateway.forwarded
    run = check(tmp_path, cloud.platform_env())
    assert run.returncode == 0, run.output
    assert run.report["passed"] is True
    assert run.statuses() == dict.fromkeys(STEPS, "pass")
    assert run.step("reachability")["details"]["platform_auth"] is True
    assert run.step("token")["details"]["expires_in"] == 600
    assert cloud.iam.issued == issued + 1  # one exchange, reused for every request
    assert cloud.gateway.forwarded > forwarded
    assert run.step("authenticated")["details"]["engine"]["name"] == "tesseract"
    assert run.step("ocr")["details"]["cer"] <= 0.1
    job = run.step("job")["details"]
    assert job["statuses"][-1] == "succeeded" and job["cer"] <= 0.1
    assert run.step("latency")["details"]["samples"] == 10
    assert "RESULT: PASS" in run.output
    config = run.step("config")["details"]
    assert config["CLOUD_RU_IAM_SECRET"] == f"***({len(IAM_SECRET)} chars)"
    assert config["SERVICE_API_KEY"] == f"***({len(SERVICE_KEY)} chars)"
    assert_no_secrets(run, IAM_SECRET, SERVICE_KEY)


def test_a_wrong_iam_secret_fails_clearly(cloud: Cloud, tmp_path: Path) -> None:
    wrong = "not-the-secret-9876543210"  # pragma: allowlist secret
    refused = cloud.iam.refused
    run = check(tmp_path, cloud.platform_env(CLOUD_RU_IAM_SECRET=wrong))
    assert run.returncode == 1
    assert run.report["passed"] is False
    statuses = run.statuses()
    assert statuses["token"] == "fail"
    assert all(statuses[name] == "skip" for name in STEPS[STEPS.index("token") + 1 :])
    message = run.step("token")["message"]
    assert "HTTP 401" in message and "CLOUD_RU_IAM_SECRET" in message
    assert "RESULT: FAIL (token)" in run.output
    assert cloud.iam.refused == refused + 1
    assert_no_secrets(run, wrong, SERVICE_KEY)


def test_a_wrong_service_key_fails_at_the_service(cloud: Cloud, tmp_path: Path) -> None:
    run = check(tmp_path, cloud.platform_env(SERVICE_API_KEY="wrong-service-key"))
    assert run.returncode == 1
    assert run.statuses()["token"] == "pass" and run.statuses()["authenticated"] == "fail"
    assert "SERVICE_API_KEY" in run.step("authenticated")["message"]


def test_a_ready_token_from_dotenv(cloud: Cloud, tmp_path: Path) -> None:
    token = httpx.post(cloud.iam_url, json={"keyId": KEY_ID, "secret": IAM_SECRET}).json()["access_token"]
    (tmp_path / ".env").write_text(
        f"CLOUD_RU_INFERENCE_URL={cloud.gateway_url}\nCLOUD_RU_TOKEN={token}\nSERVICE_API_KEY={SERVICE_KEY}\n"
    )
    run = check(tmp_path, {})
    assert run.returncode == 0, run.output
    assert run.step("config")["details"]["auth_mode"] == "token"
    assert_no_secrets(run, token, SERVICE_KEY)

    # A token the platform does not know: refused by the gateway, with the platform named in the hint.
    (tmp_path / ".env").write_text(
        f"CLOUD_RU_INFERENCE_URL={cloud.gateway_url}\nCLOUD_RU_TOKEN=expired-or-forged\nSERVICE_API_KEY={SERVICE_KEY}\n"
    )
    run = check(tmp_path, {})
    assert run.returncode == 1
    assert run.statuses()["authenticated"] == "fail"
    assert "platform refused the token" in run.step("authenticated")["message"]


def test_service_key_alone_without_the_platform(cloud: Cloud, tmp_path: Path) -> None:
    env = {"CLOUD_RU_INFERENCE_URL": cloud.service.url, "SERVICE_API_KEY": SERVICE_KEY}
    run = check(tmp_path, env, "--health-samples", "3")
    assert run.returncode == 0, run.output
    details = run.step("reachability")["details"]
    assert details["platform_auth"] is False and details["service_api_key"] is True
    assert run.statuses()["token"] == "skip"

    run = check(tmp_path, {"CLOUD_RU_INFERENCE_URL": cloud.service.url})
    assert run.returncode == 1
    assert "set SERVICE_API_KEY" in run.step("authenticated")["message"]


def test_no_credentials_for_a_platform_that_wants_them(cloud: Cloud, tmp_path: Path) -> None:
    run = check(tmp_path, {"CLOUD_RU_INFERENCE_URL": cloud.gateway_url})
    assert run.returncode == 1
    assert run.statuses()["token"] == "fail"
    assert "CLOUD_RU_IAM_KEY_ID" in run.step("token")["message"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "CLOUD_RU_INFERENCE_URL is not set"),
        ({"CLOUD_RU_INFERENCE_URL": "ftp://x"}, "must start with http"),
        ({"CLOUD_RU_INFERENCE_URL": "http://127.0.0.1:9", "CLOUD_RU_IAM_KEY_ID": "k"}, "CLOUD_RU_IAM_SECRET"),
    ],
)
def test_bad_configuration_stops_at_the_first_step(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    run = check(tmp_path, env)
    assert run.returncode == 1
    assert run.statuses() == {"config": "fail", **dict.fromkeys(STEPS[1:], "skip")}
    assert expected in run.step("config")["message"]


def test_an_unreachable_deployment(tmp_path: Path) -> None:
    run = check(tmp_path, {"CLOUD_RU_INFERENCE_URL": "http://127.0.0.1:9"})
    assert run.returncode == 1
    assert run.statuses()["reachability"] == "fail"
    assert "ConnectError" in run.step("reachability")["message"]


# --- --vlm-url: the VLM server on its own -----------------------------------------------------------------

VLM_MODEL = "PaddlePaddle/PaddleOCR-VL"
VLM_STEPS = ["config", "token", "models", "completion", "timing"]


@dataclass
class VlmCloud:
    iam: IamState
    iam_url: str
    gateway_url: str  # a Model RUN with authentication on, in front of the VLM stand-in

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "CLOUD_RU_IAM_URL": self.iam_url,
            "CLOUD_RU_IAM_KEY_ID": KEY_ID,
            "CLOUD_RU_IAM_SECRET": IAM_SECRET,
            **extra,
        }


@pytest.fixture(scope="module")
def vlm_cloud() -> Iterator[VlmCloud]:
    iam = IamState(KEY_ID, IAM_SECRET, ttl_s=600)
    with VlmStandin(model_id=VLM_MODEL) as vlm:
        gateway = GatewayState(iam, vlm.url.removesuffix("/v1"))
        with ThreadServer(iam_app(iam)) as iam_server, ThreadServer(gateway_app(gateway)) as gateway_server:
            yield VlmCloud(iam, iam_server.url + IAM_PATH, gateway_server.url)


def test_the_vlm_server_alone_behind_the_platform_gateway(vlm_cloud: VlmCloud, tmp_path: Path) -> None:
    issued = vlm_cloud.iam.issued
    run = check(tmp_path, vlm_cloud.env(), "--vlm-url", vlm_cloud.gateway_url, "--vlm-samples", "2")
    assert run.returncode == 0, run.output
    assert run.statuses() == dict.fromkeys(VLM_STEPS, "pass")
    assert run.step("config")["details"]["vlm_url"] == vlm_cloud.gateway_url + "/v1"  # the OpenAI base URL
    assert run.step("models")["details"] == {"models": [VLM_MODEL], "model": VLM_MODEL}
    completion = run.step("completion")
    assert completion["details"]["cer"] <= 0.1 and completion["ms"] > 0  # the stand-in read the sample page
    timing = run.step("timing")["details"]
    assert 0 < timing["seconds_p50"] <= timing["seconds_max"]
    assert vlm_cloud.iam.issued == issued + 1
    assert "VLM server check:" in run.output and "RESULT: PASS" in run.output
    assert_no_secrets(run, IAM_SECRET)


def test_a_model_the_vlm_server_does_not_serve(vlm_cloud: VlmCloud, tmp_path: Path) -> None:
    args = ("--vlm-url", vlm_cloud.gateway_url + "/v1", "--vlm-model", "PaddleOCR-VL-0.9B")
    run = check(tmp_path, vlm_cloud.env(), *args)
    assert run.returncode == 1
    assert run.statuses() == {
        "config": "pass",
        "token": "pass",
        "models": "fail",
        "completion": "skip",
        "timing": "skip",
    }
    assert f"PaddleOCR-VL-0.9B is not served; the server offers: {VLM_MODEL}" in run.step("models")["message"]


def test_the_vlm_server_with_a_wrong_secret(vlm_cloud: VlmCloud, tmp_path: Path) -> None:
    wrong = vlm_cloud.env(CLOUD_RU_IAM_SECRET="wrong-secret-1")  # pragma: allowlist secret
    run = check(tmp_path, wrong, "--vlm-url", vlm_cloud.gateway_url)
    assert run.returncode == 1 and run.statuses()["token"] == "fail"
    assert "HTTP 401" in run.step("token")["message"]
    run = check(tmp_path, {}, "--vlm-url", vlm_cloud.gateway_url)  # no credential: the gateway refuses
    assert run.statuses()["token"] == "skip" and run.statuses()["models"] == "fail"
    assert "refused the credential" in run.step("models")["message"]
