"""``POST /ocr``: one document in, its recognised pages out (JSON, Markdown or plain text)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse, Response

from app.api.deps import get_service
from app.documents import check_dpi
from app.errors import bad_request, invalid_field
from app.schemas import DocumentResult, ErrorResponse
from app.service import OcrOptions, OcrService
from app.storage.local import new_id
from app.uploads import save_upload

log = logging.getLogger(__name__)
router = APIRouter(tags=["ocr"])

OUTPUT_TYPES = {
    "json": "application/json",
    "markdown": "text/markdown; charset=utf-8",
    "text": "text/plain; charset=utf-8",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 413, 415, 422, 429, 500, 502, 503, 504)
}


def render_result(result: DocumentResult, output: str) -> Response:
    """The result in the requested representation, with its id in ``X-Result-Id``."""
    headers = {"X-Result-Id": result.id}
    if output == "markdown":
        return Response(result.markdown, media_type=OUTPUT_TYPES["markdown"], headers=headers)
    if output == "text":
        return Response(result.text, media_type=OUTPUT_TYPES["text"], headers=headers)
    return JSONResponse(result.model_dump(mode="json", by_alias=True), headers=headers)


def check_output(output: str | None) -> str:
    value = (output or "json").strip().lower()
    if value not in OUTPUT_TYPES:
        raise invalid_field("output", f"must be one of {', '.join(OUTPUT_TYPES)}")
    return value


@router.post(
    "/ocr",
    response_model=DocumentResult,
    responses={
        **ERRORS,
        200: {"content": {"text/markdown": {}, "text/plain": {}}, "description": "the recognised document"},
    },
)
async def ocr(
    file: UploadFile | None = File(None, description="PDF, PNG, JPEG, TIFF, WebP or BMP"),
    pages: str | None = Form(None, description="pages to recognise, e.g. '1-3,5' (all by default)"),
    dpi: int | None = Form(None, description="PDF rasterising resolution (default 150)"),
    output: str | None = Form("json", description="json | markdown | text"),
    service: OcrService = Depends(get_service),
) -> Response:
    """Recognise a document synchronously."""
    settings = service.settings
    output = check_output(output)
    options = OcrOptions(pages=pages, dpi=check_dpi(dpi, settings.pdf_dpi, settings.max_dpi))
    if file is None:
        raise bad_request("no_file", "send the document in the multipart field 'file'")
    result_id = new_id()
    upload = service.store.incoming / f"{result_id}.upload"
    try:
        content_type = await save_upload(file.file, upload, settings.max_upload_bytes)
        service.check_engine()
        async with service.admitted():
            result = await service.process(upload, file.filename, content_type, options, result_id)
    finally:
        upload.unlink(missing_ok=True)
    log.info(
        "ocr id=%s type=%s pages=%d engine=%s total_ms=%.0f",
        result.id,
        result.content_type,
        len(result.pages),
        result.engine,
        result.timings.total_ms,
    )
    return render_result(result, output)
