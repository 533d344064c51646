#!/usr/bin/env python3
"""Chaos run: replicas on one bucket are killed, frozen and cut off from S3 at random while a client keeps sending
multi-page jobs.

Usage: .venv/bin/python scripts/chaos_replicas.py [--calm 30] [--duration 180] [--kill-interval 10]
       [--max-kills 20] [--faults kill,freeze,s3] [--skew 40] [--seed 13] [--write BENCHMARKS.md]

Everything runs on this machine, on loopback only: SeaweedFS over TLS (tests/support/s3server.py) and
``--replicas`` service processes (``python -m app``) sharing one bucket, with short leases (``JOB_LEASE_S=8``,
``JOB_SCAN_INTERVAL_S=1``) so that a crash is taken over within seconds.

- A client thread keeps ``--in-flight`` jobs unfinished: generated text PDFs of 4–12 pages (low dpi, so pages are
  fast), each ``POST /jobs`` to a random running replica, retried on another one after a connection error, a
  timeout, 503 or 429, as a client behind a load balancer would.
- After ``--calm`` seconds (jobs that meet no kill: the baseline), every ``--kill-interval`` seconds (±50 %) a random
  ready replica gets SIGTERM or SIGKILL (``--kill-share`` of SIGKILL: half by default), as long as another one is
  ready; it is then started again with an EMPTY output dir (a replaced container). ``--busy-victims`` kills only
  replicas that hold an unfinished job (so that even a short run has takeovers to check). With ``--faults``
  naming ``freeze`` and ``s3``, each fault is instead, at random, a kill, a freeze (SIGSTOP for 1.2–2.5 lease
  periods, then SIGCONT: a stalled VM; the replica is not replaced) or an S3 outage (SeaweedFS stopped for
  0.5–2 lease periods). ``--skew S`` runs the first slot's replicas with their wall clock S seconds ahead
  (Debian's faketime).
- After ``--duration`` seconds of that (or ``--max-kills`` kills) nothing is killed or sent any more; the run
  waits (at most ``--finish-timeout`` s) for every accepted job to finish, then checks each one: succeeded,
  exactly one "succeeded" line across all replicas' logs, every page in order and read (CER <= 2 %). Throughout,
  the client also asks again about jobs it has seen finished: an answer that goes back from a final status is a
  *status regression*.

Accepted jobs are those answered 202 plus those a replica logged as accepted (an answer lost when its replica was
killed). Exit status 1 when a job was lost (not succeeded; *stuck* when still unfinished at the end), finished
twice, has a wrong result, or its status went back.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench import percentile, write_section  # noqa: E402
from tests.support.documents import cer, page_lines, text_pdf  # noqa: E402
from tests.support.fleet import Fleet  # noqa: E402
from tests.support.s3server import S3Server  # noqa: E402
from tests.support.server import ServiceProcess  # noqa: E402

PREFIX = "chaos"
FINAL = ("succeeded", "failed", "cancelled")
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", re.MULTILINE)


def log_time(stamp: str, millis: str) -> float:
    """A log line's local time stamp as epoch seconds."""
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


@dataclass
class Replica:
    """One container's life: a service process in a slot of the fleet, from start to kill."""

    slot: int
    name: str  # REPLICA_ID
    process: ServiceProcess
    ready: bool = False
    signal: str = ""  # "TERM" or "KILL" once killed
    killed_at: float = 0.0  # time.time()
    frozen: bool = False

    @property
    def running(self) -> bool:
        return not self.signal and self.process.process is not None and self.process.process.poll() is None


