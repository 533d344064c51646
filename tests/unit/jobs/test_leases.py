"""The ownership protocol (app.jobs.ownership) against an in-memory bucket with injected faults: claims need an
observed expiry, writes are fenced by the epoch, ownership is never held without a runner."""

from __future__ import annotations

import json
import threading
import time

import pytest

from app.jobs.ownership.leases import Fenced, LeaseBook
from app.storage.s3.errors import S3Unavailable
from tests.support.memory_bucket import MemoryBucket

TTL = 30.0


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def record(job_id: str, owner: str, epoch: int, status: str = "running", done: int = 0) -> bytes:
    return json.dumps({"id": job_id, "owner": owner, "epoch": epoch, "status": status, "pages_done": done}).encode()


def book(bucket: MemoryBucket, name: str, clock: Clock) -> LeaseBook:
    return LeaseBook(bucket, name, TTL, clock=clock, sleep=lambda s: setattr(clock, "now", clock.now + s))


def take(leases: LeaseBook, job_id: str) -> bytes | None:
    """A claim as the job store makes it: the lease, then the record written back with the new owner and epoch."""
    lease = leases.claim(job_id)
    if lease is None:
        return None

    def update(body: bytes) -> bytes:
        raw = json.loads(body)
        return record(job_id, leases.replica, lease.epoch, raw["status"], raw["pages_done"])

    return leases.take_record(job_id, update)


def watch(leases: LeaseBook, clock: Clock, seconds: float, step: float = 5.0) -> None:
    """Let ``seconds`` pass, observing every ``step`` (as the keeper does)."""
    end = clock.now + seconds
    while clock.now < end:
        clock.now = min(end, clock.now + step)
        leases.observe()


@pytest.fixture
def bucket() -> MemoryBucket:
    return MemoryBucket()


def accepted(bucket: MemoryBucket, clock: Clock, job_id: str = "a" * 32) -> LeaseBook:
    a = book(bucket, "a", clock)
    a.create(job_id, record(job_id, "a", 1, "queued"))
    return a


def test_a_lease_is_taken_only_after_this_replica_saw_it_unchanged_for_the_whole_period(bucket: MemoryBucket) -> None:
    clock, job = Clock(), "a" * 32
    accepted(bucket, clock, job)
    b = book(bucket, "b", clock)
    b.observe()
    watch(b, clock, TTL - 5)
    assert b.candidates() == [] and take(b, job) is None
    watch(b, clock, 5)
    assert b.candidates() == [job]
    taken = take(b, job)
    assert taken is not None and json.loads(taken)["owner"] == "b"
    assert bucket.lease(job)["epoch"] == 2 and bucket.record(job)["epoch"] == 2  # type: ignore[index]


def test_renewals_keep_a_lease_whatever_the_wall_clocks_say(bucket: MemoryBucket) -> None:
    """The owner's clock is an hour behind (its expires_at lies in the past for everyone): only versions count."""
    clock, job = Clock(), "a" * 32
    a = accepted(bucket, clock, job)
    raw = json.loads(bucket.objects[bucket.layout.lease(job)])
    raw["expires_at"] -= 3600
    bucket.objects[bucket.layout.lease(job)] = json.dumps(raw).encode()
    a.held[job] = a.read(job)  # type: ignore[assignment]
    b = book(bucket, "b", clock)
    for _ in range(12):  # two minutes: A renews every 10 s, B observes every 5 s
        watch(b, clock, 10)
        a.renew({job})
        assert take(b, job) is None
    assert job in a.held


def test_an_outage_longer_than_the_lease_takes_nothing_from_a_live_owner(bucket: MemoryBucket) -> None:
    clock, job = Clock(), "a" * 32
    a = accepted(bucket, clock, job)
    b = book(bucket, "b", clock)
    watch(b, clock, 10)
    bucket.down = True
    for _ in range(20):  # 100 s without S3: nobody renews, nobody observes
        clock.now += 5
        assert a.renew({job}) is False
        with pytest.raises(S3Unavailable):
            b.observe()
    bucket.down = False
    b.observe()  # B is back first: its clock starts again now
    assert b.candidates() == []
    clock.now += 1
    assert a.renew({job})  # the owner renews within a second (the keeper retries every second after a failure)
    for _ in range(6):
        watch(b, clock, 10)
        a.renew({job})
        assert take(b, job) is None and job in a.held


def test_a_frozen_observer_does_not_count_its_own_freeze(bucket: MemoryBucket) -> None:
    clock, job = Clock(), "a" * 32
    accepted(bucket, clock, job)
    b = book(bucket, "b", clock)
    b.observe()
    clock.now += 120  # B frozen (SIGSTOP): the owner may have been renewing all along, unseen
    b.observe()
    assert b.candidates() == []
    watch(b, clock, TTL)
    assert b.candidates() == [job]  # unchanged for a whole period while watched: the owner is gone


def test_a_handed_back_job_is_taken_at_once(bucket: MemoryBucket) -> None:
    clock, job = Clock(), "a" * 32
    a = accepted(bucket, clock, job)
    assert a.release(job)
    b = book(bucket, "b", clock)
    b.observe()
    assert b.candidates() == [job] and take(b, job) is not None
    assert bucket.objects.get(bucket.layout.handover(job)) is None


