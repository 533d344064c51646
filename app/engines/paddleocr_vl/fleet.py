"""Several replicas, one VLM server: where a replica's limit starts, and the fair share each one takes.

Every ``VL_LIMIT_SYNC_S`` seconds a replica publishes a :class:`~.memory.Snapshot` of its limit and reads the
others' (:class:`LimitKeeper`). A replica is *active* while its snapshot is fresh (3 periods) and it has not
left. The decisions are pure functions:

- :func:`start_point`: a replica joining a fleet at work takes its fair share of what the fleet holds (the others
  give theirs back at their next look); alone, or with replicas starting at the same moment (they announce
  themselves first), it starts from what the fleet learned the server takes (``knee_total``, the newest one
  known), else from the last fleet total or :data:`~.limiter.INITIAL_LIMIT` shared (at least
  :data:`FRESH_FLOOR` each) and in slow start. One replica with history starts where it stopped.
- :func:`fair_target`: the fleet's total (the limits together) split max-min fairly: a replica that uses less
  than an equal share keeps what it uses (its peak plus a margin), the others share the rest equally. A replica
  above its share comes down to it when another one is held back below its own share; a held-back replica below
  its share takes half the difference (all of it when nobody else is held back). Each replica's own latency or
  queue signal still decides the total (:mod:`.limiter`); the split starts once the fleet has seen the server
  queue (in slow start every replica doubles alike).

Several replicas' probes (:mod:`.limiter`) fall at the same moments of the wall clock, so they measure the
server's baseline together.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from app.engines.paddleocr_vl.limiter import INITIAL_LIMIT, GradientLimit, Learned, Limit
from app.engines.paddleocr_vl.memory import LimiterMemory, Snapshot, State
from app.engines.paddleocr_vl.slots import Usage

log = logging.getLogger("app.engines.paddleocr_vl")

#: Periods after which a replica that stopped publishing no longer counts.
STALE_PERIODS = 3
#: Where each replica of a fleet with no history starts at least.
FRESH_FLOOR = 8.0
#: An idle replica publishes and reads only every this many periods.
IDLE_EVERY = 10
#: At each look, only snapshots written within this many periods of the newest are read (older ones: at start).
RECENT_PERIODS = 30


def active(snapshots: Sequence[Snapshot], me: str, now: float, stale_s: float) -> list[Snapshot]:
    """The other replicas still running (fresh snapshots, not left)."""
    return [s for s in snapshots if s.replica != me and s.state != "left" and now - s.at <= stale_s]


def newest_knee(snapshots: Sequence[Snapshot]) -> tuple[float, float] | None:
    """The whole server's limit as the fleet last learned it (any replica, any age), and when."""
    knees = [(s.knee_total, s.knee_at) for s in snapshots if s.knee_total is not None and s.knee_at is not None]
    return max(knees, key=lambda knee: knee[1]) if knees else None


class LimitHolder(Protocol):
    """What the keeper needs of the slots (:class:`~.slots.RequestSlots`)."""

    policy: Limit

    def usage(self) -> Usage: ...

    def learned(self) -> Learned | None: ...

    def adjust(self, change: Callable[[GradientLimit], None]) -> None: ...


def want(snapshot: Snapshot) -> float:
    """How much of the server a replica would use: all it can get while held back (or starting), else its peak
    with a margin."""
    if snapshot.binding or snapshot.state == "joining":
        return math.inf
    return snapshot.peak * 1.25 + 1


def fair_shares(total: float, wants: Sequence[float]) -> list[float]:
    """Max-min fair split of ``total``: the smallest wants are met first, the rest is shared equally."""
    shares = [0.0] * len(wants)
    remaining = total
    order = sorted(range(len(wants)), key=lambda i: wants[i])
    for served, index in enumerate(order):
        share = min(wants[index], remaining / (len(wants) - served))
        shares[index] = share
        remaining -= share
    return shares


