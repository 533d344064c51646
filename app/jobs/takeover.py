"""Keeping jobs moving across replicas: the background task that resumes and takes over unfinished jobs.

At start a replica resumes the unfinished jobs it finds (on a local disk: all of them). With a shared store it
then, every second, applies what changed about the jobs it runs (taken over elsewhere, cancel
requested through another replica), and takes over a job whose replica stopped (handed back at SIGTERM, or with a
lease this replica has observed unchanged for ``JOB_LEASE_S``: see :mod:`app.jobs.ownership.observer`), once its
engines are ready: an idle replica as soon as one is due (after a random moment, so that replicas do not all claim
at once), a busy one (pages waiting for a worker) only at its scans, every three ``JOB_SCAN_INTERVAL_S``, so that
idle replicas take such jobs first. A job therefore waits at most about ``JOB_LEASE_S + JOB_SCAN_INTERVAL_S`` for a
new owner once its owner is gone.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from app.jobs.service import OcrService

log = logging.getLogger(__name__)

_OWNERSHIP_EVERY_S = 1.0


async def keep_jobs_moving(service: OcrService) -> None:
    """Run until cancelled (the app's lifespan ends); never raises."""
    try:
        resumed = await service.take_over()
        if resumed:
            log.info("resumed %d unfinished job(s)", resumed)
    except Exception:
        log.exception("resuming unfinished jobs failed; retried at the next scan")
    if not service.owner.others_may_run:
        return
    interval = service.settings.job_scan_interval_s
    next_scan = time.monotonic() + interval * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
    while not service.draining:
        await asyncio.sleep(_OWNERSHIP_EVERY_S)
        service.apply_ownership()
        idle = not service.scheduler.queued
        due = idle and service.owner.takeover_due()
        if (time.monotonic() < next_scan and not due) or service.draining:
            continue
        if due:
            await asyncio.sleep(random.uniform(0, _OWNERSHIP_EVERY_S))  # noqa: S311 - jitter, not security
        try:
            await service.take_over()
        except Exception:
            log.exception("taking over jobs failed; retried at the next scan")
        busy = 3 if service.scheduler.queued else 1
        next_scan = time.monotonic() + busy * interval * random.uniform(0.75, 1.25)  # noqa: S311
