"""The output disk as a health signal: free space and writability of ``OUTPUT_DIR``, watched in the background.

:class:`DiskMonitor` checks every ``DISK_CHECK_INTERVAL_S`` (``statvfs`` and a small write probe, in a
worker thread) and keeps the outcome in memory, so ``/health`` and admission never touch the disk.
Below ``DISK_MIN_FREE_MB`` free, or when the probe cannot write, new work is refused with **507**
(``disk_full`` / ``disk_unwritable``) and ``/ready`` answers 503. A write that fails elsewhere with a
disk error (:func:`disk_error_kind`) is reported with :meth:`DiskMonitor.report_error`, which marks the
disk bad at once and brings the next check forward.

Why 507 and not 503: 503 here means "restarting or loading, retry in a moment"; a full disk needs
retention or an operator. 507 Insufficient Storage (RFC 4918) names the cause in the status itself, so
clients, dashboards and alerts tell it apart without reading bodies. ``Retry-After`` is still sent
(retention may free space), and generic clients that retry 5xx (``app.client``) do.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.errors import OutOfSpace, ServiceError

log = logging.getLogger(__name__)

DiskStatus = Literal["unknown", "ok", "low_space", "not_writable"]

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_READ_ONLY = frozenset({errno.EROFS})
_PROBE_BYTES = 4096
RETRY_AFTER_S = 60


def disk_error_kind(exc: BaseException) -> Literal["full", "read_only"] | None:
    """``"full"`` for ENOSPC/EDQUOT, ``"read_only"`` for EROFS (also when wrapped as a cause), else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            if current.errno in _FULL:
                return "full"
            if current.errno in _READ_ONLY:
                return "read_only"
        current = current.__cause__ or current.__context__
    return None


def is_disk_full_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the disk cannot take writes right now (full, over quota or read-only): the
    write is worth retrying once :meth:`DiskMonitor.wait_writable` returns, not a bug to report."""
    return disk_error_kind(exc) is not None


@dataclass(frozen=True)
class DiskState:
    """One check's outcome. ``free_bytes`` is what an unprivileged writer may use (``f_bavail``)."""

    status: DiskStatus
    free_bytes: int | None = None
    total_bytes: int | None = None
    reason: str | None = None
    checked_at: float = 0.0  # time.monotonic()

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _mb(value: int) -> str:
    return f"{value / 1024 / 1024:.0f} MB"


