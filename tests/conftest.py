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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules with the most ``slow`` tests run first (the order within a module is kept). ``make test`` spreads
    whole modules over two pytest-xdist workers (``--dist loadfile``): a long module handed out last would keep one
    worker busy long after the other has run out of work."""
    slow: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        slow[module] = slow.get(module, 0) + (item.get_closest_marker("slow") is not None)
    items.sort(key=lambda item: -slow[item.nodeid.split("::")[0]])


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
