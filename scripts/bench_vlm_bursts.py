"""Bursts on fresh and restarted services, and several replicas sharing one VLM stand-in: the parts of
``scripts/bench_vs_paddlex.py`` that check the adaptive VLM limit's start and its sharing (issue 25).

A burst: ``clients`` clients send ``pages`` one-page requests each, one after another, all starting together; its
pages/s run from the first request sent to the last answer. *Fresh*: a new service with an empty OUTPUT_DIR (no
memory of a limit). *Restarted*: the same OUTPUT_DIR again (the limit it learned is on its disk). Replicas: each
its own OUTPUT_DIR, all on one SeaweedFS bucket (where they publish their limits) and one stand-in; each replica
meets its own burst of ``capacity`` clients at the same moment.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from app.client.api import describe
from scripts.bench import cores_busy, cpu_pressure_us, cpu_seconds, machine_busy
from tests.support.server import ServiceProcess
from tests.support.vlm_standin import VlmStandin

Env = Callable[[str, Path], dict[str, str]]


class OpenRequests:
    """How many requests clients have sent and not yet had answered (read by :class:`RoomSampler`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self, delta: int) -> None:
        with self._lock:
            self.count += delta


def burst(
    url: str,
    clients: int,
    pages: int,
    page: bytes,
    start: threading.Event | None = None,
    open_requests: OpenRequests | None = None,
) -> dict[str, Any]:
    """``clients`` x ``pages`` one-page requests; pages/s from the first send to the last answer, errors by kind."""
    opened = open_requests or OpenRequests()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    span: list[float] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            ready.wait()
            for _ in range(pages):
                began = time.perf_counter()
                opened.add(1)
                try:
                    response = http.post("/ocr", files={"file": ("page.png", page)})
                    response.raise_for_status()
                except httpx.HTTPStatusError as exc:
                    with lock:
                        errors[describe(exc.response)[:100]] += 1
                    continue
                except httpx.HTTPError as exc:
                    with lock:
                        errors[f"{type(exc).__name__}: {exc}"[:100]] += 1
                    continue
                finally:
                    opened.add(-1)
                with lock:
                    latencies.append(time.perf_counter() - began)

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client) for _ in range(clients)]
        if start is not None:
            start.wait()
        ready.wait()
        span.append(time.perf_counter())
        wall_began = time.time()
        for future in futures:
            future.result()
        span.append(time.perf_counter())
    wall = span[1] - span[0]
    return {
        "pages": len(latencies),
        "pages_s": len(latencies) / wall,
        "wall": wall,
        "began": span[0],
        "ended": span[1],
        "began_wall": wall_began,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
    }


