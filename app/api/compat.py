"""``POST /layout-parsing``: the PaddleX serving API of the PaddleOCR-VL pipeline, on whichever engine is configured.

Errors on this path use PaddleX's envelope ``{logId, errorCode, errorMsg}`` (see :func:`app.errors.error_payload`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.api.body import read_json_object
from app.api.deps import AppSettings, Receiver, Service
from app.api.errors import arrived_at, request_id_of
from app.compat import PADDLEX_PATHS
from app.compat.layout_parsing import layout_parsing_response, markdown_images, page_visuals
from app.compat.schemas import LayoutParsingRequest, LayoutParsingResponse, PaddleXError
from app.errors import ServiceError, TimedOut, Unavailable, Unsupported
from app.intake.sources import base64_or_url
from app.jobs.models import JobRecord, OcrOptions

router = APIRouter(tags=["paddlex-compatible"])
PATHS = PADDLEX_PATHS

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": PaddleXError} for status in (400, 408, 413, 415, 422, 429, 500, 502, 503, 504, 507)
}


async def layout_parsing_body(request: Request) -> LayoutParsingRequest:
    """The request model from a JSON body read within the limits of :mod:`app.api.body` (parsed off the
    event loop); a body that does not fit the model is a 422 as for any FastAPI body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise Unsupported("unsupported_body", "send the request as application/json")
    fields = await read_json_object(request)
    try:
        return LayoutParsingRequest.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None


_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": LayoutParsingRequest.model_json_schema()}},
    }
}


LayoutParsingBody = Annotated[LayoutParsingRequest, Depends(layout_parsing_body)]


def unfinished(record: JobRecord, draining: bool, sync_timeout_s: float) -> ServiceError:
    """PaddleX clients cannot take a 202: 504 ``sync_timeout`` naming the job, which goes on (poll ``/jobs/{id}``);
    503 when a restart interrupted the wait (the job resumes afterwards)."""
    if draining:
        message = f"the service is restarting; job {record.id} resumes afterwards"
        return Unavailable("shutting_down", message, retry_after=15)
    return TimedOut(
        "sync_timeout",
        f"the document takes longer than SYNC_TIMEOUT_S ({sync_timeout_s:g} s); it goes on as job {record.id}: "
        f"GET /jobs/{record.id}, or send long documents to POST /jobs",
    )


@router.post("/layout-parsing", response_model=LayoutParsingResponse, responses=ERRORS, openapi_extra=_BODY_SCHEMA)
async def layout_parsing_route(
    request: Request, body: LayoutParsingBody, service: Service, receiver: Receiver, settings: AppSettings
) -> JSONResponse:
    """Parse a document sent as base64 or an http(s) URL; the response is PaddleX's ``/layout-parsing`` result.

    The document comes in and runs as for ``POST /ocr`` (same receiver, same job calls) on the default engine;
    errors: 400 URL input disabled, 503 engine not ready, 400/413/415/422 bad input, URL refusals and fetch
    failures, 429 queue full, 504 past ``SYNC_TIMEOUT_S``.
    """
    arrived = arrived_at(request.scope)
    source = base64_or_url(body.file)
    receiver.check_source(source)
    engine = receiver.choose_engine()
    service.check_accepting(arrived, engine.engine)
    visualize = body.visualize is not False  # the page images are drawn from the upload afterwards
    async with receiver.received(source) as document:
        options = OcrOptions(dpi=settings.pdf_dpi)
        record = await service.submit(document, options, engine, copy_upload=visualize, arrived=arrived)
        record = await service.wait(record.id, settings.sync_timeout_s)
        if not record.finished:
            raise unfinished(record, service.draining, settings.sync_timeout_s)
        result = await service.result(record, settings.s3_upload_wait_s)
        visuals = await page_visuals(document, receiver.limits, record.dpi, result) if visualize else None
    images = await markdown_images(service, record, result)
    response = layout_parsing_response(request_id_of(request.scope), result, settings, images, visuals)
    return JSONResponse(response.model_dump(mode="json", exclude_none=True), headers={"X-Result-Id": result.id})