def test_a_stale_owner_can_neither_write_the_record_nor_delete_the_new_owners_lease(bucket: MemoryBucket) -> None:
    clock, job = Clock(), "a" * 32
    a = accepted(bucket, clock, job)
    b = book(bucket, "b", clock)
    watch(b, clock, TTL + 5)  # A is frozen: no renewals
    assert take(b, job) is not None
    # A wakes up, finishes the job and stores its end: refused, and A learns it lost the job.
    fenced = a.write_record(job, record(job, "a", 1, "succeeded", 2))
    assert isinstance(fenced, Fenced) and fenced.current is not None and json.loads(fenced.current)["owner"] == "b"
    assert a.ownership({job}) == ({job}, set())
    a.finish(job)
    a.end(job)
    lease = bucket.lease(job)
    assert lease is not None and lease["owner"] == "b" and not lease["ended"]
    assert b.write_record(job, record(job, "b", 2, "running", 1)) is None
    epochs = {(w.epoch, w.owner) for w in bucket.record_writes}
    assert (1, "a") in epochs and (2, "b") in epochs
    assert [w.status for w in bucket.record_writes if w.owner == "a"] == ["queued"]  # A's late end never landed


def test_a_replica_that_lost_a_job_and_takes_it_back_runs_it(bucket: MemoryBucket) -> None:
    """The lost mark is cleared by the claim: before, the job was stopped at once and its lease kept alive for ever."""
    clock, job = Clock(), "a" * 32
    a = accepted(bucket, clock, job)
    b = book(bucket, "b", clock)
    watch(b, clock, TTL + 5)
    assert take(b, job) is not None
    a.renew({job})
    assert a.ownership({job}) == ({job}, set()) and job not in a.held
    assert b.release(job)  # B stops (SIGTERM) and hands the job back
    a.observe()
    assert take(a, job) is not None
    assert a.ownership({job}) == (set(), set())
    assert a.write_record(job, record(job, "a", 3, "running", 1)) is None


def test_a_lease_held_for_a_job_that_runs_nowhere_here_is_handed_back(bucket: MemoryBucket) -> None:
    clock, job = Clock(), "a" * 32
    a = accepted(bucket, clock, job)
    a.renew({job})  # running: renewed
    assert job in a.held
    clock.now += 1
    a.renew(set())  # the runner stopped a moment ago (grace)
    assert job in a.held
    clock.now += 10
    a.renew(set())
    assert job not in a.held and bucket.lease(job)["owner"] is None  # type: ignore[index]
    a.finish(job)  # a finishing job keeps its lease until its uploads are through (not handed back)


def test_a_finishing_job_keeps_its_lease_until_its_uploads_are_through(bucket: MemoryBucket) -> None:
    clock, job = Clock(), "a" * 32
    a = accepted(bucket, clock, job)
    a.finish(job)
    clock.now += 60
    a.renew(set())
    assert job in a.held
    a.end_finished(lambda _: True)  # still uploading
    assert bucket.lease(job) is not None
    a.end_finished(lambda _: False)
    assert bucket.lease(job) is None and job not in a.held


def test_writes_whose_answer_was_lost_are_recognised_as_this_replicas_own(bucket: MemoryBucket) -> None:
    clock, job = Clock(), "a" * 32
    a = accepted(bucket, clock, job)
    bucket.lose_answers = 1
    a.renew({job})  # landed, but A does not know its ETag
    a.renew({job})  # refused against the old ETag, then recognised (same body) and adopted
    assert job in a.held and a.ownership({job}) == (set(), set())
    bucket.lose_answers = 1
    with pytest.raises(S3Unavailable):
        a.write_record(job, record(job, "a", 1, "running", 1))
    assert a.write_record(job, record(job, "a", 1, "running", 2)) is None  # same owner and epoch: adopted
    assert bucket.record(job)["pages_done"] == 2  # type: ignore[index]


def test_a_write_stuck_in_the_network_that_lands_late_cannot_go_back(bucket: MemoryBucket) -> None:
    clock, job = Clock(), "a" * 32
    a = accepted(bucket, clock, job)
    bucket.hold_writes = 1
    with pytest.raises(S3Unavailable):
        a.write_record(job, record(job, "a", 1, "running", 1))
    assert a.write_record(job, record(job, "a", 1, "succeeded", 2)) is None
    bucket.land_held()  # the older write arrives now: refused (it was conditional on a version long gone)
    assert bucket.record(job)["status"] == "succeeded"  # type: ignore[index]


def test_without_enforced_conditions_only_one_of_two_racing_claimants_keeps_the_job(bucket: MemoryBucket) -> None:
    """Both read the expired lease before either writes; both writes land, B's last. Each reads its claim back after
    ``settle_s`` (which must outlast the moment between a read and a write): only B finds its own."""
    bucket.enforced = False
    clock, job = Clock(), "a" * 32
    accepted(bucket, clock, job)
    b_checked, b_wrote = threading.Event(), threading.Event()

    def settle_b(seconds: float) -> None:
        b_wrote.set()

    def settle_c(seconds: float) -> None:
        assert b_wrote.wait(5)

    b = LeaseBook(bucket, "b", TTL, clock=clock, sleep=settle_b)
    c = LeaseBook(bucket, "c", TTL, clock=clock, sleep=settle_c)
    for _ in range(8):
        clock.now += 5
        b.observe()
        c.observe()

    def between_check_and_write(key: str) -> None:
        if "/leases/" in key and threading.current_thread().name == "b" and not b_checked.is_set():
            b_checked.set()  # C now reads the same expired lease and writes its claim; B writes once C's landed
            deadline = time.monotonic() + 5
            while json.loads(bucket.objects[key]).get("owner") != "c" and time.monotonic() < deadline:
                time.sleep(0.005)

    bucket.race = between_check_and_write
    results: dict[str, bytes | None] = {}
    threads = [
        threading.Thread(target=lambda: results.update(b=take(b, job)), name="b"),
        threading.Thread(target=lambda: (b_checked.wait(5), results.update(c=take(c, job))), name="c"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [x.replica for x in (b, c) if job in x.held] == ["b"]
    assert results["b"] is not None and results["c"] is None
