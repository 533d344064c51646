"""A property-based model of a fleet on one bucket (hypothesis stateful): replicas that accept, run, renew,
observe and take over jobs, while they are killed, stopped, frozen and started again, S3 goes down and answers
get lost. Each replica's monotonic clock has its own offset (only its own time differences matter).

Invariants, checked after every step, on the record writes that landed in the bucket:
- fencing: a job's record is never written by two replicas in one epoch, and never by an older epoch after a
  newer one;
- a final status never goes back.
And once the faults stop (``settle``), within ``JOB_LEASE_S`` plus a scan: every unfinished job is held by a live
replica that runs it, no lease is held by a replica that does not run its job, and then every job finishes.
"""

from __future__ import annotations

import contextlib
import json
import random

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from app.jobs.ownership.leases import LeaseBook
from app.storage.s3.errors import S3Unavailable
from tests.support.memory_bucket import MemoryBucket

TTL = 30.0
PAGES = 40
FINAL = ("succeeded", "failed", "cancelled")


def body(job_id: str, owner: str, epoch: int, done: int) -> bytes:
    status = "succeeded" if done >= PAGES else ("running" if done else "queued")
    return json.dumps({"id": job_id, "owner": owner, "epoch": epoch, "status": status, "pages_done": done}).encode()


class Replica:
    def __init__(self, name: str, bucket: MemoryBucket, model: FleetModel, offset: float) -> None:
        self.name = name
        self.model = model
        self.book = LeaseBook(bucket, name, TTL, clock=lambda: model.now + offset, sleep=lambda s: None)
        self.running: dict[str, tuple[int, int]] = {}  # job id -> (epoch, pages done): this replica's runners
        self.alive = True
        self.frozen_until = 0.0

    @property
    def active(self) -> bool:
        return self.alive and self.model.now >= self.frozen_until

    def tick(self) -> None:
        """One second of a live replica: keeper work and one page of each running job (in either order: they are
        separate threads), then a takeover scan."""
        if self.model.rng.random() < 0.5:
            self.keep()
            self.run_pages()
        else:
            self.run_pages()
            self.keep()
        for job_id in self.book.candidates():
            self.take(job_id)

    def keep(self) -> None:
        book = self.book
        for call in (
            lambda: book.renew(set(self.running)),
            book.observe,
            lambda: book.end_finished(lambda _: False),
        ):
            with contextlib.suppress(S3Unavailable):
                call()

    def run_pages(self) -> None:
        lost, _ = self.book.ownership(self.running)
        for job_id in lost:
            del self.running[job_id]
        for job_id, (epoch, done) in list(self.running.items()):
            try:
                fenced = self.book.write_record(job_id, body(job_id, self.name, epoch, done + 1))
            except S3Unavailable:
                continue
            if fenced is not None:
                del self.running[job_id]
            elif done + 1 >= PAGES:
                del self.running[job_id]
                self.book.finish(job_id)
            else:
                self.running[job_id] = (epoch, done + 1)

    def take(self, job_id: str) -> None:
        try:
            lease = self.book.claim(job_id)
            if lease is None:
                return
            seen: list[int] = []

            def update(raw: bytes) -> bytes | None:
                record = json.loads(raw)
                if record["status"] in FINAL:
                    return None
                seen.append(int(record["pages_done"]))
                return body(job_id, self.name, lease.epoch, int(record["pages_done"]))

            if self.book.take_record(job_id, update) is None:
                self.book.end(job_id)
                return
            self.running[job_id] = (lease.epoch, seen[-1])
        except S3Unavailable:
            if job_id in self.book.held and job_id not in self.running:
                self.book.release(job_id)


class FleetModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.bucket = MemoryBucket()
        self.replicas: list[Replica] = []
        self.jobs: list[str] = []
        self.rng = random.Random(0)
        self.outage_until = 0.0
        self.refused = 0

    @initialize(
        enforced=st.booleans(),
        offsets=st.lists(st.floats(-3600, 3600), min_size=2, max_size=3),
        rng=st.randoms(use_true_random=False),
    )
    def start_fleet(self, enforced: bool, offsets: list[float], rng: random.Random) -> None:
        self.bucket.enforced = enforced
        self.rng = rng
        for offset in offsets:
            self.start_replica(offset)

    def start_replica(self, offset: float = 0.0) -> None:
        self.replicas.append(Replica(f"r{len(self.replicas)}", self.bucket, self, offset))

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    # --- what happens to the fleet --------------------------------------------------------------
    @precondition(lambda self: len(self.jobs) < 6)
    @rule(which=st.integers(0, 7))
    def accept(self, which: int) -> None:
        active = [r for r in self.replicas if r.active]
        if not active or self.bucket.down:
            return
        replica = active[which % len(active)]
        job_id = f"{len(self.jobs) + self.refused:032x}"
        try:
            replica.book.create(job_id, body(job_id, replica.name, 1, 0))
        except S3Unavailable:  # not accepted (503): the store deletes the record; a lease left behind is ended
            self.refused += 1
            self.bucket.objects.pop(self.bucket.layout.job(job_id), None)
            return
        replica.running[job_id] = (1, 0)
        self.jobs.append(job_id)

    @rule(seconds=st.floats(0.5, 40))
    def time_passes(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + 1.0)
            self.bucket.down = self.now < self.outage_until
            for replica in list(self.replicas):
                if replica.active:
                    replica.tick()

    @precondition(lambda self: len(self.live()) > 1)
    @rule(which=st.integers(0, 7))
    def kill(self, which: int) -> None:  # SIGKILL: leases stay until they expire
        live = self.live()
        if len(live) > 1:
            live[which % len(live)].alive = False

    @precondition(lambda self: len(self.live()) > 1)
    @rule(which=st.integers(0, 7))
    def stop(self, which: int) -> None:  # SIGTERM: unfinished jobs handed back
        live = [r for r in self.live() if r.active]
        if len(live) > 1:
            replica = live[which % len(live)]
            for job_id in list(replica.book.held):
                with contextlib.suppress(S3Unavailable):
                    replica.book.release(job_id)
            replica.alive = False

    @precondition(lambda self: any(r.running for r in self.live()))
    @rule(which=st.integers(0, 7), seconds=st.floats(5, 3 * TTL))
    def freeze(self, which: int, seconds: float) -> None:  # SIGSTOP, a long GC pause, a stalled VM
        live = sorted(self.live(), key=lambda r: -len(r.running))  # mostly one that runs jobs
        live[which % len(live) if which > 3 else 0].frozen_until = self.now + seconds

    @precondition(lambda self: len(self.replicas) < 6)
    @rule(offset=st.floats(-3600, 3600))
    def replace_one(self, offset: float) -> None:
        self.start_replica(offset)

    @rule(seconds=st.floats(1, 3 * TTL))
    def outage(self, seconds: float) -> None:
        self.bucket.down = True
        self.outage_until = self.now + seconds

    @precondition(lambda self: self.bucket.lose_answers == 0)
    @rule()
    def lose_an_answer(self) -> None:
        self.bucket.lose_answers = 1

    # --- invariants -----------------------------------------------------------------------------
    @invariant()
    def fenced(self) -> None:
        newest: dict[str, int] = {}
        writers: dict[tuple[str, int], set[str | None]] = {}
        for write in self.bucket.record_writes:
            assert write.epoch >= newest.get(write.job_id, 0), f"{write.job_id}: epoch {write.epoch} after a newer one"
            newest[write.job_id] = write.epoch
            writers.setdefault((write.job_id, write.epoch), set()).add(write.owner)
        assert all(len(owners) == 1 for owners in writers.values()), writers

    @invariant()
    def final_never_goes_back(self) -> None:
        final: set[str] = set()
        for write in self.bucket.record_writes:
            assert write.job_id not in final or write.status in FINAL, f"{write.job_id} went back to {write.status}"
            if write.status in FINAL:
                final.add(write.job_id)

    @rule()
    def settle(self) -> None:
        """The faults stop: within a lease period and a scan every job is owned by a live replica that runs it, and
        then every job finishes, with no lease left."""
        self.bucket.down, self.bucket.lose_answers, self.outage_until = False, 0, self.now
        if not self.live():
            self.start_replica()
        for replica in self.replicas:
            replica.frozen_until = min(replica.frozen_until, self.now)
        self.time_passes(TTL + 10)
        for job_id in self.jobs:
            record = self.bucket.record(job_id)
            assert record is not None
            if record["status"] in FINAL:
                continue
            runners = [r for r in self.live() if job_id in r.running and job_id in r.book.held]
            assert len(runners) == 1, f"{job_id} unfinished and run by {[r.name for r in runners]}"
        for replica in self.live():
            idle = set(replica.book.held) - set(replica.running) - replica.book.finishing
            assert not idle, f"{replica.name} holds {idle} without running them"
        self.time_passes(PAGES + 10)
        for job_id in self.jobs:
            assert self.bucket.record(job_id)["status"] == "succeeded"  # type: ignore[index]
            assert self.bucket.lease(job_id) is None


FleetModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)
test_fleet_model = FleetModel.TestCase