class Slots:
    """``count`` slots of a :class:`~tests.support.fleet.Fleet`, each always holding one replica; a killed replica is
    replaced by a fresh one (an empty disk) in its slot."""

    def __init__(self, fleet: Slots, count: int, skew: float = 0.0) -> None:
        self.fleet = fleet
        self.skew = skew
        self.lock = threading.Lock()
        self.all: list[Replica] = []
        self.slots: list[Replica] = []
        self.restarts: list[threading.Thread] = []
        self.kills: Counter[str] = Counter()
        for slot in range(count):
            self.slots.append(self.launch(slot))

    def launch(self, slot: int) -> Replica:
        generation = sum(1 for r in self.all if r.slot == slot)
        name = f"r{slot}g{generation}"
        env: dict[str, str] = {}
        if slot == 0 and self.skew:  # its wall clock runs ahead; its monotonic clock is left alone
            env.update(LD_PRELOAD=LIBFAKETIME, FAKETIME=f"{self.skew:+g}s", FAKETIME_DONT_FAKE_MONOTONIC="1")
        with self.lock:
            process = self.fleet.start(ready=False, name=name, **env)
            replica = Replica(slot, name, process)
            self.all.append(replica)
        threading.Thread(target=self._wait_ready, args=(replica,), daemon=True).start()
        return replica

    def _wait_ready(self, replica: Replica) -> None:
        try:
            replica.process.wait_ready(timeout=300)
            replica.ready = True
        except (RuntimeError, TimeoutError) as exc:
            print(f"replica {replica.name} did not become ready: {exc}", file=sys.stderr)

    def running(self) -> list[Replica]:
        """What a load balancer may still send to (a killed replica's address is gone from it; a frozen one fails
        its probes)."""
        return [r for r in self.slots if r.running and not r.frozen]

    def ready(self) -> list[Replica]:
        return [r for r in self.slots if r.ready and r.running]

    def kill(self, replica: Replica, sig: signal.Signals) -> None:
        """Signal ``replica`` and, in a thread, wait for it to exit and start its replacement in the same slot."""
        replica.ready = False
        replica.signal = sig.name.removeprefix("SIG")
        replica.killed_at = time.time()
        self.kills[replica.signal] += 1

        def replace() -> None:
            replica.process.stop(sig, timeout=60)  # sends the signal once (twice would force uvicorn out)
            self.slots[replica.slot] = self.launch(replica.slot)

        thread = threading.Thread(target=replace, daemon=True)
        self.restarts.append(thread)
        thread.start()

    def freeze(self, replica: Replica, seconds: float) -> None:
        """SIGSTOP ``replica`` now and SIGCONT it after ``seconds`` (in a thread): a stalled VM, a long pause."""
        process = replica.process.process
        assert process is not None
        replica.ready, replica.frozen = False, True
        os.kill(process.pid, signal.SIGSTOP)

        def thaw() -> None:
            time.sleep(seconds)
            os.kill(process.pid, signal.SIGCONT)
            replica.frozen = False
            replica.ready = replica.running

        thread = threading.Thread(target=thaw, daemon=True)
        self.restarts.append(thread)
        thread.start()

    def settle(self, timeout: float) -> None:
        """Wait for pending replacements and for every slot to be ready."""
        deadline = time.monotonic() + timeout
        for thread in self.restarts:
            thread.join(max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline and len(self.ready()) < len(self.slots):
            time.sleep(0.5)

    def logs(self) -> str:
        return "".join(r.process.log() for r in self.all)

    def stop(self) -> None:
        for replica in self.slots:
            replica.process.stop(signal.SIGTERM, timeout=60)


@dataclass
class Job:
    id: str
    pages: int
    submitted: float  # time.time() of the first attempt
    seen_final: float | None = None  # time.time() when the client first saw it finished (the client's clock)
    status: dict[str, Any] = field(default_factory=dict)
    regressions: list[str] = field(default_factory=list)  # non-final answers after a final one


class Client:
    """Keeps ``in_flight`` jobs unfinished, sending each to a random running replica, retrying as a client behind
    a load balancer would; polls the jobs it knows through random ready replicas."""

    def __init__(self, fleet: Slots, rng: random.Random, args: argparse.Namespace) -> None:
        self.fleet = fleet
        self.rng = rng
        self.args = args
        self.jobs: dict[str, Job] = {}
        self.retries: Counter[str] = Counter()
        self.submitted = 0
        self.not_accepted = 0
        self.cut_short = 0  # submissions still being retried when the run stopped sending
        self.stop = threading.Event()
        self.http = httpx.Client(timeout=httpx.Timeout(30, connect=2))
        self.thread = threading.Thread(target=self._run, name="client", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.poll()
            unfinished = [j for j in self.jobs.values() if j.status.get("status") not in FINAL]
            if len(unfinished) < self.args.in_flight:
                self.submit(self.rng.randint(self.args.min_pages, self.args.max_pages))
            else:
                self.stop.wait(1.0)

    def submit(self, pages: int) -> None:
        document = text_pdf(pages)
        self.submitted += 1
        began = time.time()
        deadline = time.monotonic() + self.args.submit_timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            targets = self.fleet.running()
            if not targets:
                self.stop.wait(0.5)
                continue
            target = self.rng.choice(targets)
            try:
                answer = self.http.post(
                    target.process.url + "/jobs",
                    files={"file": ("doc.pdf", document, "application/pdf")},
                    data={"dpi": str(self.args.dpi)},
                )
            except httpx.HTTPError as exc:
                self.retries[type(exc).__name__] += 1
                self.stop.wait(self.rng.uniform(0.2, 1.0))
                continue
            if answer.status_code == 202:
                job_id = answer.json()["id"]
                self.jobs[job_id] = Job(job_id, pages, began)
                return
            if answer.status_code not in (429, 503):
                raise RuntimeError(f"POST /jobs answered {answer.status_code}: {answer.text[:500]}")
            code = answer.json().get("error", {}).get("code", "?")
            self.retries[f"{answer.status_code} {code}"] += 1
            self.stop.wait(self.rng.uniform(0.5, 1.5))
        if self.stop.is_set():
            self.cut_short += 1
        else:
            self.not_accepted += 1

    def status(self, job_id: str) -> dict[str, Any] | None:
        ready = self.fleet.ready()
        if not ready:
            return None
        try:
            answer = self.http.get(f"{self.rng.choice(ready).process.url}/jobs/{job_id}")
        except httpx.HTTPError:
            return None
        if answer.status_code != 200:
            return None
        body: dict[str, Any] = answer.json()
        return body

    def owners(self) -> set[str]:
        """The replicas that hold an unfinished job now (asked afresh)."""
        unfinished = [j.id for j in list(self.jobs.values()) if j.status.get("status") not in FINAL]
        found = (self.status(job_id) for job_id in unfinished)
        return {body.get("owner") or "" for body in found if body is not None and body.get("status") not in FINAL}

    def poll(self, ids: list[str] | None = None) -> None:
        """Ask about every unfinished job, and again about a few finished ones (a final answer must stay final)."""
        ids = ids if ids is not None else list(self.jobs)
        done = [i for i in ids if self.jobs[i].status.get("status") in FINAL]
        again = set(self.rng.sample(done, min(3, len(done))))
        for job_id in ids:
            job = self.jobs[job_id]
            final = job.status.get("status") in FINAL
            if final and job_id not in again:
                continue
            found = self.status(job_id)
            if found is None:
                continue
            if final and found.get("status") not in FINAL:
                job.regressions.append(f"{job.status.get('status')} -> {found.get('status')}")
                continue
            if not final and found.get("status") in FINAL:
                job.seen_final = time.time()
            job.status = found


def victims(fleet: Slots, client: Client, args: argparse.Namespace, end: float) -> list[Replica]:
    """The ready replicas a kill may hit now; with ``--busy-victims`` only those holding an unfinished job (waiting
    for one until ``end``). Empty while fewer than two are ready: one replica keeps working."""
    while True:
        ready = fleet.ready()
        if len(ready) < 2:
            return []
        if not args.busy_victims:
            return ready
        owners = client.owners()
        busy = [r for r in ready if r.name in owners]
        if busy or time.monotonic() + 0.5 > end:
            return busy
        time.sleep(0.5)


def chaos(fleet: Slots, client: Client, s3: S3Server, rng: random.Random, args: argparse.Namespace) -> Counter[str]:
    """A fault every ``kill_interval`` s (±50 %) until ``duration`` or ``max_kills`` faults: a kill of a random ready
    replica, or (``--faults``) a freeze of one, or an S3 outage. Returns the faults by kind."""
    end = time.monotonic() + args.duration
    coin = random.Random(args.seed)  # the n-th kill's signal depends on the seed only
    kinds = [k for k in args.faults.split(",") if k]
    faults: Counter[str] = Counter()
    while sum(faults.values()) < args.max_kills:
        pause = args.kill_interval * rng.uniform(0.5, 1.5)
        if time.monotonic() + pause > end:
            time.sleep(max(0.0, end - time.monotonic()))
            return faults
        time.sleep(pause)
        kind = rng.choice(kinds)
        number = sum(faults.values()) + 1
        if kind == "s3":
            seconds = args.lease * rng.uniform(0.5, 2.0)
            print(f"[{time.strftime('%H:%M:%S')}] fault #{number}: S3 down for {seconds:.0f} s", flush=True)
            s3.stop()
            time.sleep(seconds)
            s3.start()
            faults["s3"] += 1
            continue
        ready = victims(fleet, client, args, end)
        if not ready:
            continue
        victim = rng.choice(ready)
        if kind == "freeze":
            seconds = args.lease * rng.uniform(1.2, 2.5)
            print(
                f"[{time.strftime('%H:%M:%S')}] fault #{number}: SIGSTOP {victim.name} for {seconds:.0f} s", flush=True
            )
            fleet.freeze(victim, seconds)
            faults["freeze"] += 1
            continue
        sig = signal.SIGKILL if coin.random() < args.kill_share else signal.SIGTERM
        print(f"[{time.strftime('%H:%M:%S')}] fault #{number}: SIG{sig.name[3:]} {victim.name}", flush=True)
        fleet.kill(victim, sig)
        faults["kill"] += 1
    return faults


def verify(client: Client, fleet: Slots, ids: list[str]) -> dict[str, list[str]]:
    """Check every job: succeeded once, all pages in order and read. Problems by kind -> job ids."""
    problems: dict[str, list[str]] = {
        "lost": [],
        "stuck": [],
        "finished twice": [],
        "not logged": [],
        "wrong result": [],
        "status regression": [i for i in ids if client.jobs[i].regressions],
    }
    succeeded = [i for i in ids if client.jobs[i].status.get("status") == "succeeded"]
    deadline = time.monotonic() + 15  # the owner logs "succeeded" a moment after its status says so
    while True:
        logs = fleet.logs()
        counts = {i: len(re.findall(rf"job {i} succeeded:", logs)) for i in succeeded}
        if all(counts.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    url = fleet.ready()[0].process.url
    for job_id in ids:
        job = client.jobs[job_id]
        if job_id not in counts:
            problems["lost"].append(job_id)
            if job.status.get("status") not in FINAL:
                problems["stuck"].append(job_id)
            continue
        if counts[job_id] != 1:
            problems["finished twice" if counts[job_id] else "not logged"].append(job_id)
        result = client.http.get(f"{url}/jobs/{job_id}/result")
        pages = result.json().get("pages", []) if result.status_code == 200 else []
        in_order = [p["index"] for p in pages] == list(range(1, job.pages + 1))
        read = all(cer("\n".join(page_lines(p["index"])), p["text"]) <= 0.02 for p in pages)
        if not (in_order and read):
            problems["wrong result"].append(job_id)
    return problems


def resumption_gaps(fleet: Slots) -> dict[str, list[float]]:
    """Seconds from a replica's kill to the first page of each of its jobs that a taking-over replica finished, by
    signal; "not killed" counts takeovers from a replica that was not killed (a lease lost to slowness)."""
    by_name = {r.name: r for r in fleet.all}
    gaps: dict[str, list[float]] = {"TERM": [], "KILL": [], "not killed": []}
    for replica in fleet.all:
        log = replica.process.log()
        for taken in re.finditer(r"^(\S+ \S+),(\d{3}) .*job (\w+) taken over from (\S+) ", log, re.MULTILINE):
            stamp, millis, job_id, previous = taken.groups()
            owner = by_name.get(previous)
            if owner is None or not owner.signal or owner.killed_at > log_time(stamp, millis):
                gaps["not killed"].append(0.0)
                continue
            page = re.compile(rf"^(\S+ \S+),(\d{{3}}) .*job {job_id} page \d+ done", re.MULTILINE)
            found = page.search(log, taken.end())
            if found:  # else this replica stopped too before a page of it: the next takeover counts
                gaps[owner.signal].append(log_time(*found.groups()) - owner.killed_at)
    return gaps


def job_lines(fleet: Slots, job_id: str) -> str:
    """Every log line about ``job_id`` (access log aside), in time order, each with its replica, and the kills."""
    found = [
        f"{line[:23]} {replica.name}: {line[24:]}"
        for replica in fleet.all
        for line in replica.process.log().splitlines()
        if job_id in line and "app.access" not in line
    ]
    found += [
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.killed_at))},{int(r.killed_at % 1 * 1000):03d} "
        f"SIG{r.signal} {r.name}"
        for r in fleet.all
        if r.signal
    ]
    return "\n".join(sorted(found))


