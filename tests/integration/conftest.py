"""Fixtures shared by the integration tests that need S3: one SeaweedFS (over TLS) per test module, and a fleet of
replicas on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fleet import Fleet
from tests.support.s3server import S3Server


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def fleet(s3: S3Server, tmp_path: Path) -> Iterator[Fleet]:
    """Replicas on a new bucket of the module's S3 server (killed at the end)."""
    group = Fleet(s3, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
