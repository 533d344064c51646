"""Several replicas, one VLM server: where a limit starts (memory, fleet), the fair shares, the memory's files, and the
fleet against simulated servers (tests/support/limiter_sim.py)."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from app.engines.context import EngineContext
from app.engines.paddleocr_vl.fleet import FRESH_FLOOR, LimitKeeper, fair_shares, fair_target, start_point
from app.engines.paddleocr_vl.limiter import INITIAL_LIMIT, GradientLimit, Limit
from app.engines.paddleocr_vl.memory import RETAIN_S, BucketMemory, FolderMemory, Snapshot, memory_for, server_key
from app.storage.s3.objects import Listed
from tests.support.limiter_sim import DictMemory, Replica, Simulation
from tests.support.server import wait_for


def auto(clock: Callable[[], float]) -> Limit:
    return GradientLimit(128, clock=clock, wall=clock)


def snap(replica: str, limit: float, *, at: float = 100.0, binding: bool = True, **more: object) -> Snapshot:
    values: dict[str, object] = {
        "replica": replica,
        "at": at,
        "state": "running",
        "limit": limit,
        "ssthresh": None,
        "baseline_s": 2.0,
        "binding": binding,
        "peak": int(limit),
        "fleet_total": limit,
    }
    values.update(more)
    return Snapshot(**values)  # type: ignore[arg-type]


# --- the decisions, pure -------------------------------------------------------------------------------------


def test_fair_shares_meet_small_wants_first() -> None:
    assert fair_shares(64, [math.inf, math.inf]) == [32, 32]
    assert fair_shares(64, [5, math.inf, math.inf]) == [5, 29.5, 29.5]
    assert fair_shares(10, [2, 3, 100]) == [2, 3, 5]


def test_where_a_limit_starts() -> None:
    assert start_point([], "me", 100, 8) is None  # nothing known: the default start
    mine = snap("me", 40, at=10, knee_total=40, knee_at=10)
    alone = start_point([mine], "me", 100, 8)  # the last run of this replica (REPLICA_ID kept)
    assert alone is not None and (alone.limit, alone.ssthresh, alone.baseline_s) == (40, 40, 2.0)
    fleet = [snap("a", 30), snap("b", 30), mine]  # two replicas at work hold 60: a third takes a third of it
    third = start_point(fleet, "me", 100, 8)
    assert third is not None and third.limit == pytest.approx(20) and third.ssthresh == pytest.approx(20)
    idle = [snap("a", 30, binding=False, peak=2), mine]  # one replica, nearly idle: most of what it holds
    assert start_point(idle, "me", 100, 8).limit == pytest.approx(30 - 3.5)  # type: ignore[union-attr]
    joining = [snap("a", 0, state="joining"), snap("b", 0, state="joining")]  # a fleet starting together, no history
    fresh = start_point(joining, "me", 100, 8)
    assert fresh is not None and fresh.limit == max(INITIAL_LIMIT / 3, FRESH_FLOOR) and fresh.ssthresh is None
    gone = [snap("a", 30, at=50), snap("b", 30, state="left", knee_total=64, knee_at=90)]  # stale, left: not counted
    assert start_point(gone, "me", 100, 8).limit == 64  # type: ignore[union-attr]


def test_fair_targets_move_only_where_someone_is_held_back() -> None:
    knee = 64.0
    others = [snap("b", 16, binding=True)]
    assert fair_target(48, True, 48, others, knee) == 32  # b is held back below its half: give it back
    assert fair_target(16, True, 16, [snap("b", 48)], knee) == 32  # below my half and held back: take it
    assert fair_target(48, True, 48, [snap("b", 16, binding=False, peak=4)], knee) == 58  # what b does not use
    assert fair_target(20, False, 20, [snap("b", 44, binding=False, peak=30)], knee) is None  # nobody held back
    assert fair_target(48, True, 48, others, None) is None  # slow start: all double alike
    assert fair_target(48, False, 2, others, knee) == 16  # idle: keep half an equal share for the next burst


# --- the memory --------------------------------------------------------------------------------------------


def test_snapshots_round_trip_and_bad_files_are_ignored(tmp_path: Path) -> None:
    memory = FolderMemory(tmp_path / "limits", clock=lambda: 100.0)
    assert memory.load() == []
    one = snap("host-1/a b", 24.5, knee_total=30, knee_at=99)
    memory.save(one)
    memory.save(snap("host-2", 8))
    (tmp_path / "limits" / "broken.json").write_text("{not json")
    (tmp_path / "limits" / "odd.json").write_text(json.dumps({"replica": "x", "state": "unknown"}))
    assert sorted(memory.load(), key=lambda s: s.replica) == [one, snap("host-2", 8)]
    assert sorted(p.name for p in (tmp_path / "limits").glob("*.json"))[0] == "broken.json"
    assert (tmp_path / "limits" / "host-1_a_b.json").exists()  # a safe file name
    assert b"http" not in (tmp_path / "limits" / "host-2.json").read_bytes()  # numbers only


def test_old_snapshots_are_deleted_and_history_is_read_at_start_only(tmp_path: Path) -> None:
    memory = FolderMemory(tmp_path, clock=lambda: 1e9)
    memory.save(snap("old", 8, at=1e9 - RETAIN_S - 1))
    memory.save(snap("new", 8, at=1e9 - 5))
    assert [s.replica for s in memory.load()] == ["new"] and not (tmp_path / "old.json").exists()
    memory.save(snap("hour-ago", 8, at=1e9 - 3600))
    os.utime(tmp_path / "hour-ago.json", (time.time() - 3600, time.time() - 3600))
    assert sorted(s.replica for s in memory.load()) == ["hour-ago", "new"]
    assert [s.replica for s in memory.load(recent_s=60)] == ["new"]  # a look while running: recent ones only


class Objects:
    """The bucket's direct calls (S3Objects' shape) over a dict; SeaweedFS runs them in the integration test."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        self.data[key] = body
        return "etag"

    def fetch(self, key: str) -> bytes | None:
        return self.data.get(key)

    def listing(self, prefix: str) -> list[Listed]:
        return [
            Listed(key, "", datetime.fromtimestamp(float(i), timezone.utc))
            for i, key in enumerate(self.data)
            if key.startswith(prefix)
        ]

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.data.pop(key, None)


