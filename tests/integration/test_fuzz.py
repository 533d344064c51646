"""Schemathesis (its CLI, as an operator would run it) against the running service's OpenAPI schema:
no 5xx and no hang on generated requests, and the service is still healthy afterwards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_schemathesis_finds_no_server_errors(service: ServiceProcess, tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("schemathesis")
    command = [
        str(cli), "run", service.url + "/openapi.json",
        "--checks", "not_a_server_error",
        "--max-examples", "10",
        "--seed", "20261123",
        "--request-timeout", "60",
        "--phases", "examples,coverage,fuzzing",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-4000:]
    assert "/ocr" in output and "/jobs" in output  # the operations were really exercised
    assert httpx.get(service.url + "/health", timeout=5).json()["status"] == "healthy"
