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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from starlette.datastructures import UploadFile

from app.api.body import (
    FIELD_LIMITS,
    SOURCE_FIELDS,
    check_field_size,
    read_form,
    read_json_object,
    several_sources,
    single,
)
from app.api.deps import get_service
from app.documents import check_dpi
from app.engines.languages import parse_languages
from app.errors import ServiceError, arrived_at, bad_request, invalid_field
from app.jobs.models import JobRecord, OcrOptions
from app.jobs.service import OcrService
from app.storage.rag_export import check_export_name
from app.uploads import DocumentSource, name_from_url

OUTPUTS = ("json", "markdown", "text", "pdf", "docx", "xlsx")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass
class DocumentInput:
    """A request's document source (not received yet) and its options."""

    source: DocumentSource
    options: OcrOptions
    output: str = "json"
    return_content: bool = True


def _text(fields: Mapping[str, Any], name: str) -> str | None:
    """Option ``name`` as stripped text (None when absent or blank), checked against its size limit first."""
    value = single(fields, name)
    if value is None or isinstance(value, UploadFile):
        return None
    if isinstance(value, (dict, list)):
        raise invalid_field(name, "must be a string")
    text = value if isinstance(value, str) else str(value)
    check_field_size(name, text)
    return text.strip() or None


def parse_dpi(value: Any) -> int | None:
    """A whole number from a form string or a JSON number; 422 ``invalid_dpi`` for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, (bool, dict, list)):
        raise invalid_field("dpi", "must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise invalid_field("dpi", "must be a whole number")
        return int(value)
    if isinstance(value, int):
        return value
    text = str(value)
    check_field_size("dpi", text)
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
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


def parse_export_name(value: Any) -> str | None:
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
    """The request's fields: the JSON object, or the multipart/urlencoded form (see :mod:`app.api.body`)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return await read_json_object(request)
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        # A base64 document may ride in a plain form field: allow fields as large as the body may be.
        return await read_form(request, base64_limit)
    if content_type:
        raise ServiceError(415, "unsupported_body", "send multipart/form-data or application/json")
    return {}


def _sources(fields: Mapping[str, Any]) -> tuple[UploadFile | None, str | None, str | None]:
    """The one document source: (upload, base64, url). 400 ``no_file`` or ``several_sources``."""
    found: dict[str, Any] = {}
    for name in SOURCE_FIELDS:
        value = single(fields, name)
        if isinstance(value, UploadFile):
            found[name] = value
        elif value is not None:
            if isinstance(value, (dict, list, bool, int, float)):
                raise invalid_field(name, "must be a string")
            if name in ("url", "image_url"):
                check_field_size(name, value)
            if value.strip():
                found[name] = value.strip()
    if not found:
        raise bad_request("no_file", "send the document as a file in 'file', as base64 in 'file', or a 'url'")
    if len(found) > 1:
        raise several_sources()
    name, value = next(iter(found.items()))
    if isinstance(value, UploadFile):
        return value, None, None
    return (None, value, None) if name in ("file", "image_base64") else (None, None, value)


async def document_input(request: Request, service: OcrService = Depends(get_service)) -> DocumentInput:
    """Read the options, then receive the document to disk. Errors are 4xx :class:`ServiceError`s
    (507 when the disk cannot take it)."""
    settings = service.settings
    fields = await _fields(request, base64_body_limit(settings.max_upload_bytes))
    options = OcrOptions(
        pages=_text(fields, "pages"),
        dpi=check_dpi(parse_dpi(single(fields, "dpi")), settings.pdf_dpi, settings.max_dpi),
        languages=check_languages(_text(fields, "lang")),
        engine=check_engine(_text(fields, "engine")),
        strict_languages=parse_bool("lang_strict", _text(fields, "lang_strict"), False),
        export_name=parse_export_name(_text(fields, "export_name")),
    )
    service.engines.choose(options.languages, options.engine)  # 422 before the document is received
    output = parse_output(_text(fields, "output"))
    return_content = parse_bool("return_content", _text(fields, "return_content"), True)
    filename = _text(fields, "filename")
    upload, encoded, url = _sources(fields)

    if upload is not None:
        source = DocumentSource(
            upload=upload.file, filename=(upload.filename or "")[: FIELD_LIMITS["filename"]] or None
        )
    elif encoded is not None:
        source = DocumentSource(base64=encoded, filename=filename)
    else:
        assert url is not None
        service.url_policy()  # 400 before anything is fetched when URL input is off
        source = DocumentSource(url=url, filename=filename or name_from_url(url, FIELD_LIMITS["filename"]))
    return DocumentInput(source, options, output, return_content)


async def submit_document(request: Request, service: OcrService, document: DocumentInput) -> JobRecord:
    """Receive the document (:meth:`OcrService.received`), submit it as a job and note it for the request log."""
    async with service.received(document.source) as received:
        record = await service.submit(received, document.options, arrived=arrived_at(request.scope))
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
    "output": {
        "type": "string",
        "enum": list(OUTPUTS),
        "description": "POST /ocr only: the response format (pdf, docx, xlsx: a file to keep)",
    },
    "return_content": {"type": "boolean", "description": "POST /ocr only: false leaves the pages out of the answer"},
    "export_name": {
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