def check_disk(root: Path, min_free_bytes: int) -> DiskState:
    """Check ``root`` now (blocking: call it from a worker thread): free space, then a write probe."""
    now = time.monotonic()
    try:
        stats = os.statvfs(root)
    except OSError as exc:
        return DiskState("not_writable", reason=f"cannot read {root}: {exc.strerror or exc}", checked_at=now)
    free = stats.f_bavail * stats.f_frsize
    total = stats.f_blocks * stats.f_frsize
    probe = root / f".disk-probe-{os.getpid()}"
    try:
        with probe.open("wb") as handle:
            handle.write(b"\0" * _PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        kind = disk_error_kind(exc)
        status: DiskStatus = "low_space" if kind == "full" else "not_writable"
        what = "is full" if kind == "full" else "is read-only" if kind == "read_only" else "is not writable"
        return DiskState(status, free, total, f"OUTPUT_DIR {root} {what}: {exc.strerror or exc}", now)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    if free < min_free_bytes:
        reason = f"OUTPUT_DIR {root} has {_mb(free)} free, below DISK_MIN_FREE_MB ({_mb(min_free_bytes)})"
        return DiskState("low_space", free, total, reason, now)
    return DiskState("ok", free, total, None, now)


class DiskMonitor:
    """Watches one directory; every reader gets the last outcome from memory.

    ``ok``, ``reason``, ``free_bytes`` and :meth:`health` are safe from any thread. :meth:`report_error`
    may be called from any thread; :meth:`wait_writable` and :meth:`start` from the event loop.
    """

    def __init__(
        self, root: Path, min_free_bytes: int, interval_s: float = 5.0, fallback_from: Path | None = None
    ) -> None:
        self.root = root
        self.min_free_bytes = min_free_bytes
        self.interval_s = interval_s
        self.fallback_from = fallback_from  # OUTPUT_DIR was not writable and the default moved here
        self.state = DiskState("unknown", reason="not checked yet")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writable: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def ok(self) -> bool:
        return self.state.ok

    @property
    def reason(self) -> str | None:
        return self.state.reason

    @property
    def free_bytes(self) -> int | None:
        return self.state.free_bytes

    def check_now(self) -> DiskState:
        """Check at once (blocking) and keep the outcome; returns it."""
        self._apply(check_disk(self.root, self.min_free_bytes))
        return self.state

    def start(self) -> None:
        """Start checking in the background (on the running loop)."""
        self._loop = asyncio.get_running_loop()
        self._writable = asyncio.Event()
        self._wake = asyncio.Event()
        if self.ok:
            self._writable.set()
        self._task = self._loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                state = await asyncio.to_thread(check_disk, self.root, self.min_free_bytes)
            except Exception:  # never let the watcher die: the last state stays, it retries
                log.exception("disk check of %s failed", self.root)
            else:
                self._apply(state)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()

    def _apply(self, state: DiskState) -> None:
        previous = self.state
        self.state = state
        if state.status != previous.status:
            if state.ok:
                log.info("disk: OUTPUT_DIR %s is writable again (%s free)", self.root, _mb(state.free_bytes or 0))
            else:
                log.warning("disk: %s; new work is refused until it recovers", state.reason)
        self._signal()

    def _signal(self) -> None:
        if self._writable is None or self._loop is None:
            return
        if self._loop_is_current():
            self._set_writable(self.ok)
        else:
            self._loop.call_soon_threadsafe(self._set_writable, self.ok)

    def _loop_is_current(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _set_writable(self, ok: bool) -> None:
        assert self._writable is not None
        if ok:
            self._writable.set()
        else:
            self._writable.clear()

    def report_error(self, exc: BaseException) -> bool:
        """Record a write that failed with a disk error (see :func:`disk_error_kind`): the disk counts as
        bad at once and the next check runs soon. Returns whether ``exc`` was such an error."""
        kind = disk_error_kind(exc)
        if kind is None:
            return False
        status: DiskStatus = "low_space" if kind == "full" else "not_writable"
        what = "is full" if kind == "full" else "is read-only"
        strerror = getattr(exc, "strerror", None) or str(exc)
        reason = f"a write failed: OUTPUT_DIR {self.root} {what} ({strerror})"
        self._apply(DiskState(status, self.state.free_bytes, self.state.total_bytes, reason, time.monotonic()))
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
        return True

    async def wait_writable(self, timeout: float | None = None) -> bool:
        """Wait until a check finds the disk writable with enough space; False when ``timeout`` passes first."""
        if self.ok:
            return True
        if self._writable is None:
            raise RuntimeError("DiskMonitor.start() was not called")
        try:
            await asyncio.wait_for(self._writable.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def refusal(self) -> ServiceError | None:
        """The 507 to answer new work with while the disk is bad, else None."""
        state = self.state
        if state.ok or state.status == "unknown":
            return None
        code = "disk_full" if state.status == "low_space" else "disk_unwritable"
        return OutOfSpace(
            code,
            f"this replica cannot store documents now: {state.reason}; retry later",
            retry_after=RETRY_AFTER_S,
        )

    def check_writable(self) -> None:
        """Raise :meth:`refusal` when there is one (for admission of new work)."""
        error = self.refusal()
        if error is not None:
            raise error

    def error_for(self, exc: BaseException) -> ServiceError | None:
        """For a write that failed with a disk error: report it and return the 507 to answer; else None."""
        if not self.report_error(exc):
            return None
        return self.refusal()

    def health(self) -> dict[str, Any]:
        """The state for ``/health`` (from memory)."""
        state = self.state
        return {
            "status": state.status,
            "output_dir": str(self.root),
            "free_mb": None if state.free_bytes is None else round(state.free_bytes / 1024 / 1024, 1),
            "total_mb": None if state.total_bytes is None else round(state.total_bytes / 1024 / 1024, 1),
            "min_free_mb": round(self.min_free_bytes / 1024 / 1024, 1),
            "reason": state.reason,
            "fallback_from": None if self.fallback_from is None else str(self.fallback_from),
            "checked_seconds_ago": None if not state.checked_at else round(time.monotonic() - state.checked_at, 1),
        }
