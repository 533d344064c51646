"""The durable outbox of the S3 mirror: what is still to be uploaded, one entry per job, on local disk.

An entry is ``OUTPUT_DIR/.outbox/<job id>.json``: an ordered list of files (path relative to ``OUTPUT_DIR``,
S3 key, content type) and, optionally, the job's ``job.json``. It is written (atomically) before the request
that produced the files returns, so a restart, an S3 outage or a bad network never loses an upload; entries
found at start-up are resumed.

Ordering, which is what makes a half-mirrored job never look complete in S3:

- files are uploaded in the order they were added; a job adds its result as images, ``result.md`` and
  ``result.json`` last, so ``result.json`` (the marker of a complete result) appears only after the rest;
- a delete is an item too (``Item.delete``): adding it drops an upload of the same key still pending;
- ``job.json`` is always uploaded after every file of its entry, and its bytes are read from disk at that
  moment *under the outbox lock*. The service adds the result files before it writes the job's final state,
  so a ``job.json`` that says ``succeeded`` reaches S3 only after the result it points to.

``job.json`` changes with every page; it is not copied into the entry but read when its turn comes, so a
slow or absent S3 uploads only the latest state (coalescing). Files, in contrast, never change once written.

Uploaded files are dropped from the entry in memory only; after a crash the remaining entry on disk may
upload a file again under the same key. Puts are idempotent, keys are deterministic, so each object still
ends up exactly once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.storage.local import atomic_write, is_valid_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One file to upload: ``file`` relative to ``OUTPUT_DIR``; ``completes_result`` marks ``result.json``.

    ``delete``: remove the object at ``key`` instead (``file`` unused). ``owner`` (a job id) and ``version``
    guard a key that several jobs may write: they are stored with the object as metadata; an upload does
    not replace an object of a newer version, and a delete removes the object only while the owner's is there.
    """

    file: str
    key: str
    content_type: str
    completes_result: bool = False
    delete: bool = False
    owner: str = ""
    version: str = ""