def start_point(
    snapshots: Sequence[Snapshot], me: str, now: float, stale_s: float, initial: int = INITIAL_LIMIT
) -> Learned | None:
    """Where this replica's limit starts (see the module docstring); ``None``: no history and nobody else."""
    others = active(snapshots, me, now, stale_s)
    knee = _total(newest_knee(snapshots))
    history = [s for s in snapshots if s.state != "joining"]
    if knee is None and not history and not others:
        return None
    newest = max(history, key=lambda s: s.at, default=None)
    running = sum(o.limit for o in others)
    if running > 0:  # a fleet at work: a share of what it holds now (they give theirs back at their next look)
        total = running
    elif knee is not None:  # alone, or starting together: what the server was learned to take
        total = knee
    else:
        total = max(float(initial), newest.fleet_total if newest is not None else 0.0)
    share = fair_shares(total, [math.inf, *(want(o) for o in others)])[0]
    if knee is None and running == 0:  # nothing learned: start at ``initial`` together, each at least at a floor
        share = max(share, min(float(initial), FRESH_FLOOR))
    baseline = newest.baseline_s if newest is not None else None
    learned = knee is not None or running > 0
    return Learned(limit=max(1.0, share), ssthresh=max(1.0, share) if learned else None, baseline_s=baseline)


def fair_target(
    own_limit: float, own_binding: bool, own_peak: int, others: Sequence[Snapshot], knee: float | None
) -> float | None:
    """Where this replica's limit should move to share what the fleet holds fairly, or ``None`` to leave it. The
    total is not changed here (each replica's own signal does that), only its split; nothing before the fleet has
    seen the server queue (``knee``): in slow start every replica doubles alike."""
    if not others or knee is None:
        return None
    total = own_limit + sum(o.limit for o in others)
    own_want = math.inf if own_binding else own_peak * 1.25 + 1
    shares = fair_shares(total, [own_want, *(want(o) for o in others)])
    target = shares[0] if own_binding else max(shares[0], total / (len(others) + 1) / 2)  # room for its next burst
    if target < own_limit * 0.95:
        starved = any(o.binding and o.limit < share * 0.95 for o, share in zip(others, shares[1:], strict=True))
        return target if starved else None
    if target > own_limit * 1.05 and own_binding:
        return target
    return None


