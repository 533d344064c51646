"""Async jobs through a real server process: progress, results, the sync fallback, limits, cancel, restarts."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.documents import cer, page_lines, text_pdf
from tests.support.server import ServiceProcess, page_log_counts, wait_for

pytestmark = pytest.mark.integration

# Small pages keep the suite fast: A4 at 75 dpi still reads cleanly with 14 pt text.
FAST = {"dpi": "75"}


def submit(client: httpx.Client, pages: int, **form: str) -> dict[str, Any]:
    response = client.post("/jobs", files={"file": ("doc.pdf", text_pdf(pages))}, data={**FAST, **form})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == body["status_url"] == f"/jobs/{body['id']}"
    assert body["result_url"] == f"/jobs/{body['id']}/result"
    return body


def poll_until_finished(client: httpx.Client, job_id: str, timeout: float = 240) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        status = client.get(f"/jobs/{job_id}").json()
        seen.append(status)
        return status["status"] in ("succeeded", "failed", "cancelled")

    wait_for(finished, timeout, f"job {job_id}", interval=0.2)
    return seen


def assert_pages_read(result: dict[str, Any], numbers: list[int]) -> None:
    assert [p["index"] for p in result["pages"]] == numbers
    for page in result["pages"]:
        assert cer("\n".join(page_lines(page["index"])), page["text"]) <= 0.02, page["text"]


@pytest.mark.slow
def test_forty_page_job(client: httpx.Client) -> None:
    job = submit(client, 40)
    seen = poll_until_finished(client, job["id"])
    statuses = [s["status"] for s in seen]
    order = ["queued", "running", "succeeded"]
    assert statuses == sorted(statuses, key=order.index), statuses  # never goes back
    done = [s["pages_done"] for s in seen]
    assert done == sorted(done) and done[-1] == 40
    assert all(s["pages_total"] == 40 for s in seen)
    final = seen[-1]
    assert final["started_at"] and final["finished_at"] and final["error"] is None
    result = client.get(job["result_url"])
    assert result.status_code == 200
    assert_pages_read(result.json(), list(range(1, 41)))
    markdown = client.get(job["result_url"], params={"output": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "Page 40 of the generated test document" in markdown.text


def test_unknown_job(client: httpx.Client) -> None:
    for path in ("/jobs/0123456789abcdef0123456789abcdef", "/jobs/../../etc/passwd", "/jobs/nope/result"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] in ("job_not_found", "not_found")
    assert client.delete("/jobs/0123456789abcdef0123456789abcdef").status_code == 404


def test_bad_documents_are_refused_before_a_job_exists(client: httpx.Client) -> None:
    response = client.post("/jobs", files={"file": ("x.pdf", b"%PDF-1.4 broken")})
    assert response.status_code == 422
    assert client.post("/jobs", files={"file": ("x.txt", b"hello")}).status_code == 415
    response = client.post("/jobs", files={"file": ("x.pdf", text_pdf(2))}, data={"pages": "5"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_pages"


@pytest.fixture(scope="module")
def small_queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # SYNC_TIMEOUT_S of a millisecond: no page is read that fast on any machine, so a synchronous request always
    # turns into a job here (its slowness is certain, not hoped for).
    env = {"SYNC_TIMEOUT_S": "0.001", "MAX_QUEUED_JOBS": "2", "MAX_QUEUED_PAGES": "40", "OCR_CONCURRENCY": "1"}
    with ServiceProcess(tmp_path_factory.mktemp("queue"), env=env) as server:
        server.wait_ready()
        yield server


def test_sync_call_turns_into_a_job(small_queue: ServiceProcess) -> None:
    with httpx.Client(base_url=small_queue.url, timeout=60) as client:
        began = time.monotonic()
        response = client.post("/ocr", files={"file": ("long.pdf", text_pdf(20))})
        assert response.status_code == 202, response.text
        assert time.monotonic() - began < 10
        body = response.json()
        assert response.headers["location"] == body["status_url"]
        assert client.get(body["result_url"]).status_code == 409  # not finished yet
        poll_until_finished(client, body["id"])
        assert_pages_read(client.get(body["result_url"]).json(), list(range(1, 21)))


def test_queue_full_and_cancel(small_queue: ServiceProcess) -> None:
    with httpx.Client(base_url=small_queue.url, timeout=60) as client:
        first = submit(client, 20, dpi="150")  # slow enough to be cancelled half-way
        second = submit(client, 5)
        refused = client.post("/jobs", files={"file": ("doc.pdf", text_pdf(1))}, data=FAST)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert refused.json()["error"]["code"] == "queue_full"
        wait_for(lambda: client.get(first["status_url"]).json()["pages_done"] >= 1, 60, "first page")
        cancelled = client.delete(first["status_url"])
        assert cancelled.status_code == 200
        final = poll_until_finished(client, first["id"])[-1]
        assert final["status"] == "cancelled" and final["pages_done"] < 20
        assert client.get(first["result_url"]).status_code == 409
        assert client.delete(first["status_url"]).status_code == 409  # already finished
        assert poll_until_finished(client, second["id"])[-1]["status"] == "succeeded"
        # Capacity is back.
        assert client.post("/jobs", files={"file": ("doc.pdf", text_pdf(1))}, data=FAST).status_code == 202


def start_job_and_stop(tmp_path: Path, env: dict[str, str], sig: int) -> tuple[ServiceProcess, dict[str, Any]]:
    """A server that accepts a 12-page job and is stopped with ``sig`` once 3 pages are done."""
    server = ServiceProcess(tmp_path, env=env).start()
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        job = submit(client, 12)
        wait_for(lambda: client.get(job["status_url"]).json()["pages_done"] >= 3, 90, "3 pages")
    server.stop(sig)
    return server, job


def finish_after_restart(tmp_path: Path, env: dict[str, str], job: dict[str, Any]) -> ServiceProcess:
    """A new server on the same OUTPUT_DIR resumes the job; every page comes back with its text."""
    server = ServiceProcess(tmp_path, env=env).start()
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert poll_until_finished(client, job["id"])[-1]["status"] == "succeeded"
        assert_pages_read(client.get(job["result_url"]).json(), list(range(1, 13)))
    server.stop()
    return server


@pytest.mark.slow
def test_sigterm_mid_job_then_resume(tmp_path: Path) -> None:
    env = {"OCR_CONCURRENCY": "1", "SHUTDOWN_GRACE_S": "20"}
    first, job = start_job_and_stop(tmp_path, env, signal.SIGTERM)
    assert first.process is not None and first.process.returncode == 0
    assert "paused" in first.log()
    second = finish_after_restart(tmp_path, env, job)
    counts = page_log_counts(first.log() + second.log(), job["id"])
    assert counts == dict.fromkeys(range(1, 13), 1), counts  # every page exactly once


@pytest.mark.slow
def test_sigkill_mid_job_loses_nothing_done(tmp_path: Path) -> None:
    env = {"OCR_CONCURRENCY": "1"}
    first, job = start_job_and_stop(tmp_path, env, signal.SIGKILL)
    pages_dir = first.output_dir / "jobs" / job["id"] / "pages"
    before = {p.name: p.stat().st_mtime_ns for p in pages_dir.glob("*.json")}
    assert len(before) >= 3
    second = finish_after_restart(tmp_path, env, job)
    after = {p.name: p.stat().st_mtime_ns for p in pages_dir.glob("*.json")}
    assert {name: after[name] for name in before} == before  # pages done before the kill were not redone
    assert len(after) == 12
    assert set(page_log_counts(second.log(), job["id"])).isdisjoint(int(name[:5]) for name in before)


def test_simultaneous_submissions_respect_the_limit(small_queue: ServiceProcess) -> None:
    """The capacity check holds under concurrency: MAX_QUEUED_JOBS=2, six submissions at once."""
    import concurrent.futures

    document = text_pdf(3)

    def post() -> httpx.Response:
        return httpx.post(small_queue.url + "/jobs", files={"file": ("d.pdf", document)}, data=FAST, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: post(), range(6)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(202) <= 2 and set(codes) <= {202, 429}, codes
    assert codes.count(202) >= 1
    with httpx.Client(base_url=small_queue.url, timeout=60) as client:
        for response in responses:
            if response.status_code == 202:
                poll_until_finished(client, response.json()["id"])


def test_layout_parsing_hands_over_to_a_job_after_the_sync_timeout(small_queue: ServiceProcess) -> None:
    """PaddleX clients cannot take a 202: past SYNC_TIMEOUT_S they get a 504 naming the job, which goes on."""
    import base64

    with httpx.Client(base_url=small_queue.url, timeout=60) as client:
        payload = {"file": base64.b64encode(text_pdf(35)).decode(), "fileType": 0, "visualize": False}
        response = client.post("/layout-parsing", json=payload)
        assert response.status_code == 504, response.text
        body = response.json()
        assert body["errorCode"] == 504 and "SYNC_TIMEOUT_S" in body["errorMsg"]
        job_id = re.search(r"job ([0-9a-f]{32})", body["errorMsg"]).group(1)  # type: ignore[union-attr]
        assert poll_until_finished(client, job_id)[-1]["status"] == "succeeded"
