"""Keeping jobs moving across replicas: the background task that resumes and takes over unfinished jobs.

At start every replica resumes or takes over the unfinished jobs it finds (on a local disk: all of them). With a
shared store it then, every second, applies what changed about the jobs it runs (taken over elsewhere, cancel
requested through another replica), and every ``JOB_SCAN_INTERVAL_S`` (with jitter, so that replicas started
together do not all claim at once) takes over jobs whose replica stopped: handed back at SIGTERM, or with an
expired lease after a crash.
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
    if not service.store.shared:
        return
    interval = service.settings.job_scan_interval_s
    next_scan = time.monotonic() + interval * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
    while not service.draining:
        await asyncio.sleep(_OWNERSHIP_EVERY_S)
        service.apply_ownership()
        if time.monotonic() < next_scan or service.draining:
            continue
        try:
            await service.take_over(limit=1 if service.active else None)
        except Exception:
            log.exception("taking over jobs failed; retried at the next scan")
        next_scan = time.monotonic() + interval * random.uniform(0.75, 1.25)  # noqa: S311
