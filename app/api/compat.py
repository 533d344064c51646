"""``POST /layout-parsing``: the PaddleX serving API of the PaddleOCR-VL pipeline, on whichever engine is configured.

Errors on this path use PaddleX's envelope ``{logId, errorCode, errorMsg}`` (see :func:`app.errors.error_payload`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from app.api.deps import get_service
from app.compat import PADDLEX_PATHS
from app.compat.layout_parsing import layout_parsing
from app.compat.schemas import LayoutParsingRequest, LayoutParsingResponse, PaddleXError
from app.errors import arrived_at, request_id_of
from app.jobs.service import OcrService

router = APIRouter(tags=["paddlex-compatible"])
PATHS = PADDLEX_PATHS

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": PaddleXError} for status in (400, 413, 415, 422, 429, 500, 502, 503, 504)
}


@router.post("/layout-parsing", response_model=LayoutParsingResponse, responses=ERRORS)
async def layout_parsing_route(
    body: LayoutParsingRequest, request: Request, service: OcrService = Depends(get_service)
) -> JSONResponse:
    """Parse a document sent as base64 or an http(s) URL; the response is PaddleX's ``/layout-parsing`` result."""
    response, result_id = await layout_parsing(service, body, request_id_of(request.scope), arrived_at(request.scope))
    return JSONResponse(response.model_dump(mode="json", exclude_none=True), headers={"X-Result-Id": result_id})
