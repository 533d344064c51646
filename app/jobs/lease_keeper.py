"""The thread that keeps a replica's job leases alive: it checks once whether the bucket enforces conditional
writes, then renews the leases every ``JOB_LEASE_S / 3``, notes cancel requests made through other replicas and
drops the leases of jobs whose last upload is through (:class:`app.jobs.leases.LeaseBook` does the work)."""

from __future__ import annotations

import logging
import threading
import time

from app.jobs.leases import LeaseBook
from app.storage.s3.errors import S3Unavailable

log = logging.getLogger(__name__)

_CANCEL_CHECK_S = 2.0


class LeaseKeeper:
    def __init__(self, leases: LeaseBook, lease_s: float) -> None:
        self.leases = leases
        self.renew_every = lease_s / 3
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="job-leases", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (the thread ends at its next wake-up; the leases stay as they are)."""
        self._stopping.set()

    def _keep(self) -> None:
        while not self._stopping.is_set():
            try:
                self.leases.detect_conditional_writes()
                break
            except S3Unavailable:
                self._stopping.wait(1.0)
        renewed = time.monotonic()
        while not self._stopping.wait(min(_CANCEL_CHECK_S, self.renew_every)):
            try:
                if time.monotonic() - renewed >= self.renew_every:
                    renewed = time.monotonic()
                    self.leases.renew()
                self.leases.check_cancels()
                self.leases.drop_finished()
            except S3Unavailable as exc:
                log.warning("job leases: %s (retried)", exc)
            except Exception:  # the keeper must not die: ownership would silently lapse
                log.exception("job leases: unexpected error (retried)")
