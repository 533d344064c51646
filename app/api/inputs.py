"""The document inputs shared by ``POST /ocr`` and ``POST /jobs``.

One document per request, from any of these sources (exactly one):

- multipart form: a file in ``file``; or a base64 string in ``file`` / ``image_base64``; or a URL in
  ``url`` / ``image_url``;
- JSON body: ``{"file": "<base64>"}`` (or ``image_base64``), or ``{"url": "https://..."}`` (or ``image_url``),
  with ``filename`` optional.

Options come from the same form or JSON object: ``pages``, ``dpi``, ``lang``, ``lang_strict``, ``engine``,
``output``, ``return_content``, ``export_name``.
The field names ``image_base64``, ``image_url``, ``file`` and ``return_content`` are those of the service
this one replaces, with the same meaning. Every source ends as a server-named file on disk with its
type sniffed from the bytes (400/413/415/422 on bad input; URL refusals are 400).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, Request
from starlette.datastructures import UploadFile

from app.api.deps import get_service
from app.documents import check_dpi
from app.engines.languages import parse_languages
from app.errors import ServiceError, arrived_at, bad_request, invalid_field
from app.jobs.models import JobRecord, OcrOptions
from app.jobs.service import OcrService
from app.storage.local import new_id
from app.storage.rag_export import check_export_name  # issue-19
from app.uploads import save_base64, save_upload, save_url

OUTPUTS = ("json", "markdown", "text")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass
class DocumentInput:
    """A received document stored under a server-made name, its sniffed type and the options."""

    path: Path
    filename: str | None
    content_type: str
    options: OcrOptions
    output: str = "json"
    return_content: bool = True

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def _text(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None or isinstance(value, UploadFile):
        return None
    return str(value).strip() or None


def parse_dpi(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid_field("dpi", "must be a whole number") from None


def parse_bool(name: str, value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise invalid_field(name, "must be true or false")


def parse_export_name(value: Any) -> str | None:  # issue-19
    """The ``export_name`` option (see :mod:`app.storage.rag_export`); 422 when too long or nameless."""
    if value is None or isinstance(value, UploadFile):
        return None
    try:
        return check_export_name(str(value))
    except ValueError as exc:
        raise invalid_field("export_name", str(exc)) from None


def parse_output(value: Any) -> str:
    text = str(value or "json").strip().lower()
    if text not in OUTPUTS:
        raise invalid_field("output", f"must be one of {', '.join(OUTPUTS)}")
    return text


async def _fields(request: Request, base64_limit: int) -> Mapping[str, Any]:
    """The request's fields: the JSON object, or the multipart/urlencoded form."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ServiceError(422, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ServiceError(422, "invalid_json", "the JSON body must be an object")
        return body
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        # A base64 document may ride in a plain form field: allow fields as large as the body may be.
        return await request.form(max_part_size=base64_limit)
    if content_type:
        raise ServiceError(415, "unsupported_body", "send multipart/form-data or application/json")
    return {}


async def document_input(request: Request, service: OcrService = Depends(get_service)) -> DocumentInput:
    """Read the options, then receive the document to disk. Errors are 4xx :class:`ServiceError`s."""
    settings = service.settings
    fields = await _fields(request, base64_body_limit(settings.max_upload_bytes))
    options = OcrOptions(
        pages=_text(fields, "pages"),
        dpi=check_dpi(parse_dpi(fields.get("dpi")), settings.pdf_dpi, settings.max_dpi),
        languages=check_languages(_text(fields, "lang")),
        engine=check_engine(_text(fields, "engine")),
        strict_languages=parse_bool("lang_strict", fields.get("lang_strict"), False),
        export_name=parse_export_name(fields.get("export_name")),  # issue-19
    )
    service.engines.choose(options.languages, options.engine)  # 422 before the document is received
    output = parse_output(fields.get("output"))
    return_content = parse_bool("return_content", fields.get("return_content"), True)

    upload = fields.get("file")
    encoded = _text(fields, "image_base64") or _text(fields, "file")
    url = _text(fields, "url") or _text(fields, "image_url")
    sources = [s for s in (isinstance(upload, UploadFile), encoded is not None, url is not None) if s]
    if not sources:
        raise bad_request("no_file", "send the document as a file in 'file', as base64 in 'file', or a 'url'")
    if len(sources) > 1:
        raise bad_request("several_sources", "send one document: a file, base64 or a URL, not several")

    path = service.store.incoming / f"{new_id()}.upload"
    filename = _text(fields, "filename")
    if isinstance(upload, UploadFile):
        content_type = await save_upload(upload.file, path, settings.max_upload_bytes)
        filename = upload.filename
    elif encoded is not None:
        content_type = await save_base64(encoded, path, settings.max_upload_bytes)
    else:
        assert url is not None
        content_type = await save_url(url, path, service.url_policy())
        filename = filename or url.rsplit("/", 1)[-1].split("?", 1)[0] or None
    return DocumentInput(path, filename, content_type, options, output, return_content)


async def submit_document(request: Request, service: OcrService, document: DocumentInput) -> JobRecord:
    """Submit the received document as a job (the service takes the file) and note it for the request log."""
    try:
        record = await service.submit(
            document.path,
            document.filename,
            document.content_type,
            document.options,
            arrived=arrived_at(request.scope),
        )
    finally:
        document.discard()
    request.state.log = {"job": record.id, "pages": len(record.pages), "engine": record.engine}
    return record


def base64_body_limit(max_upload_bytes: int) -> int:
    """Largest body carrying a base64 document of ``max_upload_bytes`` (4/3 of it) plus options."""
    return -(-max_upload_bytes // 3) * 4 + 1024 * 1024


_FORMATS = "PDF, PNG, JPEG, TIFF, WebP or BMP"
_OPTIONS_SCHEMA: dict[str, Any] = {
    "pages": {"type": "string", "description": "pages to recognise, e.g. '1-3,5' (all by default)"},
    "lang": {
        "type": "string",
        "description": "languages, ISO 639-1, e.g. 'ru,en' (default OCR_LANGUAGES); a language not written in "
        "Latin script (ru, uk, el, ar, ...) is read together with English, for the Latin words in it",
    },
    "lang_strict": {
        "type": "boolean",
        "description": "true: read only the languages in lang (no English added); default false",
    },
    "engine": {"type": "string", "description": "an engine among those loaded (see /health); default: auto"},
    "dpi": {"type": "integer", "description": "PDF rasterising resolution (default PDF_DPI, 150)"},
    "output": {"type": "string", "enum": list(OUTPUTS), "description": "POST /ocr only: the response format"},
    "return_content": {"type": "boolean", "description": "POST /ocr only: false leaves the pages out of the answer"},
    "export_name": {  # issue-19
        "type": "string",
        "maxLength": 200,
        "description": "stable name of the knowledge-base export (RAG_EXPORT_PREFIX): the same name replaces "
        "the file instead of adding one; default: the file's name plus the job id",
    },
    "url": {"type": "string", "description": "an http(s) URL the server fetches (guarded: no private addresses)"},
    "image_url": {"type": "string", "description": "the same as url (earlier name)"},
    "image_base64": {"type": "string", "description": "the document as base64 (earlier name)"},
}

OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "PDF, PNG, JPEG, TIFF, WebP, BMP",
                        },
                        **_OPTIONS_SCHEMA,
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "description": "the document as base64 (a data: URI is fine)"},
                        "filename": {"type": "string"},
                        **_OPTIONS_SCHEMA,
                    },
                }
            },
        },
    }
}


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
