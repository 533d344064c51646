"""A full or read-only OUTPUT_DIR on a real (tmpfs) disk: new work gets 507 with a clear code, /ready
turns 503, /health says why and stays fast, a write that fails mid-upload is a 507 that leaves no file,
and everything recovers when space or writability returns.

The tmpfs tests need to mount (see tests/support/disk.py) and are skipped with the reason where the
kernel refuses; the threshold test needs no mount and always runs.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.disk import fill, mount_unavailable, set_read_only, small_disk
from tests.support.documents import text_pdf
from tests.support.faults import HealthProbe
from tests.support.server import ServiceProcess, wait_for

pytestmark = pytest.mark.integration

ENV = {"OCR_CPU_ENGINES": "tesseract", "DISK_CHECK_INTERVAL_S": "0.2", "DISK_MIN_FREE_MB": "4"}
PDF = text_pdf(1)
needs_mount = pytest.mark.skipif(mount_unavailable() is not None, reason=str(mount_unavailable()))


def refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 507, response.text
    assert response.json()["error"]["code"] == code
    assert int(response.headers["retry-after"]) > 0


def wait_ready(client: httpx.Client, status: int) -> dict[str, Any]:
    answer: httpx.Response = wait_for(
        lambda: (r := client.get("/ready")).status_code == status and r, 10, f"/ready {status}"
    )
    body: dict[str, Any] = answer.json()
    return body


def assert_clean(server: ServiceProcess, log_from: int) -> None:
    assert list((server.output_dir / ".incoming").iterdir()) == []
    log = server.log()[log_from:]
    assert "Traceback" not in log and " ERROR " not in log and "status=500" not in log, log[-3000:]


@pytest.fixture(scope="module")
def on_small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    if mount_unavailable():
        pytest.skip(str(mount_unavailable()))
    tmp = tmp_path_factory.mktemp("disk")
    with small_disk(tmp / "output", 32), ServiceProcess(tmp, env=ENV) as server:
        server.wait_ready()
        yield server


@pytest.fixture
def client(on_small_disk: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=on_small_disk.url, timeout=60) as http:
        yield http
        wait_ready(http, 200)  # each test leaves the disk as it found it


@needs_mount
def test_low_space_refuses_new_work_and_turns_ready_503(on_small_disk: ServiceProcess, client: httpx.Client) -> None:
    log_from = len(on_small_disk.log())
    filler = fill(on_small_disk.output_dir, leave_bytes=2 * 1024 * 1024)
    try:
        with HealthProbe(on_small_disk.url) as probe:
            ready = wait_ready(client, 503)
            assert ready["ready"] is False and ready["disk"]["status"] == "low_space"
            assert "DISK_MIN_FREE_MB" in ready["disk"]["reason"] and ready["not_ready"] == [ready["disk"]["reason"]]
            health = client.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "healthy"  # the engine is fine
            refused(client.post("/ocr", files={"file": ("d.pdf", PDF)}), "disk_full")
            refused(client.post("/jobs", json={"file": base64.b64encode(PDF).decode()}), "disk_full")
            compat = client.post("/layout-parsing", json={"file": base64.b64encode(PDF).decode()})
            assert compat.status_code == 507 and compat.json()["errorCode"] == 507
            assert client.get("/jobs/" + "0" * 32).status_code == 404  # reading goes on
        assert probe.slowest_s < 1.0, probe.times
    finally:
        filler.unlink()
    wait_ready(client, 200)
    assert client.post("/ocr", files={"file": ("d.pdf", PDF)}).status_code == 200
    assert_clean(on_small_disk, log_from)


@needs_mount
@pytest.mark.parametrize("how", ["multipart", "base64"])
def test_disk_filling_up_during_an_upload_is_507_and_leaves_no_file(
    on_small_disk: ServiceProcess, client: httpx.Client, how: str
) -> None:
    """Above the threshold (6 MB free, DISK_MIN_FREE_MB=4) but too little for a 10 MB document: the write
    itself fails with ENOSPC."""
    log_from = len(on_small_disk.log())
    filler = fill(on_small_disk.output_dir, leave_bytes=6 * 1024 * 1024)
    try:
        wait_ready(client, 200)
        document = b"%PDF-1.7\n" + os.urandom(10 * 1024 * 1024)
        if how == "multipart":
            answer = client.post("/ocr", files={"file": ("big.pdf", document)})
        else:
            answer = client.post("/jobs", json={"file": base64.b64encode(document).decode()})
        refused(answer, "disk_full")
        assert "No space left" in answer.json()["error"]["message"]
    finally:
        filler.unlink()
    assert_clean(on_small_disk, log_from)


@needs_mount
def test_read_only_disk_refuses_new_work_until_writable(on_small_disk: ServiceProcess, client: httpx.Client) -> None:
    log_from = len(on_small_disk.log())
    set_read_only(on_small_disk.output_dir, True)
    try:
        with HealthProbe(on_small_disk.url) as probe:
            ready = wait_ready(client, 503)
            assert ready["disk"]["status"] == "not_writable" and "read-only" in ready["disk"]["reason"]
            refused(client.post("/ocr", files={"file": ("d.pdf", PDF)}), "disk_unwritable")
        assert probe.slowest_s < 1.0, probe.times
    finally:
        set_read_only(on_small_disk.output_dir, False)
    wait_ready(client, 200)
    answer = client.post("/ocr", files={"file": ("d.pdf", PDF)})
    assert answer.status_code == 200, answer.text
    assert_clean(on_small_disk, log_from)


@needs_mount
def test_start_on_a_read_only_output_dir_is_refused(tmp_path: Path) -> None:
    with small_disk(tmp_path / "output", 4):
        set_read_only(tmp_path / "output", True)
        server = ServiceProcess(tmp_path, env=ENV).start()
        assert server.process is not None
        try:
            code = server.process.wait(30)
        finally:
            server.stop()
    assert code == 2
    assert "is not writable (Read-only file system)" in server.log()


@needs_mount
def test_start_on_a_full_disk_serves_health_but_is_not_ready(tmp_path: Path) -> None:
    with small_disk(tmp_path / "output", 4):
        (tmp_path / "output" / ".incoming").mkdir()
        fill(tmp_path / "output", leave_bytes=0)
        with ServiceProcess(tmp_path, env=ENV) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            health = server.wait_ready()
            assert health["ready"] is False and health["disk"]["status"] == "low_space"
            assert client.get("/ready").status_code == 503
            refused(client.post("/ocr", files={"file": ("d.pdf", PDF)}), "disk_full")


def test_free_space_below_the_threshold_without_a_mount(tmp_path: Path) -> None:
    """DISK_MIN_FREE_MB above what the test folder's real disk has (statvfs as it is): not ready, 507."""
    env = {**ENV, "DISK_MIN_FREE_MB": str(1 << 40)}  # 1 EiB
    with ServiceProcess(tmp_path, env=env) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        health = server.wait_ready()
        assert health["status"] == "healthy" and health["ready"] is False
        assert health["disk"]["status"] == "low_space" and health["disk"]["free_mb"] > 0
        began = time.perf_counter()
        refused(client.post("/ocr", files={"file": ("d.pdf", PDF)}), "disk_full")
        assert time.perf_counter() - began < 2  # answered before the body is processed
        assert client.get("/ready").status_code == 503
        assert list((server.output_dir / ".incoming").iterdir()) == []
