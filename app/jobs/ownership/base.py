"""The ownership interface: which replica runs which job, and how a job moves to another replica.

:class:`~app.jobs.ownership.sole.SoleOwnership`: one replica on one disk owns every job (after a restart it resumes
them all). :class:`~app.jobs.ownership.shared.SharedOwnership`: leases in the bucket (:mod:`app.jobs.ownership.leases`).
Calls may block (S3), except the ones marked memory-only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from app.jobs.models import JobRecord


@dataclass
class Changes:
    """What changed about the jobs this replica runs (memory only)."""

    lost: set[str] = field(default_factory=set)  # another replica holds them now: stop, write nothing more
    cancel: set[str] = field(default_factory=set)  # another replica was asked to cancel them


@dataclass(frozen=True)
class Claimed:
    """A job taken to run here: its record (naming this owner), whom it was taken from, and the crashes in a row
    without progress that this takeover counts (see :mod:`app.jobs.takeover_policy`)."""

    record: JobRecord
    previous_owner: str | None = None
    crashes: int = 0
    takeovers: int = 0
    epoch: int = 0


@dataclass(frozen=True)
class OwnershipHealth:
    """The ownership part of ``/health``'s ``s3`` block."""

    conditional_writes: str
    replica: str
    jobs_held: int
    jobs_taken_over: int


class Ownership(ABC):
    #: This replica's name in the shared store (a job's ``owner``); None on a local disk.
    replica: str | None = None
    #: How long a job that cannot write (a full disk) waits before it is handed to another replica; None: never.
    hand_over_after_s: float | None = None
    #: Whether other replicas may run these jobs: then a replica takes over one job at a time, only with room to
    #: spare, and keeps looking for more; else it resumes every unfinished job once, at start.
    others_may_run: bool = False

    def start(self) -> None:  # noqa: B027 - optional hook
        """Start background work (renewing leases). Blocking; called once before the first job."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Hand back every job still held and stop (the repository's uploads are flushed before)."""

    def watch(self, running: Callable[[], Collection[str]]) -> None:  # noqa: B027 - optional hook
        """``running()`` says which jobs run on this replica now (thread-safe): what is held for a job that runs
        nowhere here is handed back."""

    def accept(self, record: JobRecord) -> None:  # noqa: B027 - optional hook
        """Own a job just accepted here (its record is stored already). :class:`StorageUnavailable`."""

    @abstractmethod
    def orphans(self) -> list[str]:
        """Ids of unfinished jobs that no replica runs, oldest first (at start: every unfinished job here)."""

    def takeover_due(self) -> bool:
        """Whether a job may be taken over now (memory only)."""
        return False

    @abstractmethod
    def claim(self, job_id: str) -> Claimed | None:
        """Take an orphan to run it here; None when another replica has it or it has finished."""

    def note_cancel_requested(self, job_id: str) -> None:  # noqa: B027 - optional hook
        """A job just taken: note a cancel asked for while nobody ran it. :class:`StorageUnavailable`."""

    def changes(self, running: Collection[str]) -> Changes:
        """Which of the ``running`` jobs were taken over or asked to cancel elsewhere (memory only)."""
        return Changes()

    def page_starting(self, job_id: str) -> None:  # noqa: B027 - optional hook
        """A page of the job is about to be recognised here (worker thread): a crash from now on may be the job's
        doing (see ``MAX_JOB_TAKEOVERS``)."""

    @abstractmethod
    def finish(self, record: JobRecord) -> None:
        """The job has ended here: give up its ownership once its files are stored for good, and log its end
        (:func:`~app.jobs.models.log_finished`) once its final record is."""

    def hand_back(self, job_id: str) -> None:  # noqa: B027 - optional hook
        """This replica stops running the job before its end: let another replica take it."""

    def request_cancel(self, job_id: str) -> None:  # noqa: B027 - optional hook
        """Ask the replica running the job to cancel it. :class:`StorageUnavailable`."""

    def held(self) -> Collection[str]:
        """Jobs whose ownership this replica holds (the retention keeps them; memory only)."""
        return ()

    def health(self) -> OwnershipHealth | None:
        return None
