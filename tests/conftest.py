"""Shared fixtures: one real service process for the integration tests that can share it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ROOT, ServiceProcess

# paddlex (imported by the paddleocr-vl tests, here and in the service processes they start) would
# probe model hosters at import and keep its cache in ~/.paddlex. The container's start.sh sets these.
os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
os.environ.setdefault("PADDLE_PDX_CACHE_HOME", str(ROOT / ".pytest_cache" / "paddlex"))


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """``python -m app`` with both CPU engines (tesseract serves English by default), ready."""
    with ServiceProcess(tmp_path_factory.mktemp("service")) as server:
        server.wait_ready()
        yield server


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=120) as http:
        yield http


@pytest.fixture
def output_dir(service: ServiceProcess) -> Path:
    return service.output_dir
