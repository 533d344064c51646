"""What the client programs print names the product a reader deploys: the service runs as a Docker RUN (a Model RUN
is only the optional VLM server), and its address is ``https://<docker_run_id>.modelrun.inference.cloud.ru``."""

from __future__ import annotations

import argparse
import subprocess
import sys

import httpx

from app.client.settings import ClientSettings
from scripts.check_deployment import DeploymentCheck
from tests.support.server import ROOT


def test_check_deployment_help_names_the_docker_run() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_deployment.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "Check a deployment (a Cloud.ru Docker RUN or any URL)" in result.stdout
    assert "<docker_run_id>.modelrun.inference.cloud.ru" in result.stdout
    assert "<model_run_id>" not in result.stdout
    assert ".venv-client/bin/python scripts/check_deployment.py" in result.stdout


def test_a_missing_address_is_asked_for_as_the_docker_runs() -> None:
    problems = ClientSettings(_env_file=None, cloud_ru_inference_url="").problems()  # type: ignore[call-arg]
    [missing] = [problem for problem in problems if problem.startswith("CLOUD_RU_INFERENCE_URL")]
    assert "https://<docker_run_id>.modelrun.inference.cloud.ru" in missing


def test_the_platforms_refusal_names_the_docker_run() -> None:
    settings = ClientSettings(_env_file=None, cloud_ru_inference_url="https://x.example")  # type: ignore[call-arg]
    check = DeploymentCheck(settings, argparse.Namespace(timeout=5))
    hint = check._auth_hint(httpx.Response(401, text="Unauthorized"))
    assert hint.endswith("that the service account may call this Docker RUN")
    own = check._auth_hint(httpx.Response(401, json={"error": {"code": "unauthorized", "message": "x"}}))
    assert "SERVICE_API_KEY" in own
