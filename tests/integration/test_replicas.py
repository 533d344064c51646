"""Several replicas on one bucket (SeaweedFS, conditional writes enforced), each with its own empty disk, as on
Cloud.ru where a replaced container starts with nothing: jobs outlive the replica that accepted them.

Each scenario ends with every job finished exactly once (one "succeeded" line across all replicas' logs) with all
its pages read.
"""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.errors import Invalid
from app.jobs.models import JobError, JobRecord, PageOutcome
from app.jobs.ownership.shared import SharedOwnership
from app.jobs.repository.s3 import S3Repository
from app.jobs.store import JobStore, build_job_store
from app.settings import Settings
from app.storage.local import new_id
from tests.support.documents import text_pdf
from tests.support.fleet import PREFIX, Fleet, assert_complete, finished, pages_done, status, submit
from tests.support.s3server import S3Server
from tests.support.server import page_log_counts, wait_for
from tests.support.vlm_standin import VlmStandin

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_scale_down_sigterm_hands_the_job_over_at_once(fleet: Fleet) -> None:
    a, b = fleet.start(), fleet.start()
    a_name = a.health()["s3"]["replica"]  # type: ignore[index]
    job = submit(a, 12)
    pages_done(a, job["id"], 3)
    assert a.stop(signal.SIGTERM) == 0
    assert "handed 1 unfinished job(s) back" in a.log()
    final = finished(b, job["id"])
    assert final["owner"] == b.health()["s3"]["replica"] and final["takeovers"] == 1  # type: ignore[index]
    assert_complete(fleet, b, job["id"], 12)
    assert page_log_counts(fleet.logs(), job["id"]) == dict.fromkeys(range(1, 13), 1)  # no page read twice
    handed_over = re.search(rf"job {job['id']} taken over from (\S+) ", b.log())
    assert handed_over and handed_over.group(1) == a_name


def test_crash_sigkill_mid_job_is_taken_over_when_the_lease_expires(fleet: Fleet) -> None:
    a, b = fleet.start(), fleet.start()
    job = submit(a, 12)
    pages_done(a, job["id"], 3)
    a.stop(signal.SIGKILL)
    final = finished(b, job["id"])
    assert final["takeovers"] == 1
    assert_complete(fleet, b, job["id"], 12, killed=True)
    counts = page_log_counts(fleet.logs(), job["id"])
    assert sum(counts.values()) - 12 <= 2, counts  # at most the pages whose upload the kill cut short


def test_redeploy_replaces_every_replica_at_once(fleet: Fleet) -> None:
    a, b = fleet.start(), fleet.start()
    jobs = [(submit(a, 8), 8), (submit(a, 6), 6), (submit(b, 8), 8)]
    pages_done(a, jobs[0][0]["id"], 2)
    stoppers = [threading.Thread(target=r.stop, args=(signal.SIGTERM,)) for r in (a, b)]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()
    c, d = fleet.start(), fleet.start()
    for job, pages in jobs:
        assert_complete(fleet, c, job["id"], pages)
    owners = {status(d, job["id"])["owner"] for job, _ in jobs}
    assert owners <= {c.health()["s3"]["replica"], d.health()["s3"]["replica"]}  # type: ignore[index]


def test_s3_down_while_a_replica_hands_over(fleet: Fleet) -> None:
    a = fleet.start(SHUTDOWN_GRACE_S="8")  # with S3 down it waits for the uploads for most of the grace
    job = submit(a, 30)  # long enough not to finish while S3 stops (a result that only A's disk has is redone)
    pages_done(a, job["id"], 2)
    fleet.s3.stop()
    assert a.stop(signal.SIGTERM) == 0  # cannot flush nor hand back: it says so and stops within the grace
    assert f"job {job['id']} succeeded" not in a.log(), "finished before S3 went down: make the document longer"
    assert "not handed back" in a.log() or "the outbox was not empty" in a.log()
    fleet.s3.start()
    b = fleet.start()
    final = finished(b, job["id"])
    assert final["takeovers"] == 1
    assert_complete(fleet, b, job["id"], 30)


