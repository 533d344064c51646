"""Retention: finished jobs and their results are deleted ``RESULT_TTL_HOURS`` after they end; while ``OUTPUT_DIR`` is
short of space (``DISK_MIN_FREE_MB``), the oldest finished jobs' stored documents go first."""

from __future__ import annotations

import asyncio
import logging
import time

from app.jobs.service import OcrService

log = logging.getLogger(__name__)


async def clean_up_periodically(service: OcrService, every_s: float = 600, pressure_every_s: float = 10) -> None:
    """Run the clean-up now and every ``every_s`` seconds, and free space every ``pressure_every_s`` seconds while the
    disk is short of it, until cancelled; a failure is logged and retried."""
    next_cleanup = 0.0
    while True:
        try:
            if time.monotonic() >= next_cleanup:
                next_cleanup = time.monotonic() + every_s
                removed = await service.cleanup()
                if removed:
                    log.info("retention: removed %d expired job(s)", removed)
            await service.free_space()
        except OSError as exc:
            log.warning("retention clean-up failed: %s", exc)
        await asyncio.sleep(pressure_every_s)
