"""Job ownership under the faults a real fleet meets, with real replicas on SeaweedFS (conditional writes enforced):
a frozen owner (SIGSTOP), an owner that finishes after it lost the job, an S3 outage longer than the lease, and a
replica whose wall clock runs ahead (Debian's faketime). In every case: nothing lost, nothing finished twice, no job
held by a replica that does not run it, no final status going back."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fleet import LEASE_S, Fleet, assert_complete, finished, freeze, pages_done, status, submit, thaw
from tests.support.s3server import S3Server
from tests.support.server import ServiceProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FINAL = ("succeeded", "failed", "cancelled")
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def replica_name(replica: ServiceProcess) -> str:
    health = replica.health()
    assert health is not None
    return str(health["s3"]["replica"])


class StatusWatch:
    """Polls a job's status on several replicas in turn (as clients behind a load balancer do) and remembers every
    answer, to check that no answer goes back from a final status."""

    def __init__(self, replicas: list[ServiceProcess], job_id: str) -> None:
        self.replicas = replicas
        self.job_id = job_id
        self.answers: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for replica in self.replicas:
                try:
                    response = httpx.get(f"{replica.url}/jobs/{self.job_id}", timeout=5)
                except httpx.HTTPError:
                    continue  # frozen or stopped
                if response.status_code == 200:
                    self.answers.append((replica.url, response.json()["status"]))
            self._stop.wait(0.2)

    def __enter__(self) -> StatusWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def saw_final(self) -> bool:
        return any(s in FINAL for _, s in self.answers)

    def assert_no_regression(self) -> None:
        statuses = [s for _, s in self.answers]
        first_final = next((i for i, s in enumerate(statuses) if s in FINAL), None)
        assert first_final is not None, statuses[-5:]
        assert all(s in FINAL for s in statuses[first_final:]), statuses[first_final:]


def test_a_frozen_owner_loses_its_job_and_runs_it_again_once_handed_back(fleet: Fleet) -> None:
    """A is frozen mid-job: B takes the job over once it has seen A's lease unchanged for JOB_LEASE_S. A wakes,
    learns it lost the job and stops it. B is then stopped (SIGTERM) and hands the job back: A takes it again and
    finishes it (before, A stopped a re-claimed job at once and kept its lease alive for ever)."""
    a, b = fleet.start(), fleet.start()
    a_name, b_name = replica_name(a), replica_name(b)
    job = submit(a, 24)
    pages_done(a, job["id"], 2)
    freeze(a)
    wait_for(lambda: fleet.record(job["id"])["owner"] == b_name, 4 * LEASE_S, "B to take the job over")
    thaw(a)
    wait_for(lambda: f"job {job['id']}: lease lost" in a.log() or "a newer owner holds it" in a.log(), 30, "A to stop")
    pages_done(b, job["id"], fleet.record(job["id"])["pages_done"] + 2)
    assert b.stop() == 0  # hands the job back
    wait_for(lambda: fleet.record(job["id"])["owner"] == a_name, 30, "A to take the job back")
    assert_complete(fleet, a, job["id"], 24)
    assert fleet.record(job["id"])["takeovers"] == 2
    wait_for(lambda: fleet.lease(job["id"]) is None, 30, "the lease to end")
    # A forgets the lease just after deleting it from the bucket
    wait_for(lambda: ((a.health() or {}).get("s3") or {}).get("jobs_held") == 0, 10, "A to hold no job")


def test_an_owner_that_finishes_after_losing_its_job_writes_nothing_over_the_new_owner(fleet: Fleet) -> None:
    """A is frozen with its last pages in flight; B takes the job over and finishes it. When A wakes, its pages come
    back and it assembles the result, but its final record is refused by the bucket (fenced by the epoch): the job
    succeeded once, as B's, and A then answers with B's record."""
    a, b = fleet.start(), fleet.start()
    b_name = replica_name(b)
    pages = 8
    job = submit(a, pages)
    pages_done(a, job["id"], pages - 2)
    freeze(a)
    with StatusWatch([b], job["id"]) as watch:
        wait_for(lambda: fleet.record(job["id"])["owner"] == b_name, 4 * LEASE_S, "B to take the job over")
        final = finished(b, job["id"])
        wait_for(watch.saw_final, 10, "the watch to see the end")
        thaw(a)
        wait_for(lambda: "a newer owner holds it" in a.log() or "lease lost" in a.log(), 30, "A to learn it")
        time.sleep(2)
    assert final["status"] == "succeeded" and final["owner"] == b_name
    assert_complete(fleet, b, job["id"], pages)
    record = fleet.record(job["id"])
    assert (record["owner"], record["status"], record["epoch"]) == (b_name, "succeeded", 2)
    assert status(a, job["id"])["owner"] == b_name  # A's copy is the bucket's now
    assert f"job {job['id']}: lease lost" not in b.log()  # A never took the lease from under B
    watch.assert_no_regression()


def test_an_s3_outage_longer_than_the_lease_takes_no_job_from_its_live_owner(s3: S3Server, tmp_path: Path) -> None:
    """S3 is down for twice the lease period while A runs a job. Nobody can renew or observe meanwhile, so no replica
    takes the job from A; uploads resume within seconds of S3's return (not after the upload backoff, which reaches
    S3_RETRY_MAX_S=60 s here); /health says degraded while direct calls fail; no answer goes back from final."""
    fleet = Fleet(s3, tmp_path, S3_RETRY_MAX_S="60")
    try:
        a, b = fleet.start(), fleet.start()
        job = submit(a, 24)
        pages_done(a, job["id"], 2)
        with StatusWatch([a, b], job["id"]) as watch:
            s3.stop()
            wait_for(lambda: (a.health() or {}).get("s3_storage") == "degraded", 20, "A to report S3 degraded")
            time.sleep(2 * LEASE_S)
            before = status(a, job["id"])["pages_done"]
            s3.start()
            back = time.monotonic()
            wait_for(lambda: fleet.record(job["id"])["pages_done"] >= before, 30, "A's progress in the bucket")
            caught_up = time.monotonic() - back
            final = finished(b, job["id"], timeout=240)
            wait_for(watch.saw_final, 10, "the watch to see the end")
            time.sleep(2)
        assert final["status"] == "succeeded"
        assert caught_up < 10, caught_up
        logs = fleet.logs()
        assert "taken over" not in logs and "lease lost" not in logs
        assert_complete(fleet, a, job["id"], 24)
        watch.assert_no_regression()
    finally:
        fleet.stop_all()
        if not s3.is_running():
            s3.start()


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="Debian's faketime is not installed")
def test_a_replica_whose_clock_runs_ahead_takes_no_job_from_live_owners(fleet: Fleet) -> None:
    """B's wall clock runs 40 s ahead (five lease periods): before, it took most jobs from their live owners."""
    a = fleet.start()
    b = fleet.start(LD_PRELOAD=str(LIBFAKETIME), FAKETIME="+40s", FAKETIME_DONT_FAKE_MONOTONIC="1")
    skew = _wall_clock_skew(b)
    assert skew > 30, skew
    # Before, B took a live owner's job at its first scan (the owner's expiry lay 30 s in B's past); each job
    # lasts several scans.
    jobs: list[dict[str, Any]] = [submit(a, 8) for _ in range(2)] + [submit(b, 8)]
    for job in jobs:
        assert finished(a, job["id"], timeout=240)["status"] == "succeeded"
    logs = fleet.logs()
    assert "taken over" not in logs and "lease lost" not in logs
    for job in jobs[:2]:
        assert_complete(fleet, a, job["id"], 8)
    assert_complete(fleet, b, jobs[2]["id"], 8)


def _wall_clock_skew(replica: ServiceProcess) -> float:
    """Seconds by which the replica's wall clock (its log's time stamps) runs ahead of ours."""
    stamp = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", replica.log().splitlines()[-1])
    assert stamp is not None
    logged = time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S"))
    return logged - time.time()