class LimitKeeper:
    """Publishes this replica's limit and applies the fleet's decisions, every ``every_s`` seconds, in a
    thread; memory failures are logged (once per run of failures) and change nothing."""

    def __init__(
        self,
        slots: LimitHolder,
        memory: LimiterMemory,
        replica: str,
        every_s: float,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.slots = slots
        self.memory = memory
        self.replica = replica
        self.every_s = every_s
        self.stale_s = STALE_PERIODS * every_s + 2.0
        self.wall = wall
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.restored: Learned | None = None
        self._previous: Snapshot | None = None
        self._started_at: float | None = None
        self._idle_looks = 0

    def join(self) -> None:
        """Announce this replica before its limit starts, so replicas starting together share the start (what this
        replica's name held before, a previous run's snapshot, is kept for :meth:`begin`)."""
        before = self._load() or []
        self._previous = next((s for s in before if s.replica == self.replica and s.state != "joining"), None)
        self._publish("joining", binding=True, peak=0)

    def start(self) -> None:
        """Start from the fleet's (or the last run's) limit, then keep publishing in a thread."""
        self.begin()
        self._thread = threading.Thread(target=self._run, name="vlm-limit-keeper", daemon=True)
        self._thread.start()

    def begin(self) -> None:
        """Start from the fleet's (or the last run's) limit (:func:`start_point`)."""
        self._started_at = self.wall()
        snapshots = self._load()
        policy = self.slots.policy
        if snapshots is not None and self._previous is not None:
            snapshots = [s for s in snapshots if s.replica != self.replica] + [self._previous]
        if snapshots is not None and isinstance(policy, GradientLimit):
            initial = policy.limit
            point = start_point(snapshots, self.replica, self.wall(), self.stale_s, initial)
            if point is not None:
                knee = newest_knee(snapshots)
                self.slots.adjust(lambda limit: _restore(limit, point, knee))
                self.restored = point
                log.info(
                    "paddleocr-vl: the VLM request limit starts at %.0f (%s; %d other replica(s) active)",
                    point.limit,
                    "slow start" if point.ssthresh is None else "learned",
                    len(active(snapshots, self.replica, self.wall(), self.stale_s)),
                )

    def stop(self) -> None:
        """Stop the thread and publish that this replica left (its share goes back to the others)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._publish("left", binding=False, peak=0)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sync_once()

    def sync_once(self) -> None:
        """Publish, read the others, move toward the fair share. Idle (no request since the last look), only every
        :data:`IDLE_EVERY` looks: an idle replica needs no share, and the bucket is spared the calls."""
        usage = self.slots.usage()
        if usage.peak == 0 and not usage.binding:
            self._idle_looks += 1
            if self._idle_looks % IDLE_EVERY:
                return
        else:
            self._idle_looks = 0
        self._publish("running", binding=usage.binding, peak=usage.peak)
        snapshots = self._load(recent_s=RECENT_PERIODS * self.every_s)
        learned = self.slots.learned()
        if snapshots is None or learned is None:
            return
        others = active(snapshots, self.replica, self.wall(), self.stale_s)
        target = fair_target(learned.limit, usage.binding, usage.peak, others, _total(newest_knee(snapshots)))
        if target is not None and target < learned.limit:
            log.debug(
                "paddleocr-vl: VLM limit %.1f -> %.1f, the fair share with %d other(s)",
                learned.limit,
                target,
                len(others),
            )
        total_others = sum(o.limit for o in others)
        knee = newest_knee(snapshots)
        if knee is not None and self._started_at is not None and knee[1] > self._started_at:
            self.slots.adjust(lambda limit: limit.settle())  # a replica found the server's limit since we started
        if target is None:
            self.slots.adjust(lambda limit: setattr(limit, "fleet_others", total_others))
        else:
            contended = any(o.binding or o.state == "joining" for o in others)
            self.slots.adjust(lambda limit: limit.rebalance(target, total_others, contended=contended))

    def _publish(self, state: State, *, binding: bool, peak: int) -> None:
        policy = self.slots.policy
        if not isinstance(policy, GradientLimit):
            return
        learned = self.slots.learned()
        if learned is None:
            return
        limit = 0.0 if state == "joining" else learned.limit
        snapshot = Snapshot(
            replica=self.replica,
            at=self.wall(),
            state=state,
            limit=limit,
            ssthresh=learned.ssthresh,
            baseline_s=learned.baseline_s,
            binding=binding,
            peak=peak,
            fleet_total=limit + policy.fleet_others,
            knee_total=policy.knee_total,
            knee_at=policy.knee_at,
        )
        self._call(lambda: self.memory.save(snapshot), "saving")

    def _load(self, recent_s: float | None = None) -> list[Snapshot] | None:
        found: list[list[Snapshot]] = []
        self._call(lambda: found.append(self.memory.load(recent_s)), "reading")
        return found[0] if found else None

    def _call(self, action: Callable[[], None], doing: str) -> None:
        try:
            action()
        except Exception as exc:  # the memory is an optimisation: never let it fail a request or the engine
            if not self._failing:
                log.warning("paddleocr-vl: the VLM limit memory (%s) failed %s: %s", self.memory.where, doing, exc)
            self._failing = True
        else:
            if self._failing:
                log.info("paddleocr-vl: the VLM limit memory (%s) works again", self.memory.where)
            self._failing = False


def _total(knee: tuple[float, float] | None) -> float | None:
    return None if knee is None else knee[0]


def _restore(limit: GradientLimit, point: Learned, knee: tuple[float, float] | None) -> None:
    limit.restore(point)
    if knee is not None:
        limit.knee_total, limit.knee_at = knee
