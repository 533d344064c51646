"""A full or read-only OUTPUT_DIR on a real (tmpfs) disk: new work gets 507 with a clear code, /ready
turns 503, /health says why and stays fast, a write that fails mid-upload is a 507 that leaves no file,
and everything recovers when space or writability returns.

The tmpfs tests need to mount (see tests/support/disk.py) and are skipped with the reason where the
kernel refuses; the threshold test needs no mount and always runs.
"""

from __future__ import annotations

import base64
import contextlib
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


@needs_mount
def test_a_job_whose_disk_fills_up_waits_says_why_and_finishes_when_space_returns(
    on_small_disk: ServiceProcess, client: httpx.Client
) -> None:
    """The disk fills while a job runs: the page that cannot be stored is not lost or failed; the job's status says
    what happened, and the job finishes with every page once space returns."""
    log_from = len(on_small_disk.log())
    job = client.post("/jobs", files={"file": ("d.pdf", text_pdf(8))}, data={"dpi": "75"}).json()
    wait_for(lambda: client.get(f"/jobs/{job['id']}").json()["pages_done"] >= 2, 60, "2 pages")
    filler = on_small_disk.output_dir / "filler.bin"
    with contextlib.suppress(OSError):  # the job's own writes took the last blocks first: as full as it gets
        fill(on_small_disk.output_dir, leave_bytes=0)
    try:
        stuck: dict[str, Any] = wait_for(
            lambda: (s := client.get(f"/jobs/{job['id']}").json())["waiting"] and s, 60, "the job to say it waits"
        )
        assert stuck["status"] == "running" and "could not be stored" in stuck["waiting"]
        assert "full" in stuck["waiting"] or "DISK_MIN_FREE_MB" in stuck["waiting"]
        done = stuck["pages_done"]
        time.sleep(1.0)
        assert client.get(f"/jobs/{job['id']}").json()["pages_done"] == done  # it waits, it does not skip pages
        assert wait_ready(client, 503)["disk"]["status"] in ("low_space", "not_writable")
    finally:
        filler.unlink()
    final = wait_for(
        lambda: (s := client.get(f"/jobs/{job['id']}").json())["status"] != "running" and s, 120, "the job to end"
    )
    assert final["status"] == "succeeded" and final["waiting"] is None and final["failed_pages"] == []
    result = client.get(f"/jobs/{job['id']}/result").json()
    assert [p["index"] for p in result["pages"]] == list(range(1, 9)) and all(p["text"] for p in result["pages"])
    assert "stored after" in on_small_disk.log()[log_from:]
    assert_clean(on_small_disk, log_from)


@needs_mount
def test_low_space_frees_the_oldest_finished_documents_first(
    on_small_disk: ServiceProcess, client: httpx.Client
) -> None:
    """Documents kept for page images (KEEP_JOB_INPUTS) are what a replica can spare: under pressure the oldest go
    first, logged, until there is room again."""
    log_from = len(on_small_disk.log())
    bulky = text_pdf(1) + b"\n%" + os.urandom(2 * 1024 * 1024)  # a 2 MB PDF (the tail after %%EOF is ignored)
    ids = []
    for _ in range(4):
        answer = client.post("/ocr", files={"file": ("d.pdf", bulky)}, data={"dpi": "75"})
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["id"])
        time.sleep(0.01)  # distinct finishing times
    filler = fill(on_small_disk.output_dir, leave_bytes=int(3.5 * 1024 * 1024))  # below DISK_MIN_FREE_MB=4
    try:
        wait_for(lambda: "retention: disk short of space" in on_small_disk.log()[log_from:], 30, "the clean-up")
        wait_ready(client, 200)  # room again, with the filler still there
        kept = [client.get(f"/jobs/{job_id}/pages/1/image").status_code for job_id in ids]
        assert kept == [410, 410, 410, 200], kept  # the three oldest went, the newest stays
        assert all(client.get(f"/jobs/{job_id}/result").status_code == 200 for job_id in ids)  # results stay
    finally:
        filler.unlink()
    assert_clean(on_small_disk, log_from)