def test_the_memory_goes_to_the_bucket_under_the_prefix_or_to_the_disk(tmp_path: Path) -> None:
    objects = Objects()
    bucket = memory_for(EngineContext(tmp_path, objects, "ocr-results/", "r1"), "http://vlm:8000/v1")
    assert isinstance(bucket, BucketMemory)
    now = time.time()
    bucket.save(snap("r1", 12, at=now))
    assert list(objects.data) == [f"ocr-results/vlm/limits/{server_key('http://vlm:8000/v1')}/r1.json"]
    assert bucket.load() == [snap("r1", 12, at=now)]
    folder = memory_for(EngineContext(tmp_path), "http://vlm:8000/v1")
    assert isinstance(folder, FolderMemory) and folder.folder == tmp_path / "vlm/limits" / server_key(
        "http://vlm:8000/v1"
    )
    assert memory_for(EngineContext(), "x") is None
    assert server_key("http://a/v1") != server_key("http://b/v1")


def test_a_failing_memory_is_logged_once_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        where = "nowhere"

        def save(self, snapshot: Snapshot) -> None:
            raise OSError("disk gone")

        def load(self, recent_s: float | None = None) -> list[Snapshot]:
            raise OSError("disk gone")

    replica = Replica("r", GradientLimit(128), 1, None, 0.0)
    keeper = LimitKeeper(replica, Broken(), "r", 2.0)
    with caplog.at_level(logging.INFO, logger="app.engines.paddleocr_vl"):
        keeper.join()
        keeper.begin()
        for _ in range(3):
            keeper.sync_once()
    assert replica.policy.limit == INITIAL_LIMIT
    assert [r.getMessage() for r in caplog.records] == [
        "paddleocr-vl: the VLM limit memory (nowhere) failed reading: disk gone"  # once, not at every look
    ]


def test_the_keeper_thread_publishes_and_leaves(tmp_path: Path) -> None:
    from app.engines.paddleocr_vl.slots import RequestSlots

    memory = FolderMemory(tmp_path)
    keeper = LimitKeeper(RequestSlots(GradientLimit(128)), memory, "r1", 0.05)
    keeper.join()
    assert [s.state for s in memory.load()] == ["joining"]
    keeper.start()
    time.sleep(0.25)
    assert [s.state for s in memory.load()] == ["joining"]  # idle: it publishes every 10th look only (0.5 s)
    wait_for(lambda: [s.state for s in memory.load()] == ["running"], 10, "the idle replica's 10th look")
    keeper.stop()
    assert [s.state for s in memory.load()] == ["left"]
    assert os.listdir(tmp_path) == ["r1.json"]