def test_status_page_images_and_cancel_through_another_replica(fleet: Fleet) -> None:
    a, b = fleet.start(), fleet.start()
    job = submit(a, 20)
    pages_done(a, job["id"], 1)
    seen = status(b, job["id"])
    assert seen["owner"] == a.health()["s3"]["replica"] and seen["status"] == "running"  # type: ignore[index]
    image = httpx.get(f"{b.url}/jobs/{job['id']}/pages/2/image", timeout=30)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content[:3] == b"\xff\xd8\xff"
    asked = httpx.delete(f"{b.url}/jobs/{job['id']}", timeout=30)
    assert asked.status_code == 200, asked.text
    assert finished(a, job["id"], timeout=30)["status"] == "cancelled"
    wait_for(lambda: status(b, job["id"])["status"] == "cancelled", 30, "cancelled, seen on B")
    assert status(b, job["id"])["pages_done"] < 20
    again = httpx.delete(f"{b.url}/jobs/{job['id']}", timeout=30)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_cancelled"


def test_a_poison_document_fails_after_a_bounded_number_of_takeovers(s3: S3Server, tmp_path: Path) -> None:
    """Every replica that runs the document dies (killed here once it has started recognising the job's first page,
    as a crash of the engine would); after MAX_JOB_TAKEOVERS crashes without progress the job fails instead of taking
    the fleet down. One replica runs at a time (each starts once the last one is dead), so a short lease (each
    takeover waits for one) cannot take the job from a live owner.

    The replicas read through paddleocr-vl on a VLM stand-in that never answers, so no page can finish before its
    replica is killed, however slow the machine (with a CPU engine a busy machine could finish page 1 first, and
    that progress rightly starts the count again)."""
    with VlmStandin(reply="never sent") as vlm:
        vlm.delay_s, vlm.delay_from_pixels = 3600, 200_000  # no page is answered (the warm-up page is)
        fleet = Fleet(
            s3,
            tmp_path,
            MAX_JOB_TAKEOVERS="2",
            JOB_LEASE_S="4",
            OCR_ENGINE="paddleocr-vl",
            VL_BACKEND="vllm-server",
            VL_SERVER_URL=vlm.url,
            VL_USE_LAYOUT_DETECTION="false",
        )

        def recognising(name: str) -> bool:
            lease = lease_of(s3, fleet.bucket, job["id"])
            return bool(lease and lease["running"] and lease["owner"] == name)

        try:
            replica = fleet.start()
            form = {"dpi": "75", "engine": "paddleocr-vl"}
            sent = httpx.post(replica.url + "/jobs", files={"file": ("doc.pdf", text_pdf(3))}, data=form, timeout=60)
            assert sent.status_code == 202, sent.text
            job = sent.json()
            for crash in range(3):  # the first owner's, then two takeovers'
                if crash:
                    replica = fleet.start()
                name = replica.wait_ready()["s3"]["replica"]
                # generous: CI's 2 cores are shared with the other xdist worker (a replica's log is in the report)
                wait_for(lambda n=name: recognising(n), 120, "the replica's first page to start")
                replica.stop(signal.SIGKILL)  # the poison strikes before a page is done
                assert status_from_bucket(s3, fleet.bucket, job["id"])["pages_done"] == 0
            last = fleet.start()
            final = finished(last, job["id"], timeout=60)
            assert final["status"] == "failed" and final["takeovers"] == 3
            assert final["error"]["code"] == "document_crashes_service" and final["error"]["status"] == 422
            assert "MAX_JOB_TAKEOVERS=2" in final["error"]["message"]
            assert f"job {job['id']} taken over" not in last.log()  # failed, not run once more
            wait_for(lambda: not lease_exists(s3, fleet.bucket, job["id"]), 30, "the lease to go")
        finally:
            fleet.stop_all()