@dataclass
class Entry:
    """A job's pending uploads. ``busy``, ``failures`` and ``next_try`` live in memory only."""

    job_id: str
    created_at: float = field(default_factory=time.time)
    items: list[Item] = field(default_factory=list)
    job_state: Item | None = None  # job.json, uploaded after every item
    result: bool = False  # holds a result whose result.json is not uploaded yet
    busy: bool = False
    failures: int = 0
    next_try: float = 0.0

    @property
    def has_work(self) -> bool:
        return bool(self.items) or self.job_state is not None

    def to_json(self) -> bytes:
        data = {
            "job_id": self.job_id,
            "created_at": self.created_at,
            "items": [asdict(i) for i in self.items],
            "job_state": asdict(self.job_state) if self.job_state else None,
            "result": self.result,
        }
        return json.dumps(data, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Entry:
        raw: dict[str, Any] = json.loads(data)
        state = raw.get("job_state")
        return cls(
            job_id=str(raw["job_id"]),
            created_at=float(raw["created_at"]),
            items=[Item(**i) for i in raw.get("items", [])],
            job_state=Item(**state) if state else None,
            result=bool(raw.get("result", False)),
        )


@dataclass(frozen=True)
class Step:
    """The next upload of an entry: a file's path, or ``job.json``'s bytes already read."""

    item: Item
    body: bytes | None = None


class Outbox:
    """Entries under ``folder``, indexed in memory. All methods are thread-safe; none does network I/O.

    ``cond`` is the lock of the whole outbox (uploader threads wait on it for work). Callers on the event
    loop must not take it: it is held while an entry is written to disk.
    """

    def __init__(self, folder: Path, root: Path, state_guard: Callable[[str], bool] | None = None) -> None:
        self.folder = folder
        self.root = root
        #: Whether this replica may still write a job's ``job.json`` (not once another replica has the job).
        self.state_guard = state_guard or (lambda job_id: True)
        self.cond = threading.Condition()
        self.entries: dict[str, Entry] = {}
        self.stats: tuple[int, int, float | None] = (0, 0, None)  # entries, results, oldest created_at

    def load(self) -> int:
        """Read the entries left by an earlier run; returns how many. Unreadable files are set aside."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.cond:
            for path in sorted(self.folder.glob("*.json")):
                try:
                    entry = Entry.from_json(path.read_bytes())
                    if entry.job_id != path.stem or not is_valid_id(entry.job_id):
                        raise ValueError("entry name and job id differ")
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.error("outbox entry %s is unreadable (%s); moved aside", path.name, type(exc).__name__)
                    path.replace(path.with_suffix(".broken"))
                    continue
                self.entries[entry.job_id] = entry
            self._update_stats()
            self.cond.notify_all()
            return len(self.entries)

    # --- adding (service threads) ---------------------------------------------------------------
    def add(self, job_id: str, items: Sequence[Item] = (), job_state: Item | None = None, result: bool = False) -> None:
        """Append ``items`` (a key already pending moves to the end) and/or mark ``job.json`` to upload.

        The entry is on disk when this returns (written only when something on disk would change).
        """
        with self.cond:
            entry = self.entries.get(job_id)
            created = entry is None
            if entry is None:
                entry = self.entries[job_id] = Entry(job_id)
            changed = created or bool(items) or (result and not entry.result)
            for item in items:
                entry.items = [i for i in entry.items if i.key != item.key]
                entry.items.append(item)
            if job_state is not None:
                changed = changed or entry.job_state is None
                entry.job_state = job_state
            entry.result = entry.result or result
            if changed:
                atomic_write(self._path(job_id), entry.to_json())
            self._update_stats()
            self.cond.notify()

    # --- uploading (uploader threads; callers hold ``cond``) ------------------------------------
    def claim(self, now: float) -> Entry | None:
        """The oldest idle entry that is due, marked busy; None when there is none."""
        due = [e for e in self.entries.values() if not e.busy and e.has_work and e.next_try <= now]
        if not due:
            return None
        entry = min(due, key=lambda e: e.created_at)
        entry.busy = True
        return entry

    def next_due(self) -> float | None:
        """The earliest ``next_try`` of an idle entry with work, or None."""
        times = [e.next_try for e in self.entries.values() if not e.busy and e.has_work]
        return min(times) if times else None

    def next_step(self, entry: Entry) -> Step | None:
        """The entry's next upload; None (and the entry is removed, on disk too) when nothing is left.

        ``job.json`` is read here, under the lock, so that its content is never newer than the files queued
        before it (see the module docstring).
        """
        if entry.items:
            return Step(entry.items[0])
        if entry.job_state is not None:
            state, entry.job_state = entry.job_state, None
            if not self.state_guard(entry.job_id):
                log.info("job %s: its state is no longer this replica's to write; not mirrored", entry.job_id)
                return self.next_step(entry)
            try:
                return Step(state, (self.root / state.file).read_bytes())
            except OSError:
                log.warning("job state %s is gone; not mirrored", state.file)
                return self.next_step(entry)
        self._path(entry.job_id).unlink(missing_ok=True)  # first: once it leaves ``entries`` nothing is pending
        self.entries.pop(entry.job_id, None)
        self._update_stats()
        return None

    def done(self, entry: Entry, step: Step) -> None:
        """Forget an uploaded (or vanished) file; clear ``result`` when it was ``result.json``."""
        if step.body is None:
            entry.items = [i for i in entry.items if i is not step.item]
            if step.item.completes_result:
                entry.result = False
                self._update_stats()
        entry.failures = 0

    def failed(self, entry: Entry, step: Step | None, retry_at: float) -> None:
        """Put a failed ``job.json`` step back and make the entry wait until ``retry_at``."""
        if step is not None and step.body is not None and entry.job_state is None:
            entry.job_state = step.item
        entry.failures += 1
        entry.next_try = retry_at
        entry.busy = False

    def retry_now(self) -> None:
        """Make every entry due at once (S3 is known to work again) and wake the uploaders."""
        for entry in self.entries.values():
            entry.next_try = 0.0
        self.cond.notify_all()

    def release(self, entry: Entry) -> None:
        entry.busy = False

    def result_pending(self, job_id: str) -> bool:
        """Whether the job's result is waiting to be uploaded. Lock-free (safe on the event loop)."""
        entry = self.entries.get(job_id)
        return entry is not None and entry.result

    def summary(self) -> str:
        """What is left, for the shutdown log: entries, files, results and job states ("" when empty)."""
        with self.cond:
            entries = list(self.entries.values())
        if not entries:
            return ""
        files = sum(len(e.items) for e in entries)
        results = sum(1 for e in entries if e.result)
        states = sum(1 for e in entries if e.job_state is not None)
        return f"{len(entries)} job(s): {files} file(s), {results} result(s), {states} job state(s)"

    def upload_pending(self, job_id: str, key: str) -> bool:
        """Whether an upload of ``key`` is waiting in the job's entry. Lock-free (safe on the event loop)."""
        entry = self.entries.get(job_id)
        return entry is not None and any(i.key == key and not i.delete for i in list(entry.items))

    def _path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.json"

    def _update_stats(self) -> None:
        entries = list(self.entries.values())
        oldest = min((e.created_at for e in entries), default=None)
        self.stats = (len(entries), sum(1 for e in entries if e.result), oldest)
