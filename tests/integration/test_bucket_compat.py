"""A bucket written by the previous version (HEAD 9b179c6: leases with an expiry and no epoch, records and page
files whose errors carry an HTTP status) is read by this one: an unfinished job whose replica is gone is taken over
and finished, a finished job and a failed page answer as before."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.support.documents import cer, page_lines, text_pdf
from tests.support.fleet import LEASE_S, PREFIX, Fleet, finished
from tests.support.s3server import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUNNING = "a" * 32
DONE = "b" * 32


def old_record(job_id: str, status: str, pages: int, done: int, **extra: object) -> bytes:
    """``job.json`` as the previous version wrote it (no ``epoch``; an error with ``status``)."""
    record = {
        "id": job_id,
        "filename": "old.pdf",
        "content_type": "application/pdf",
        "page_count": pages,
        "pages": list(range(1, pages + 1)),
        "dpi": 75,
        "result_dir": f"2026-11-30/{job_id}",
        "engine": "pp-ocr",
        "languages": ["en"],
        "engine_reason": "engine=pp-ocr",
        "status": status,
        "created_at": "2026-11-30T10:00:00.000+00:00",
        "started_at": "2026-11-30T10:00:01.000+00:00",
        "finished_at": None,
        "error": None,
        "pages_done": done,
        "failed_pages": [],
        "s3_mirrored": False,
        "owner": "old-replica-1",
        "takeovers": 0,
        "keep_input": True,
        "export_name": None,
        "rag_export_key": None,
        "waiting": None,
        **extra,
    }
    return json.dumps(record).encode()


def old_lease(job_id: str) -> bytes:
    """A lease as the previous version wrote it: an expiry on its owner's clock (long past), no epoch or beat."""
    lease = {
        "job_id": job_id,
        "owner": "old-replica-1",
        "expires_at": time.time() - 3600,
        "takeovers": 0,
        "crashes": 0,
        "progress": 0,
        "running": True,
        "nonce": "0123456789abcdef",
    }
    return json.dumps(lease).encode()


def old_page(number: int, *, failed: bool = False) -> bytes:
    text = "" if failed else f"page {number} as read before"
    page = {
        "index": number,
        "width": 620,
        "height": 877,
        "rotation": 0,
        "blocks": [] if failed else [{"bbox": [10, 10, 300, 30], "text": text, "score": 0.99, "label": "text"}],
        "markdown": text,
        "text": text,
        "error": "page 2 took longer than 120 s" if failed else None,
    }
    body: dict[str, object] = {"page": page, "decode_ms": 1.0, "ocr_ms": 2.0}
    if failed:
        body["error"] = {"status": 504, "code": "page_timeout", "message": "page 2 took longer than 120 s"}
    return json.dumps(body).encode()


def test_a_bucket_of_the_previous_version_is_read(s3: S3Server, tmp_path: Path) -> None:
    fleet = Fleet(s3, tmp_path)
    client = s3.client()

    def put(key: str, body: bytes) -> None:
        client.put_object(Bucket=fleet.bucket, Key=f"{PREFIX}/{key}", Body=body)

    # An unfinished 4-page job: 2 pages done by a replica that is gone, its lease left to expire.
    put(f"jobs/{RUNNING}/job.json", old_record(RUNNING, "running", 4, 2))
    put(f"jobs/{RUNNING}/input", text_pdf(4))
    put(f"leases/{RUNNING}.json", old_lease(RUNNING))
    for number in (1, 2):
        put(f"jobs/{RUNNING}/pages/{number:05d}.json", old_page(number))
    # A job that ended before the upgrade with one failed page; its result was not mirrored.
    done = old_record(DONE, "failed", 2, 2, failed_pages=[2], finished_at="2026-11-30T10:00:05.000+00:00")
    raw = json.loads(done)
    raw["error"] = {"status": 504, "code": "page_timeout", "message": "page 2 took longer than 120 s"}
    put(f"jobs/{DONE}/job.json", json.dumps(raw).encode())
    put(f"jobs/{DONE}/pages/00002.json", old_page(2, failed=True))
    try:
        replica = fleet.start()
        final = finished(replica, RUNNING, timeout=4 * LEASE_S + 120)
        assert final["status"] == "succeeded" and final["takeovers"] == 1
        result = httpx.get(f"{replica.url}/jobs/{RUNNING}/result", timeout=30).json()
        assert [p["text"] for p in result["pages"][:2]] == ["page 1 as read before", "page 2 as read before"]
        assert [p["index"] for p in result["pages"]] == [1, 2, 3, 4]
        for page in result["pages"][2:]:  # read now, from the old document
            assert cer("\n".join(page_lines(page["index"])), page["text"]) <= 0.02
        assert fleet.record(RUNNING)["epoch"] == 1  # the old lease (epoch 0) was taken: epoch 1
        status = httpx.get(f"{replica.url}/jobs/{DONE}", timeout=30).json()
        assert status["status"] == "failed" and status["error"] == {
            "status": 504,
            "code": "page_timeout",
            "message": "page 2 took longer than 120 s",
        }
        answer = httpx.get(f"{replica.url}/jobs/{DONE}/result", timeout=30)
        assert answer.status_code == 504 and answer.json()["error"]["code"] == "page_timeout"
    finally:
        fleet.stop_all()
