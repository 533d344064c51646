"""The direct calls on the bucket (app/storage/s3/objects.py) against a real S3 server (SeaweedFS, which enforces
conditional writes): the primitives ownership state is written with, and recovery after an outage."""

from __future__ import annotations

import pytest

from app.settings import Settings
from app.storage.s3.errors import Conflict, S3Unavailable
from app.storage.s3.objects import S3Objects
from tests.support.s3server import S3Server

pytestmark = pytest.mark.integration


def objects_on(s3: S3Server, recovered: list[int] | None = None) -> S3Objects:
    bucket = s3.new_bucket()
    env = s3.service_env(bucket, CLOUDRU_S3_PREFIX="unit", S3_READ_TIMEOUT_S="5", S3_CONNECT_TIMEOUT_S="2")
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[call-arg]
    errors: list[dict[str, str]] = []
    return S3Objects(settings, [], errors.append, (lambda: recovered.append(1)) if recovered is not None else None)


def test_conditional_writes_hold_on_a_real_bucket(s3: S3Server) -> None:
    objects = objects_on(s3)
    assert objects.detect_conditions() == "enforced"
    key = objects.layout.lease("0" * 32)
    first = objects.put_if_absent(key, b"one")
    with pytest.raises(Conflict):
        objects.put_if_absent(key, b"two")  # exists
    second = objects.put_if_match(key, b"two", first)
    with pytest.raises(Conflict):
        objects.put_if_match(key, b"three", first)  # a version long gone
    with pytest.raises(Conflict):
        objects.delete_if_match(key, first)
    stored = objects.get(key)
    assert stored is not None and (stored.body, stored.etag) == (b"two", second)
    assert [(item.key, item.etag) for item in objects.listing(objects.layout.folder("leases"))] == [(key, second)]
    objects.delete_if_match(key, second)
    assert objects.get(key) is None
    with pytest.raises(Conflict):
        objects.put_if_match(key, b"four", second)  # gone


def test_without_enforced_conditions_they_are_checked_by_a_read(s3: S3Server) -> None:
    objects = objects_on(s3)
    objects.conditions = "not_enforced"  # as on a bucket that ignores the headers: the same answers, from reads
    key = objects.layout.lease("1" * 32)
    first = objects.put_if_absent(key, b"one")
    with pytest.raises(Conflict):
        objects.put_if_absent(key, b"two")
    with pytest.raises(Conflict):
        objects.put_if_match(key, b"two", "0" * 32)
    objects.delete_if_match(key, first)
    assert objects.get(key) is None


def test_a_failure_then_a_success_reports_the_recovery(s3: S3Server) -> None:
    """Any direct call that works after a failure tells the mirror at once (its uploads resume then)."""
    recovered: list[int] = []
    objects = objects_on(s3, recovered)
    objects.put("unit/probe", b"x")
    s3.stop()
    try:
        with pytest.raises(S3Unavailable):
            objects.get("unit/probe")
        assert objects.recent_failure(60) is not None and recovered == []
    finally:
        s3.start()
    assert objects.get("unit/probe") is not None
    assert recovered == [1]
    objects.get("unit/probe")
    assert recovered == [1]  # once per recovery