def lease_config(s3: S3Server) -> tuple[Settings, str]:
    """Settings of in-process job stores on a new bucket, with 3 s leases."""
    bucket = s3.new_bucket()
    env = s3.service_env(bucket, CLOUDRU_S3_PREFIX=PREFIX, JOB_LEASE_S="3")
    return Settings(_env_file=None, **{k.lower(): v for k, v in env.items()}), bucket  # type: ignore[call-arg]


def accepted_by_a(config: Settings, tmp_path: Path) -> str:
    """A 2-page job accepted by store "a", which is never started: nothing renews its lease (a crash)."""
    upload = tmp_path / "doc.pdf"
    upload.write_bytes(text_pdf(2))
    job_id = new_id()
    record = JobRecord(job_id, "doc.pdf", "application/pdf", 2, [1, 2], 75, f"2026-01-01/{job_id}", "pp-ocr", owner="a")
    store_of(config, tmp_path, "a").create(record, upload)
    return job_id


def store_of(config: Settings, tmp_path: Path, name: str) -> JobStore:
    """Replica ``name``'s job store (in process, not started: nothing renews its leases unless a test does)."""
    return build_job_store(config.model_copy(update={"replica_id": name}), tmp_path / name)


def leases_of(store: JobStore) -> SharedOwnership:
    assert isinstance(store.ownership, SharedOwnership)
    return store.ownership


def observe_and_claim(store: JobStore, job_id: str) -> JobRecord | None:
    """What a store's keeper and scan do (stores in these tests are not started): observe the leases, then claim
    (possible only once this store has seen A's lease unchanged for the whole lease period)."""
    leases_of(store).leases.observe()
    return store.take_over(job_id)


def test_a_claim_names_the_new_owner_in_the_bucket_before_its_first_page(s3: S3Server, tmp_path: Path) -> None:
    """In process: replica A accepted a job and died before renewing its lease; B claims it once the lease has
    expired. The bucket's record (what every other replica answers GET /jobs with, and what the next takeover names
    as the previous owner) names B and the takeover at once, not only once B has finished a page."""
    config, bucket = lease_config(s3)
    job_id = accepted_by_a(config, tmp_path)
    b = store_of(config, tmp_path, "b")
    b.start()
    try:
        claimed = wait_for(lambda: b.take_over(job_id), 20, "the lease to expire", interval=0.5)
        assert claimed.owner == "b" and claimed.takeovers == 1
        assert isinstance(b.repository, S3Repository) and b.repository.mirror.flush(10)
        stored = status_from_bucket(s3, bucket, job_id)
        assert (stored["owner"], stored["takeovers"], stored["pages_done"]) == ("b", 1, 0)
    finally:
        b.close(5)


def test_a_crash_counts_against_a_job_only_while_its_pages_were_being_recognised(s3: S3Server, tmp_path: Path) -> None:
    """In process, stores that die in turn (never started: nothing renews their leases). A dies while the job only
    waits in its queue; B starts recognising a page, then dies. Only B's crash counts towards MAX_JOB_TAKEOVERS: a
    replica that dies holding queued jobs (killed, or crashed by another document) says nothing about theirs."""
    config, bucket = lease_config(s3)
    job_id = accepted_by_a(config, tmp_path)
    b = store_of(config, tmp_path, "b")
    claimed = wait_for(lambda: observe_and_claim(b, job_id), 20, "A's lease to expire", interval=0.5)
    assert leases_of(b).leases.held[job_id].crashes == 0
    b.ownership.page_starting(claimed.id)
    assert lease_of(s3, bucket, job_id)["running"] is True  # type: ignore[index]  # at once, not at the next renewal
    c = store_of(config, tmp_path, "c")
    wait_for(lambda: observe_and_claim(c, job_id), 20, "B's lease to expire", interval=0.5)
    assert leases_of(c).leases.held[job_id].crashes == 1
    stored = lease_of(s3, bucket, job_id)
    assert stored is not None and (stored["owner"], stored["running"], stored["crashes"]) == ("c", False, 1)


