"""``POST /layout-parsing``: the PaddleX serving API of the PaddleOCR-VL pipeline, on whichever engine is configured.

Errors on this path use PaddleX's envelope ``{logId, errorCode, errorMsg}`` (see :func:`app.errors.error_payload`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.api.body import read_json_object
from app.api.deps import get_service
from app.compat import PADDLEX_PATHS
from app.compat.layout_parsing import layout_parsing
from app.compat.schemas import LayoutParsingRequest, LayoutParsingResponse, PaddleXError
from app.errors import ServiceError, arrived_at, request_id_of
from app.jobs.service import OcrService

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
        raise ServiceError(415, "unsupported_body", "send the request as application/json")
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


@router.post("/layout-parsing", response_model=LayoutParsingResponse, responses=ERRORS, openapi_extra=_BODY_SCHEMA)
async def layout_parsing_route(
    request: Request,
    body: LayoutParsingRequest = Depends(layout_parsing_body),
    service: OcrService = Depends(get_service),
) -> JSONResponse:
    """Parse a document sent as base64 or an http(s) URL; the response is PaddleX's ``/layout-parsing`` result."""
    response, result_id = await layout_parsing(service, body, request_id_of(request.scope), arrived_at(request.scope))
    return JSONResponse(response.model_dump(mode="json", exclude_none=True), headers={"X-Result-Id": result_id})
