"""Where every request's document comes in: :class:`DocumentReceiver`, made once at start-up and used by
``POST /ocr``, ``POST /jobs`` and ``POST /layout-parsing`` alike.

For a request it chooses the engine, once (the :class:`~app.engines.select.Choice` is carried into the job), checks
that a URL source may be fetched, and receives the document into a server-named file under the store's
``.incoming`` folder (:func:`app.intake.sources.receive`), removed when the request is done with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from app.documents import Limits
from app.engines.registry import EngineSet
from app.engines.select import Choice
from app.errors import BadRequest
from app.intake.sources import DocumentSource, ReceivedDocument, receive
from app.intake.url_fetch import FetchPolicy
from app.settings import Settings
from app.storage.local import new_id


class DocumentReceiver:
    """Chooses a request's engine and receives its document (see the module's docstring)."""

    def __init__(self, settings: Settings, engines: EngineSet, incoming: Path) -> None:
        self.settings = settings
        self.engines = engines
        self.incoming = incoming
        #: What a document may hold (pages, pixels): checked when a job opens it, and when it is drawn again.
        self.limits = Limits(max_pages=settings.max_pages, max_image_pixels=settings.max_image_pixels)

    def choose_engine(
        self, languages: tuple[str, ...] | None = None, engine: str | None = None, *, strict: bool = False
    ) -> Choice:
        """The engine for a request (see :meth:`EngineSet.choose`): ``languages`` ``None`` = ``OCR_LANGUAGES``,
        ``engine`` ``None`` = ``auto``. Raises 422 ``invalid_engine`` / ``invalid_lang`` when none fits."""
        return self.engines.choose(languages, engine, strict=strict)

    def url_policy(self) -> FetchPolicy:
        """The guards for fetching a client-given URL; 400 ``url_input_disabled`` when ``ALLOW_URL_INPUT`` is off."""
        settings = self.settings
        if not settings.allow_url_input:
            raise BadRequest(
                "url_input_disabled", "URL input is disabled on this server (ALLOW_URL_INPUT); send the file"
            )
        return FetchPolicy(
            max_bytes=settings.max_upload_bytes,
            timeout_s=settings.url_fetch_timeout_s,
            allow_private=settings.allow_private_urls,
        )

    def check_source(self, source: DocumentSource) -> None:
        """400 ``url_input_disabled`` for a URL while ``ALLOW_URL_INPUT`` is off: before anything else is done."""
        if source.url is not None:
            self.url_policy()

    @contextlib.asynccontextmanager
    async def received(self, source: DocumentSource) -> AsyncIterator[ReceivedDocument]:
        """The document of ``source`` in a server-named file under ``.incoming``, removed on exit (a job takes its own
        copy or moves it away).

        Errors: those of :func:`app.intake.sources.receive` (400/413/415/422, URL refusals and fetch failures).
        """
        path = self.incoming / f"{new_id()}.upload"
        try:
            yield await receive(source, path, self.settings.max_upload_bytes, self.url_policy)
        finally:
            path.unlink(missing_ok=True)
