"""``python -m app``: serve the API with uvicorn on ``HOST:PORT`` (one worker)."""

import signal
import sys
from types import FrameType

import uvicorn

from app.settings import get_settings


def _exit_cleanly(sig: int, frame: FrameType | None) -> None:
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal with the handler it found
    # at start: this one, so that a requested stop ends with exit code 0 rather than "killed".
    sys.exit(0)


def main() -> None:
    settings = get_settings()
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=1,
        access_log=False,  # app.middleware logs one line per request
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )


if __name__ == "__main__":
    main()
