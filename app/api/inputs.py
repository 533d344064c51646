"""The document inputs shared by ``POST /ocr`` and ``POST /jobs``: a multipart file plus options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, File, Form, UploadFile

from app.api.deps import get_service
from app.documents import check_dpi
from app.engines.languages import parse_languages
from app.errors import bad_request, invalid_field
from app.service import OcrOptions, OcrService
from app.storage.local import new_id
from app.uploads import save_upload


@dataclass
class DocumentInput:
    """An uploaded document stored under a server-made name, its sniffed type and the options."""

    path: Path
    filename: str | None
    content_type: str
    options: OcrOptions

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


async def document_input(
    *,
    file: UploadFile | None = File(None, description="PDF, PNG, JPEG, TIFF, WebP or BMP"),
    pages: str | None = Form(None, description="pages to recognise, e.g. '1-3,5' (all by default)"),
    dpi: int | None = Form(None, description="PDF rasterising resolution (default 150)"),
    lang: str | None = Form(
        None, description="languages of the document, ISO 639-1, e.g. 'ru,en' (default OCR_LANGUAGES)"
    ),
    engine: str | None = Form(None, description="an engine among those loaded (see /health); default: auto"),
    service: OcrService = Depends(get_service),
) -> DocumentInput:
    """Validate the options, then stream the file to disk (400/413/415/422 on bad input)."""
    settings = service.settings
    options = OcrOptions(
        pages=pages,
        dpi=check_dpi(dpi, settings.pdf_dpi, settings.max_dpi),
        languages=check_languages(lang),
        engine=check_engine(engine),
    )
    service.engines.choose(options.languages, options.engine)  # 422 before the upload is read
    if file is None:
        raise bad_request("no_file", "send the document in the multipart field 'file'")
    path = service.store.incoming / f"{new_id()}.upload"
    content_type = await save_upload(file.file, path, settings.max_upload_bytes)
    return DocumentInput(path=path, filename=file.filename, content_type=content_type, options=options)


def check_languages(lang: str | None) -> tuple[str, ...] | None:
    """The ``lang`` option as canonical codes; ``None`` when absent or blank (``OCR_LANGUAGES`` applies)."""
    if lang is None or not lang.strip():
        return None
    try:
        return parse_languages(lang)
    except ValueError as exc:
        raise invalid_field("lang", str(exc)) from None


def check_engine(engine: str | None) -> str | None:
    """The ``engine`` option; ``None`` for absent, blank or ``auto``."""
    name = (engine or "").strip().lower()
    return None if name in ("", "auto") else name
