"""A fleet of service replicas on one bucket, each with its own empty disk (as on Cloud.ru, where a replaced
container starts with nothing), and the job helpers the replica and ownership tests share. The chaos run
(scripts/chaos_replicas.py) keeps its slots of replicas on the same :class:`Fleet`."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import httpx

from tests.support.documents import cer, page_lines, text_pdf
from tests.support.s3server import S3Server
from tests.support.server import ServiceProcess, page_log_counts, wait_for

PREFIX = "replicas"
LEASE_S = 8


class Fleet:
    """Replicas of one deployment: same bucket and settings, each started with an empty OUTPUT_DIR."""

    def __init__(self, s3: S3Server, tmp: Path, *, bucket: str | None = None, prefix: str = PREFIX, **env: str) -> None:
        self.s3 = s3
        self.tmp = tmp
        self.prefix = prefix
        self.bucket = bucket or s3.new_bucket()
        defaults = {
            "CLOUDRU_S3_PREFIX": prefix,
            "JOB_LEASE_S": str(LEASE_S),
            "JOB_SCAN_INTERVAL_S": "1",
            "OCR_CONCURRENCY": "1",
            "SHUTDOWN_GRACE_S": "20",
            "S3_RETRY_MAX_S": "1",
        }
        self.env = s3.service_env(self.bucket, **{**defaults, **env})
        self.replicas: list[ServiceProcess] = []

    def start(self, ready: bool = True, name: str | None = None, **env: str) -> ServiceProcess:
        """A new replica with an empty disk (``name``: its ``REPLICA_ID`` and folder), ready unless ``ready`` is
        False."""
        folder = self.tmp / (name or f"replica-{len(self.replicas)}")
        folder.mkdir()
        named = {"REPLICA_ID": name} if name else {}
        replica = ServiceProcess(folder, env={**self.env, **named, **env}).start()
        self.replicas.append(replica)
        if ready:
            replica.wait_ready()
        return replica

    def logs(self) -> str:
        return "".join(r.log() for r in self.replicas)

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica.process is not None and replica.process.poll() is None:
                os.kill(replica.process.pid, signal.SIGCONT)  # a frozen one cannot be killed otherwise
            replica.stop(signal.SIGKILL)

    def record(self, job_id: str) -> dict[str, Any]:
        """The job's record in the bucket (what every replica that does not run it answers with)."""
        body = (
            self.s3.client().get_object(Bucket=self.bucket, Key=f"{self.prefix}/jobs/{job_id}/job.json")["Body"].read()
        )
        record: dict[str, Any] = json.loads(body)
        return record

    def lease(self, job_id: str) -> dict[str, Any] | None:
        """The job's lease; None once it has ended."""
        client = self.s3.client()
        try:
            body = client.get_object(Bucket=self.bucket, Key=f"{self.prefix}/leases/{job_id}.json")["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        lease: dict[str, Any] = json.loads(body)
        return lease


def freeze(replica: ServiceProcess) -> None:
    """SIGSTOP: the process stops where it is (a stalled VM, a long pause), holding whatever it held."""
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)


def thaw(replica: ServiceProcess) -> None:
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGCONT)


def submit(replica: ServiceProcess, pages: int, dpi: int = 75) -> dict[str, Any]:
    """A job on pp-ocr: slow enough (0.5 s a page here, tesseract 0.07) to be interrupted half-way."""
    form = {"dpi": str(dpi), "engine": "pp-ocr"}
    response = httpx.post(replica.url + "/jobs", files={"file": ("doc.pdf", text_pdf(pages))}, data=form, timeout=60)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def status(replica: ServiceProcess, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{replica.url}/jobs/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def finished(replica: ServiceProcess, job_id: str, timeout: float = 180) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = status(replica, job_id)
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    result: dict[str, Any] = wait_for(done, timeout, f"job {job_id} to finish", interval=0.25)
    return result


def assert_complete(
    fleet: Fleet, replica: ServiceProcess, job_id: str, pages: int, killed: bool = False
) -> dict[str, Any]:
    """The job succeeded exactly once and its result has every page, in order, read; each page's "done" line is in
    some replica's log, unless a replica was ``killed`` (SIGKILL) between storing a page and logging it."""
    assert finished(replica, job_id)["status"] == "succeeded"
    # The replica that stored the final record logs that line just after the bucket took it: another replica may
    # show the job's end a moment before the line is written.
    ended = rf"job {job_id} succeeded"
    wait_for(lambda: re.search(ended, fleet.logs()), 15, f"job {job_id}'s end in the logs", interval=0.1)
    assert len(re.findall(ended, fleet.logs())) == 1
    result = httpx.get(f"{replica.url}/jobs/{job_id}/result", timeout=30).json()
    assert [p["index"] for p in result["pages"]] == list(range(1, pages + 1))
    for page in result["pages"]:
        assert cer("\n".join(page_lines(page["index"])), page["text"]) <= 0.02, page["text"]
    logged = set(page_log_counts(fleet.logs(), job_id))
    assert logged <= set(range(1, pages + 1)) if killed else logged == set(range(1, pages + 1))
    return result


def pages_done(replica: ServiceProcess, job_id: str, at_least: int) -> None:
    wait_for(lambda: status(replica, job_id)["pages_done"] >= at_least, 120, f"{at_least} pages")