class RoomSampler:
    """Samples, every ``every_s``, whether the stand-in had room (fewer requests at work than it serves at once),
    the machine's busy cores and the service's CPU: what the cores did while the server waited for pages. A burst
    below its ceiling with the cores saturated in those moments is bound by this machine's CPU, not by the limit."""

    def __init__(
        self, vlm: VlmStandin, pid: int, open_requests: OpenRequests | None = None, every_s: float = 0.05
    ) -> None:
        self.vlm, self.pid, self.every_s = vlm, pid, every_s
        self.open_requests = open_requests
        # (epoch s, the server had room, requests the service held outside the server, machine, service CPU s,
        # the machine's CPU pressure in µs)
        self.samples: list[tuple[float, bool, int, tuple[int, int], float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="room-sampler", daemon=True)

    def __enter__(self) -> RoomSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        capacity = self.vlm.capacity or 1 << 30
        while not self._stop.is_set():
            at_server = self.vlm.in_flight + self.vlm.waiting
            room = self.vlm.in_flight < capacity
            # sent by a client, not answered, and not at the server: being received, prepared or finished
            held = max(0, self.open_requests.count - at_server) if self.open_requests is not None else 0
            self.samples.append((time.time(), room, held, machine_busy(), cpu_seconds(self.pid), cpu_pressure_us()))
            self._stop.wait(self.every_s)

    def while_room(self, until: float) -> dict[str, float]:
        """Up to ``until`` (epoch s: when the burst's last request reached the server): the seconds the server had
        room, the machine's cores busy and the service's cores meanwhile (intervals that began with room); then the
        same for the seconds in which the server had room *and* the service held requests (``held_*``: work was
        waiting on this machine, not on the server). ``*_pressure``: the share of those seconds in which some task
        was ready to run and waited for a core (the kernel's CPU pressure): the CPU saturated."""
        found: dict[str, float] = {}
        cores = os.cpu_count() or 1
        for name, wanted in (("room", lambda held: True), ("held", lambda held: held > 0)):
            seconds = busy = total = service = saturated = pressure = 0.0
            pairs = zip(self.samples, self.samples[1:], strict=False)
            for (at, room, held, machine, cpu, stalled), (next_at, _, _, next_machine, next_cpu, next_stalled) in pairs:
                if not room or not wanted(held) or next_at > until:
                    continue
                busy_ticks, all_ticks = next_machine[0] - machine[0], next_machine[1] - machine[1]
                seconds += next_at - at
                busy += busy_ticks
                total += all_ticks
                service += next_cpu - cpu
                pressure += (next_stalled - stalled) / 1e6
                if all_ticks and busy_ticks / all_ticks >= 0.9:
                    saturated += next_at - at  # every core busy in this interval (the clock counts in 10 ms ticks)
            found[f"{name}_s"] = seconds
            found[f"{name}_cores_busy"] = busy / total * cores if total else float("nan")
            found[f"{name}_service_cores"] = service / seconds if seconds else float("nan")
            found[f"{name}_saturated"] = saturated / seconds if seconds else float("nan")
            found[f"{name}_pressure"] = min(1.0, pressure / seconds) if seconds else float("nan")
        return found


def run_queue_seconds(pid: int) -> float:
    """Seconds the threads of ``pid`` alive now have spent ready to run but waiting for a core
    (``/proc/<pid>/task/*/schedstat``, second field); threads that ended are not counted."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # ended meanwhile, or no schedstat in this kernel
            continue
    return total / 1e9


def limit_of(url: str) -> int | None:
    health = httpx.get(url + "/health", timeout=10).json()
    concurrency = ((health.get("engine") or {}).get("vlm") or {}).get("concurrency") or {}
    return concurrency.get("limit")


def fresh_and_restarted(
    env: Env,
    page: bytes,
    tmp: Path,
    latency: float,
    cases: list[tuple[int, int, int, bool]],
    *,
    fixed: bool = True,
) -> list[dict[str, Any]]:
    """For each (capacity, clients, pages, metrics): a stand-in; a fresh service meets the burst, then the same
    service, warm, meets it again; then the service restarted on its OUTPUT_DIR meets it a third time.

    ``fixed`` (capacities from 16, latency signal): then a fresh service whose limit is set to the stand-in's
    capacity (``VL_MAX_CONCURRENCY``), the limit an operator who knew the server would give, meets the burst twice
    (fresh, warm): what this machine delivers when the limit costs nothing, the yardstick for the learned limit's
    rows (``fixed`` in the row: that capacity)."""
    rows = []
    for capacity, clients, pages, metrics in cases:
        folder = tmp / f"burst-{capacity}-{clients}-{int(metrics)}"
        folder.mkdir()
        runs: list[tuple[tuple[str, ...], Path, dict[str, str]]] = [
            (("fresh", "warm"), folder, {}),
            (("restarted",), folder, {}),
        ]
        if fixed and capacity >= 16 and not metrics:
            runs.append((("fresh", "warm"), tmp / f"{folder.name}-fixed", {"VL_MAX_CONCURRENCY": str(capacity)}))
        with VlmStandin(reply="stand-in text", capacity=capacity, metrics=metrics) as vlm:
            vlm.delay_s = latency
            for starts, where, extra in runs:
                where.mkdir(exist_ok=True)
                with ServiceProcess(where, env={**env(vlm.url, where), **extra}) as service:
                    service.wait_ready(timeout=600)
                    assert service.process is not None
                    for start in starts:
                        time.sleep(latency)  # the previous burst's last answers are in
                        row = _measured_burst(service, vlm, page, clients, pages)
                        row.update(
                            capacity=capacity,
                            clients=clients,
                            per_client=pages,
                            metrics=metrics,
                            start=start,
                            fixed=capacity if extra else None,
                            load=os.getloadavg()[0],
                            ceiling=min(capacity, clients) / latency,
                        )
                        rows.append(row)
                        print("burst", {k: v for k, v in row.items() if k != "error_kinds"}, flush=True)
    return rows


def _measured_burst(service: ServiceProcess, vlm: VlmStandin, page: bytes, clients: int, pages: int) -> dict[str, Any]:
    """One burst on ``service``, with the limit before and after, the server's peak queue, CPU and cores busy."""
    assert service.process is not None
    limit_before = limit_of(service.url)
    vlm.peak_waiting = 0
    seen = len(vlm.requests)
    cpu0, machine0 = cpu_seconds(service.process.pid), machine_busy()
    waited0, stalled0 = run_queue_seconds(service.process.pid), cpu_pressure_us()
    opened = OpenRequests()
    with RoomSampler(vlm, service.process.pid, opened) as sampler:
        row = burst(service.url, clients, pages, page, open_requests=opened)
    busy = cores_busy(machine0)
    # the service's threads ready to run but without a core, on average over the burst
    row["run_queue"] = (run_queue_seconds(service.process.pid) - waited0) / row["wall"]
    # the share of the burst in which some task on this machine waited for a core
    row["cpu_pressure"] = min(1.0, (cpu_pressure_us() - stalled0) / 1e6 / row["wall"])
    arrived = sorted(entry["time"] for entry in vlm.requests[seen:])
    if arrived:
        row.update(sampler.while_room(until=arrived[-1]))
    first_round = min(clients, vlm.capacity or clients)
    row.update(
        # when the first round (as many requests as the server serves at once) had all reached the server
        first_round_s=arrived[first_round - 1] - row["began_wall"] if len(arrived) >= first_round else None,
        limit_before=limit_before,
        limit_after=limit_of(service.url),
        server_queue=vlm.peak_waiting,
        cpu_per_page=(cpu_seconds(service.process.pid) - cpu0) / max(1, row["pages"]),
        cores_busy=busy,
    )
    return row


def replicas(
    env: Env, page: bytes, tmp: Path, latency: float, s3: Any, cases: list[tuple[int, int, int, int]]
) -> list[dict[str, Any]]:
    """For each (capacity, replicas, clients per replica, pages): one stand-in, a fresh bucket, ``replicas`` fresh
    services on it; every replica meets its burst at the same moment."""
    rows = []
    for capacity, count, clients, pages in cases:
        bucket = s3.new_bucket()
        with VlmStandin(reply="stand-in text", capacity=capacity) as vlm:
            vlm.delay_s = latency
            services = []
            try:
                for index in range(count):
                    folder = tmp / f"fleet-{capacity}-{count}-{index}"
                    folder.mkdir()
                    extra = {"REPLICA_ID": f"replica-{index}", "CLOUDRU_S3_PREFIX": "bench"}
                    services.append(
                        ServiceProcess(folder, env={**env(vlm.url, folder), **s3.service_env(bucket), **extra})
                    )
                for service in services:
                    service.start()
                for service in services:
                    service.wait_ready(timeout=600)
                go = threading.Event()
                with concurrent.futures.ThreadPoolExecutor(count) as pool:
                    futures = [pool.submit(burst, s.url, clients, pages, page, go) for s in services]
                    machine0 = machine_busy()
                    go.set()
                    results = [future.result() for future in futures]
                busy = cores_busy(machine0)
                began, ended = min(r["began"] for r in results), max(r["ended"] for r in results)
                together = sum(r["pages"] for r in results) / (ended - began)
                row = {
                    "capacity": capacity,
                    "replicas": count,
                    "clients": clients,
                    "per_client": pages,
                    "pages_s": together,
                    "ceiling": min(capacity, clients * count) / latency,
                    "each": [r["pages_s"] for r in results],
                    "errors": sum(r["errors"] for r in results),
                    "error_kinds": dict(sum((Counter(r["error_kinds"]) for r in results), Counter())),
                    "limits_after": [limit_of(s.url) for s in services],
                    "server_queue": vlm.peak_waiting,
                    "cores_busy": busy,
                    "load": os.getloadavg()[0],
                }
                rows.append(row)
                print("replicas", {k: v for k, v in row.items() if k != "error_kinds"}, flush=True)
            finally:
                for service in services:
                    service.stop()
    return rows


def render_bursts(rows: list[dict[str, Any]], latency: float) -> list[str]:
    lines = [
        f"Bursts (stand-in answering after {latency:g} s, `capacity` at once): `clients` x `pages` one-page requests "
        "all starting together; pages/s from the first request to the last answer. *fresh*: a new service, nothing "
        "learned; *warm*: the same service's second burst; *restarted*: the same OUTPUT_DIR again (the limit it "
        "learned is kept there, `.engines/vlm/limits/`). *metrics*: the stand-in serves vLLM's `/metrics` (the "
        "queue is the signal). *fixed N*: a fresh service whose limit is set to the stand-in's capacity "
        "(`VL_MAX_CONCURRENCY=N`, nothing to learn), its first and second burst: what this machine gives the burst "
        "when the limit costs nothing, the yardstick of the learned limit's rows. *first round in*: seconds from "
        "the start until the first min(capacity, clients) "
        "requests had all reached the stand-in (the service receiving, decoding and preparing the burst's first "
        "pages; each second of it adds to the burst's time). *while the server had room*: the seconds, until the "
        "burst's last request reached it, in which the stand-in had fewer requests at work than it serves at once, "
        "and the machine's cores busy meanwhile (of them, the service's): what held the pages back then (sampled "
        "every 50 ms). *while the service held pages*: the part of those seconds in which requests were sent by a "
        "client and neither answered nor at the server (being received, prepared or finished, or waiting for the "
        "limit): pages waited on this machine, so the cores busy then say whether its CPU was what they waited for; "
        "*all busy*: the share of those seconds in which every core was busy (50 ms intervals); *stalled*: the share "
        "of them in which some task of this machine was ready to run and waited for a core (the kernel's CPU "
        "pressure, `/proc/pressure/cpu`: the CPU saturated). *run queue*: how many of the service's threads were, on "
        "average over the burst, ready to run and waiting for a core (the kernel's schedstat; threads that ended "
        "during the burst not counted). *CPU stalled*: the kernel's CPU pressure over the whole burst.",
        "",
        "| Capacity | Clients x pages | start | signal | pages/s | of ceiling | errors | limit before / after | "
        "server queue (peak) | first round in (s) | CPU s/page | cores busy | while the server had room: s, cores "
        "busy (service) | while the service held pages: s, cores busy (service), all busy, stalled | run queue | "
        "CPU stalled | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['capacity']} | {r['clients']} x {r['per_client']} | {r['start']} | "
            f"{_signal(r)} | {r['pages_s']:.2f} | {r['pages_s'] / r['ceiling']:.0%} | "
            f"{r['errors']} | {r['limit_before']} / {r['limit_after']} | {r['server_queue']} | "
            f"{_seconds(r.get('first_round_s'))} | {r['cpu_per_page']:.3f} | {r['cores_busy']:.2f} | {_room(r)} | "
            f"{_room(r, 'held')}{_saturated(r)} | {r.get('run_queue', float('nan')):.2f} | "
            f"{r.get('cpu_pressure', float('nan')):.0%} | {r['load']:.1f} |"
        )
    return lines


def _signal(row: dict[str, Any]) -> str:
    if row.get("fixed"):
        return f"fixed {row['fixed']}"
    return "queue" if row["metrics"] else "latency"


def _room(row: dict[str, Any], name: str = "room") -> str:
    if f"{name}_s" not in row:
        return "-"
    return f"{row[f'{name}_s']:.1f}, {row[f'{name}_cores_busy']:.2f} ({row[f'{name}_service_cores']:.2f})"


def _saturated(row: dict[str, Any]) -> str:
    found = f", {row['held_saturated']:.0%}" if "held_saturated" in row else ""
    return found + (f", {row['held_pressure']:.0%}" if "held_pressure" in row else "")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_replicas(rows: list[dict[str, Any]], latency: float) -> list[str]:
    lines = [
        "Several replicas, one stand-in: each replica a fresh service (own OUTPUT_DIR, one SeaweedFS bucket where "
        "the limits are published every 2 s), each meeting a burst of `clients` x `pages` at the same moment; "
        "*together* from the first request to the last answer; *each* a replica's own pages/s and its ratio to the "
        "mean.",
        "",
        "| Capacity | Replicas | clients x pages each | together pages/s | of ceiling | each pages/s (x mean) | "
        "errors | limits after | server queue (peak) | cores busy | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mean = sum(r["each"]) / len(r["each"])
        each = ", ".join(f"{v:.2f} ({v / mean:.2f})" for v in r["each"])
        lines.append(
            f"| {r['capacity']} | {r['replicas']} | {r['clients']} x {r['per_client']} | {r['pages_s']:.2f} | "
            f"{r['pages_s'] / r['ceiling']:.0%} | {each} | {r['errors']} | {r['limits_after']} | {r['server_queue']} | "
            f"{r['cores_busy']:.2f} | {r['load']:.1f} |"
        )
    return lines


def verdicts(bursts: list[dict[str, Any]], fleets: list[dict[str, Any]]) -> list[str]:
    """The issue's targets read from the rows."""
    found = []
    yardsticks = {(r["capacity"], r["clients"], r["start"]): r for r in bursts if r.get("fixed")}
    for r in bursts:
        if r.get("fixed"):
            found.append(
                f"- Capacity {r['capacity']}, {r['clients']} x {r['per_client']}, {r['start']}, the limit fixed at "
                f"{r['fixed']} (nothing to learn): {r['pages_s'] / r['ceiling']:.1%} of the ceiling, CPU "
                f"{r['cpu_per_page']:.3f} s/page: what this machine gives this burst."
            )
            continue
        if r["capacity"] < 16:
            found.append(
                f"- Capacity {r['capacity']}, {r['start']} ({_signal(r)}): "
                f"{r['errors']} errors, at most {r['server_queue']} requests waiting inside the server."
            )
            continue
        target = 0.85 if r["start"] == "fresh" else 0.90
        share = r["pages_s"] / r["ceiling"]
        cores = os.cpu_count() or 1
        # saturated: the cores busy on average, or whenever pages waited on this machine while the server had room
        held_busy = r.get("held_cores_busy", r.get("room_cores_busy", 0))
        saturated = r["cores_busy"] >= 0.95 * cores or held_busy >= 0.9 * cores
        verdict = "met" if share >= target else ("missed; the cores saturated" if saturated else "missed")
        room = (
            f"; while the server had room ({r['room_s']:.1f} s): {r['room_cores_busy']:.2f} busy, the service "
            f"{r['room_service_cores']:.2f}"
            if "room_s" in r
            else ""
        )
        if "held_s" in r:
            room += (
                f"; of it, with pages held in the service ({r['held_s']:.1f} s): {r['held_cores_busy']:.2f} busy, "
                f"the service {r['held_service_cores']:.2f}, every core busy {r['held_saturated']:.0%} of the time"
            )
        if "run_queue" in r:
            room += f"; the service's threads waiting for a core: {r['run_queue']:.2f} on average"
        # a learned limit is judged against the fixed one's same start; warm and restarted against its warm burst
        yardstick = yardsticks.get((r["capacity"], r["clients"], "fresh" if r["start"] == "fresh" else "warm"))
        against = (
            f"; {r['pages_s'] / yardstick['pages_s']:.0%} of the pages/s the limit fixed at {yardstick['fixed']} gets "
            f"({yardstick['pages_s'] / yardstick['ceiling']:.0%} of the ceiling)"
            if yardstick
            else ""
        )
        found.append(
            f"- Capacity {r['capacity']}, {r['clients']} x {r['per_client']}, {r['start']} "
            f"({_signal(r)}): {share:.1%} of the ceiling (target {target:.0%}): "
            f"{verdict}{against} (cores busy {r['cores_busy']:.2f} of {cores}{room})."
        )
    for r in fleets:
        mean = sum(r["each"]) / len(r["each"])
        spread = max(abs(v / mean - 1) for v in r["each"])
        share = r["pages_s"] / r["ceiling"]
        if r["capacity"] < 16:
            found.append(f"- {r['replicas']} replicas on capacity {r['capacity']}: {r['errors']} errors.")
            continue
        found.append(
            f"- {r['replicas']} replicas on capacity {r['capacity']}: together {share:.0%} of the ceiling (target "
            f"85 %), each within {spread:.0%} of the mean (target 25 %), {r['errors']} errors."
        )
    return found
