"""Lease expiry as one replica observes it, never computed from another replica's clock (as Chubby's leases).

A replica may take a job over only after it has itself seen the job's lease at the same version (ETag) for
``JOB_LEASE_S`` of its own monotonic time. Every renewal writes a new version, so a live owner's lease never stays
unchanged that long. The clock of an observation runs only while this replica keeps observing: a gap longer than
half the lease period between two successful listings (S3 unreachable, this replica frozen or busy) starts every
clock again, because the owner may have been unable to renew during that gap just as this replica was unable to
look. So skewed wall clocks, an S3 outage, or a freeze of the observer cause no takeover from a live owner.
"""

from __future__ import annotations

from collections.abc import Mapping


class ExpiryObserver:
    """Which leases (by job id) have stayed at one version for the whole lease period. Not thread-safe: one
    caller (the lease keeper thread) observes; the others read through the owning :class:`LeaseBook`'s lock."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.max_gap = ttl / 2
        self.seen: dict[str, tuple[str, float]] = {}  # job id -> (ETag, since when, monotonic)
        self.last_ok: float | None = None

    def observe(self, versions: Mapping[str, str], now: float) -> None:
        """A successful listing at ``now``: job id -> the ETag of its lease."""
        continuous = self.last_ok is not None and now - self.last_ok <= self.max_gap
        seen = {}
        for job_id, etag in versions.items():
            before = self.seen.get(job_id)
            keep = continuous and before is not None and before[0] == etag
            seen[job_id] = before if keep and before is not None else (etag, now)
        self.seen = seen
        self.last_ok = now

    def failed(self) -> None:
        """A listing failed: nothing is known about the time until the next success."""
        self.last_ok = None

    def expired(self, now: float) -> list[str]:
        """Jobs whose lease has been seen unchanged for ``ttl``, longest unchanged first."""
        if self.last_ok is None or now - self.last_ok > self.max_gap:
            return []
        due = [(since, job_id) for job_id, (_, since) in self.seen.items() if now - since >= self.ttl]
        return [job_id for _, job_id in sorted(due)]

    def version(self, job_id: str) -> str | None:
        """The ETag observed for ``job_id``'s lease."""
        seen = self.seen.get(job_id)
        return None if seen is None else seen[0]

    def next_expiry(self) -> float | None:
        """When (monotonic) the next observed lease would expire if it stays unchanged."""
        return min((since + self.ttl for _, since in self.seen.values()), default=None)

    def forget(self, job_id: str) -> None:
        self.seen.pop(job_id, None)