def p50_p95(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values):.1f} / {percentile(values, 95):.1f}"


def leases_left(s3: S3Server, bucket: str) -> int:
    listing = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/leases/")
    return len(listing.get("Contents", []))


def load_average() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calm", type=float, default=30, help="seconds of sending before the first kill (default 30)")
    parser.add_argument("--duration", type=float, default=180, help="seconds of killing and sending (default 180)")
    parser.add_argument("--kill-interval", type=float, default=10, help="mean seconds between kills (default 10)")
    parser.add_argument("--max-kills", type=int, default=20, help="stop killing after this many (default 20)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--kill-share", type=float, default=0.5, help="share of SIGKILL among the kills (default 0.5)")
    parser.add_argument(
        "--faults", default="kill", help="what a fault may be: kill, freeze, s3, comma-separated (default kill)"
    )
    parser.add_argument("--skew", type=float, default=0.0, help="seconds the first slot's wall clock runs ahead")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument(
        "--busy-victims", action="store_true", help="kill only replicas that hold an unfinished job (short runs)"
    )
    parser.add_argument("--in-flight", type=int, default=6, help="unfinished jobs the client keeps (default 6)")
    parser.add_argument("--min-pages", type=int, default=4)
    parser.add_argument("--max-pages", type=int, default=12)
    parser.add_argument("--dpi", type=int, default=75, help="rasterising dpi of the jobs (default 75)")
    parser.add_argument("--lease", type=float, default=8, help="JOB_LEASE_S of the replicas (default 8)")
    parser.add_argument("--scan", type=float, default=1, help="JOB_SCAN_INTERVAL_S of the replicas (default 1)")
    parser.add_argument("--grace", type=int, default=15, help="SHUTDOWN_GRACE_S of the replicas (default 15)")
    parser.add_argument("--submit-timeout", type=float, default=120, help="give up on one submission after this")
    parser.add_argument("--finish-timeout", type=float, default=240, help="wait this long for jobs at the end")
    parser.add_argument("--workdir", type=Path, help="keep logs and data here (default: a temporary folder)")
    parser.add_argument("--write", type=Path, help="replace the chaos section of this Markdown file")
    parser.add_argument("--summary", type=Path, help="also write the numbers as JSON here")
    args = parser.parse_args()
    rng = random.Random(args.seed)  # kill times and victims
    load_before = load_average()
    began = time.monotonic()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        s3 = S3Server(root / "s3").start()
        bucket = "chaos"
        s3.client().create_bucket(Bucket=bucket)
        replicas = Fleet(
            s3,
            root,
            bucket=bucket,
            prefix=PREFIX,
            JOB_LEASE_S=f"{args.lease:g}",
            JOB_SCAN_INTERVAL_S=f"{args.scan:g}",
            SHUTDOWN_GRACE_S=str(args.grace),
            OCR_CONCURRENCY="1",
            # With S3 outages among the faults, the upload backoff keeps its default (60 s): uploads must resume
            # when S3 is back, not when the backoff ends.
            S3_RETRY_MAX_S="60" if "s3" in args.faults else "1",
        )
        fleet = Slots(replicas, args.replicas, args.skew)
        client = Client(fleet, random.Random(args.seed + 1), args)
        try:
            fleet.settle(300)
            print(f"[{time.strftime('%H:%M:%S')}] {len(fleet.ready())} replicas ready; chaos starts", flush=True)
            client.thread.start()
            sending = time.monotonic()
            time.sleep(args.calm)
            faults = chaos(fleet, client, s3, rng, args)
            client.stop.set()
            sending = time.monotonic() - sending
            client.thread.join(args.submit_timeout + 60)
            print(f"[{time.strftime('%H:%M:%S')}] chaos over; waiting for the jobs", flush=True)
            fleet.settle(300)
            logs = fleet.logs()
            for job_id in re.findall(r"job (\w+) accepted:", logs):  # 202 lost with a killed replica
                if job_id not in client.jobs:
                    pages = int(re.search(rf"job {job_id} accepted: \S+, (\d+) of", logs).group(1))  # type: ignore[union-attr]
                    client.jobs[job_id] = Job(job_id, pages, 0.0)
            ids = sorted(client.jobs)
            deadline = time.monotonic() + args.finish_timeout
            while time.monotonic() < deadline:
                client.poll(ids)
                if all(client.jobs[i].status.get("status") in FINAL for i in ids):
                    break
                time.sleep(1)
            problems = verify(client, fleet, ids)
            time.sleep(3)  # the leases of the last jobs go once their uploads are through
            leftover = leases_left(s3, bucket)
        finally:
            client.stop.set()
            fleet.stop()
            s3.kill()
        logs = fleet.logs()
        gaps = resumption_gaps(fleet)  # reads each replica's log: before the temporary folder goes
        evidence = {job_id: job_lines(fleet, job_id) for ids in problems.values() for job_id in ids}

    lost_answers = sum(1 for j in client.jobs.values() if not j.submitted)
    done = [j for j in client.jobs.values() if j.status.get("status") == "succeeded"]
    total_pages = sum(j.pages for j in client.jobs.values())
    page_lines_seen = re.findall(r"job (\w+) page (\d+) done", logs)
    repeated = len(page_lines_seen) - len(set(page_lines_seen))
    takeovers = sum(int(j.status.get("takeovers", 0)) for j in client.jobs.values())
    taken_lines = len(re.findall(r"job \w+ taken over from ", logs))
    handed = sum(int(n) for n in re.findall(r"handed (\d+) unfinished job\(s\) back", logs))
    crashes = max((int(n) for n in re.findall(r"(\d+) crash\(es\) in a row", logs)), default=0)

    def took(job: Job) -> float:
        """On the client's clock: the job's record has its accepting and finishing replicas' clocks, which differ
        by ``--skew`` when one of them is the skewed slot (a taken-over job then "took" a negative time)."""
        assert job.seen_final is not None  # only jobs in ``timed``
        return job.seen_final - job.submitted

    timed = [j for j in done if j.submitted and j.seen_final]  # not those whose 202 was lost (found in the logs)
    moved = [took(j) for j in timed if j.status.get("takeovers")]
    stayed = [took(j) for j in timed if not j.status.get("takeovers")]
    moved_pages = [j.pages for j in timed if j.status.get("takeovers")]
    stayed_pages = [j.pages for j in timed if not j.status.get("takeovers")]
    lost = len(problems["lost"])
    regressions = len(problems["status regression"])
    twice = len(problems["finished twice"]) + len(problems["not logged"])
    wrong = len(problems["wrong result"])
    retries = ", ".join(f"{k} {v}" for k, v in client.retries.most_common()) or "none"
    failed_statuses = Counter(str(client.jobs[i].status.get("status", "unknown")) for i in problems["lost"])

    lines = [
        f"Machine: {os.cpu_count()} cores, **shared with other sessions' work while this ran** (load average "
        f"{load_before} before, {load_average()} after, 1/5/15 min); Python {sys.version.split()[0]}. "
        f"{args.replicas} replicas (`python -m app`, pp-ocr, `OCR_CONCURRENCY=1`) on one SeaweedFS bucket over TLS "
        f"on 127.0.0.1, with short leases for the run: `JOB_LEASE_S={args.lease:g}`, "
        f"`JOB_SCAN_INTERVAL_S={args.scan:g}`, `SHUTDOWN_GRACE_S={args.grace}` (defaults 30 / 10 / 30). "
        f"For {sending:.0f} s a client kept {args.in_flight} jobs unfinished ({args.min_pages}–{args.max_pages}"
        f"-page text PDFs at {args.dpi} dpi, each `POST /jobs` to a random running replica, retried elsewhere on "
        f"connection errors, 503 and 429); after the first {args.calm:g} s, every {args.kill_interval:g} s "
        f"(±50 %) a fault, one of {args.faults.replace(',', ', ')}: a random ready replica got SIGKILL (probability "
        f"{args.kill_share:g}) or SIGTERM (only while another one was ready) and was replaced by a fresh one with an "
        "empty `OUTPUT_DIR`, or was frozen (SIGSTOP for 1.2–2.5 lease periods, then SIGCONT), or S3 was stopped "
        "for 0.5–2 lease periods. Then the jobs were "
        f"awaited (at most {args.finish_timeout:.0f} s) and each checked through the replicas: succeeded, one "
        '"succeeded" log line across every replica\'s log, all pages in order and read (CER <= 2 %). '
        f"Whole run: {time.monotonic() - began:.0f} s.",
        "",
        "| Measure | Result |",
        "|---|---|",
        f"| Jobs submitted / accepted | {client.submitted} / {len(client.jobs)} ({lost_answers} accepted without "
        f"the client seeing the 202: its replica was killed; {client.not_accepted} not accepted within "
        f"{args.submit_timeout:.0f} s; {client.cut_short} still being retried when sending stopped) |",
        f"| Pages in accepted jobs | {total_pages} |",
        f"| Client retries | {retries} |",
        f"| Faults | {sum(faults.values())}: {fleet.kills['TERM']} SIGTERM, {fleet.kills['KILL']} SIGKILL, "
        f"{faults['freeze']} freezes (SIGSTOP), {faults['s3']} S3 outages"
        + (f"; slot 0 with its wall clock {args.skew:+g} s off" if args.skew else "")
        + " |",
        f"| Jobs handed back at SIGTERM (log lines) | {handed} |",
        f'| Takeovers | {takeovers} (sum of `takeovers` over the jobs); {taken_lines} "taken over" log lines'
        + (" (the others: claims cut short by a kill)" if taken_lines < takeovers else "")
        + " |",
        f"| Most crashes in a row without progress of one job (it fails above `MAX_JOB_TAKEOVERS`=3) | {crashes} |",
        f"| Kill to the job's next page done on another replica, p50 / p95 s | SIGTERM {p50_p95(gaps['TERM'])} "
        f"({len(gaps['TERM'])}); SIGKILL "
        f"{p50_p95(gaps['KILL'])} ({len(gaps['KILL'])}); previous owner not killed (frozen, or slow): "
        f"{len(gaps['not killed'])} |",
        f"| **Jobs lost** (accepted, not succeeded) | **{lost}**"
        + (f" ({', '.join(f'{k} {v}' for k, v in failed_statuses.items())})" if lost else "")
        + " |",
        f"| **Jobs stuck** (still unfinished at the end) | **{len(problems['stuck'])}** |",
        f"| **Status regressions** (a final answer, then a non-final one) | **{regressions}** |",
        f"| **Jobs finished twice** | **{len(problems['finished twice'])}**"
        + (f" ({len(problems['not logged'])} succeeded without a log line)" if problems["not logged"] else "")
        + " |",
        f"| Jobs with a wrong result (pages missing, out of order or misread) | {wrong} |",
        f"| Pages recognised more than once | {repeated} of {len(set(page_lines_seen))} "
        f"({100 * repeated / max(1, len(set(page_lines_seen))):.1f} %; from the `page N done` log lines) |",
        f"| Job time (first sent to seen finished, the client's clock, polled about every second), p50 / p95 s: "
        f"jobs never taken over | {p50_p95(stayed)} "
        f"({len(stayed)} jobs, {statistics.mean(stayed_pages) if stayed_pages else 0:.1f} pages on average) |",
        f"| Job time, p50 / p95 s: jobs taken over at least once | {p50_p95(moved)} ({len(moved)} jobs, "
        f"{statistics.mean(moved_pages) if moved_pages else 0:.1f} pages on average) |",
        f"| Leases left in the bucket at the end | {leftover} |",
        "",
        "How to read it: a takeover moves every unfinished job of the killed replica, queued ones too, so a job may "
        "be taken over several times. *Kill to the job's next page* spans the old owner finishing its running page "
        "(SIGTERM) or the lease expiring (SIGKILL), the next scan of a replica whose engine is loaded, and one page "
        "there. *Pages recognised more than once* counts pages stored twice; a page cut short by SIGKILL (at most "
        "one per kill here) is recognised again but logged once. Job times include the capacity the fleet loses "
        "while replacements load their models, which jobs without a takeover feel too.",
    ]
    shown = [a for i, a in enumerate(sys.argv[1:]) if not {a, sys.argv[i]} & {"--workdir", "--summary"}]
    command = f"`.venv/bin/python scripts/chaos_replicas.py {' '.join(shown)}`"
    report = "\n".join(lines)
    print(report)
    for kind, ids in problems.items():
        for job_id in ids:
            print(f"{kind}: job {job_id}: {json.dumps(client.jobs[job_id].status)}", file=sys.stderr)
            print(evidence.get(job_id, ""), file=sys.stderr)
    if args.summary:
        summary = {
            "submitted": client.submitted,
            "accepted": len(client.jobs),
            "kills": dict(fleet.kills),
            "faults": dict(faults),
            "takeovers": takeovers,
            "takeover_log_lines": taken_lines,
            "handed_back": handed,
            "crashes_in_a_row": crashes,
            "resumed_after_kill": {kind: len(values) for kind, values in gaps.items()},
            "pages": len(set(page_lines_seen)),
            "pages_repeated": repeated,
            "problems": problems,
        }
        args.summary.write_text(json.dumps(summary, indent=1))
    if args.write:
        make = (
            " (`make chaos`)"
            if shown == [*["--faults", "kill,freeze,s3", "--skew", "40", "--write", "BENCHMARKS.md"]]
            else ""
        )
        write_section(args.write, "chaos", f"{report}\n\nCommand: {command}{make}")
    return 1 if lost or twice or wrong or regressions else 0


if __name__ == "__main__":
    sys.exit(main())
