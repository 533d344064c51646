"""Retention: finished jobs and their results are deleted ``RESULT_TTL_HOURS`` after they end."""

from __future__ import annotations

import asyncio
import logging

from app.jobs.service import OcrService

log = logging.getLogger(__name__)


async def clean_up_periodically(service: OcrService, every_s: float = 600) -> None:
    """Run the clean-up now and every ``every_s`` seconds until cancelled; a failure is logged and retried."""
    while True:
        try:
            removed = await service.cleanup()
            if removed:
                log.info("retention: removed %d expired job(s)", removed)
        except OSError as exc:
            log.warning("retention clean-up failed: %s", exc)
        await asyncio.sleep(every_s)