def status_from_bucket(s3: S3Server, bucket: str, job_id: str) -> dict[str, Any]:
    import json

    body = s3.client().get_object(Bucket=bucket, Key=f"{PREFIX}/jobs/{job_id}/job.json")["Body"].read()
    record: dict[str, Any] = json.loads(body)
    return record


def lease_of(s3: S3Server, bucket: str, job_id: str) -> dict[str, Any] | None:
    import json

    from botocore.exceptions import ClientError

    try:
        body = s3.client().get_object(Bucket=bucket, Key=f"{PREFIX}/leases/{job_id}.json")["Body"].read()
    except ClientError:
        return None
    lease: dict[str, Any] = json.loads(body)
    return lease


def lease_exists(s3: S3Server, bucket: str, job_id: str) -> bool:
    listing = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/leases/{job_id}")
    return bool(listing.get("Contents"))


def test_a_job_whose_document_left_the_bucket_fails_once_instead_of_moving_for_ever(fleet: Fleet) -> None:
    """A lifecycle rule or an operator removed the document of an unfinished job: the replica that takes the job
    over cannot go on, and the job fails with 410 document_lost instead of being handed from replica to replica."""
    a, b = fleet.start(), fleet.start()
    job = submit(a, 30)
    pages_done(a, job["id"], 1)
    fleet.s3.client().delete_object(Bucket=fleet.bucket, Key=f"{PREFIX}/jobs/{job['id']}/input")
    a.stop(signal.SIGKILL)
    final = finished(b, job["id"], timeout=90)
    assert final["status"] == "failed" and final["error"]["code"] == "document_lost", final
    wait_for(lambda: not lease_exists(fleet.s3, fleet.bucket, job["id"]), 30, "the lease to go")
    assert f"job {job['id']} taken over" not in b.log()


def test_without_kept_inputs_the_document_leaves_the_bucket_only_after_the_job_ended(
    s3: S3Server, tmp_path: Path
) -> None:
    fleet = Fleet(s3, tmp_path, KEEP_JOB_INPUTS="false")
    try:
        a = fleet.start()
        job = submit(a, 3)
        assert finished(a, job["id"])["status"] == "succeeded"
        key = f"{PREFIX}/jobs/{job['id']}/input"
        wait_for(lambda: not lease_exists(s3, fleet.bucket, job["id"]), 30, "the lease to go")
        # deleted with the lease (just after it: one DELETE each), after job.json said "succeeded"
        wait_for(
            lambda: not s3.client().list_objects_v2(Bucket=fleet.bucket, Prefix=key).get("Contents"),
            15,
            "the document deleted after the lease",
        )
        record = status_from_bucket(s3, fleet.bucket, job["id"])
        assert record["status"] == "succeeded"
    finally:
        fleet.stop_all()


def test_a_page_left_unreadable_on_the_disk_is_read_from_the_bucket(s3: S3Server, tmp_path: Path) -> None:
    """With S3 the disk is written without fsync (OUTPUT_FSYNC=auto): after a host crash on a kept volume a page file
    may be empty or cut short. The bucket's copy is read instead (and this disk's replaced)."""
    config, _ = lease_config(s3)
    job_id = accepted_by_a(config, tmp_path)
    a = store_of(config, tmp_path, "a")
    a.start()
    try:
        record = a.repository.load(job_id)
        assert record is not None and isinstance(a.repository, S3Repository)
        page = PageOutcome.failed(1, JobError.of(Invalid("ocr_failed", "page 1: no text")))
        a.repository.save_page(record, page)
        assert a.repository.mirror.flush(10)
        path = a.repository.disk.page_path(job_id, 1)
        path.write_bytes(path.read_bytes()[:7])  # cut short
        assert a.repository.load_page(record, 1).page.error == "page 1: no text"
        assert PageOutcome.from_json(1, path.read_bytes()).page.error == "page 1: no text"
    finally:
        a.close(5)
