"""Shared fixtures: one real service process for the integration tests that can share it."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import server as servers
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


#: How much of each service process's log a failed test's report shows.
LOG_LINES_ON_FAILURE = 80


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Service processes started by a test are the ones its failure report shows the logs of."""
    servers.STARTED.clear()
    try:
        return (yield)
    finally:
        servers.STARTED.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report ends with the last lines of each service process it started (a replica's own account
    of what it did is what a flaky failure in CI is diagnosed from)."""
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for number, process in enumerate(servers.STARTED):
            tail = "\n".join(process.log().splitlines()[-LOG_LINES_ON_FAILURE:])
            report.sections.append((f"service process {number} ({process.url}), last lines", tail))
    return report


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
