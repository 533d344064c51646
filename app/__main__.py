"""``python -m app``: serve the API with uvicorn on ``HOST:PORT`` (one worker)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

import uvicorn

from app.http_protocol import header_timeout_protocol
from app.malloc_arenas import limit_malloc_arenas
from app.settings import get_settings
from app.storage.local import OutputDirError, resolve_output_dir


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT once its graceful shutdown is done, so the process would end as
    "killed by signal" (exit 143). A completed graceful shutdown is a success here: exit 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()


def main() -> None:
    limit_malloc_arenas()  # before any thread starts
    settings = get_settings()
    try:  # the app checks again at start; here a bad OUTPUT_DIR ends the process with one clear line
        resolve_output_dir(settings.output_dir, "output_dir" in settings.model_fields_set)
    except OutputDirError as exc:
        print(f"cannot start: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    config = uvicorn.Config(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=1,
        access_log=False,  # app.middleware logs one line per request
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        http=header_timeout_protocol(settings.header_timeout_s),
    )
    server = _Server(config)
    server.run()
    # Shut down gracefully: requests finished, results written. Native engine libraries (onnxruntime,
    # paddle) may still run threads of their own, e.g. a model still loading when SIGTERM came, and
    # abort the interpreter's teardown ("terminate called without an active exception"): leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if server.started else 3)  # 3: uvicorn's code for a failed start (e.g. port in use)


if __name__ == "__main__":
    main()