# --- the fleet against simulated servers ---------------------------------------------------------------------


def fleet(replicas: int, capacity: int, until: float, **options: object) -> tuple[Simulation, list[Replica]]:
    sim = Simulation(capacity, sync_every=2.0, **options)  # type: ignore[arg-type]
    members = [sim.add(auto, capacity) for _ in range(replicas)]
    sim.run(until)
    return sim, members


@pytest.mark.parametrize("replicas", [2, 3])
@pytest.mark.parametrize("capacity", [16, 64])
@pytest.mark.parametrize("metrics", [None, 0.5])
def test_replicas_share_one_server_fully_and_fairly(replicas: int, capacity: int, metrics: float | None) -> None:
    """Each replica has as many clients as the server has slots: together they keep it full, each gets its share."""
    _, members = fleet(replicas, capacity, 180, metrics_every=metrics)
    rates = [member.pages_per_s(60, 180) for member in members]
    assert sum(rates) >= 0.95 * capacity / 2.0
    for rate in rates:
        assert abs(rate / (sum(rates) / replicas) - 1) <= 0.15


@pytest.mark.parametrize(("replicas", "capacity"), [(2, 16), (3, 16), (2, 64), (3, 64)])
def test_a_fresh_fleet_meets_a_burst(replicas: int, capacity: int) -> None:
    """``capacity`` clients x 4 pages on each of several fresh replicas (nothing learned): the fleet starts at 16
    together (at least 8 each) and doubles; each replica's pages/s within ±25 % of an equal share."""
    sim = Simulation(capacity, sync_every=2.0)
    members = [sim.add(auto, capacity, pages=4) for _ in range(replicas)]
    sim.run(600)
    first = min(t - rtt for member in members for t, rtt in member.completions)
    total = sum(len(member.completions) for member in members) / (max(m.finished_at for m in members) - first)
    assert total >= 0.75 * capacity / 2.0
    rates = [member.burst_pages_per_s() for member in members]
    for rate in rates:
        assert abs(rate / (sum(rates) / replicas) - 1) <= 0.25


def test_a_replica_that_joins_gets_its_share_and_one_that_stops_gives_it_back() -> None:
    sim = Simulation(64, sync_every=2.0)
    first = sim.add(auto, 64)
    second = sim.add(auto, 64, start_at=60, pages=40)
    sim.run(240)
    assert first.pages_per_s(30, 60) >= 0.95 * 32
    assert abs(second.pages_per_s(80, 120) - first.pages_per_s(80, 120)) <= 0.2 * 16
    assert first.pages_per_s(second.finished_at + 15, 240) >= 0.95 * 32


def test_a_replica_starts_where_the_last_run_stopped() -> None:
    """Warm start: a service restarted (same bucket, any name) meets a burst on a server for 64 at full speed,
    where a fresh one loses two rounds to the doubling."""
    memory = DictMemory()
    first = Simulation(64, sync_every=2.0, memory=memory)
    learning = first.add(auto, 128, name="before")
    first.run(60)
    assert learning.policy.limit >= 48
    restarted = Simulation(64, sync_every=2.0, memory=memory, start=3600)  # an hour later
    warm = restarted.add(auto, 64, pages=4, name="after")
    restarted.run(600)
    cold = Simulation(64, sync_every=2.0)
    fresh = cold.add(auto, 64, pages=4)
    cold.run(600)
    assert warm.burst_pages_per_s() >= 0.95 * 32 > fresh.burst_pages_per_s()


def test_a_restart_under_the_same_name_keeps_its_history() -> None:
    memory = DictMemory()
    memory.save(snap("r0", 48, at=-100, knee_total=48, knee_at=-100))
    sim = Simulation(64, sync_every=2.0, memory=memory)
    replica = sim.add(auto, 64, pages=1, name="r0")
    sim.run(5)
    assert replica.keeper is not None and replica.keeper.restored is not None
    assert replica.keeper.restored.limit == 48
