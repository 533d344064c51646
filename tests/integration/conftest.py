"""Fixtures shared by the integration tests that need S3: one SeaweedFS (over TLS) per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.s3server import S3Server


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server
