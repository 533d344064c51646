"""Answers the routes share: a result in the requested representation, a 202 for a job, the error responses of the
OpenAPI schema."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from app.jobs.models import JobRecord
from app.schemas import DocumentResult, ErrorResponse, JobAccepted

OUTPUT_TYPES = {
    "json": "application/json",
    "markdown": "text/markdown; charset=utf-8",
    "text": "text/plain; charset=utf-8",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 404, 408, 409, 413, 415, 422, 429, 500, 502, 503, 504, 507)
}


def render_result(result: DocumentResult, output: str, content: bool = True) -> Response:
    """The result in the requested representation, with its id in ``X-Result-Id`` and its S3 status in
    ``X-S3-Status`` (for the Markdown and text outputs, which have no ``storage`` block). Without
    ``content`` (``return_content=false``) the JSON leaves out the pages, Markdown and text: they are
    in storage (``files``, ``storage``)."""
    headers = {"X-Result-Id": result.id}
    if result.storage is not None:
        headers["X-S3-Status"] = result.storage.s3.status
    if output == "markdown":
        return Response(result.markdown, media_type=OUTPUT_TYPES["markdown"], headers=headers)
    if output == "text":
        return Response(result.text, media_type=OUTPUT_TYPES["text"], headers=headers)
    exclude = None if content else {"pages", "markdown", "text"}
    return JSONResponse(result.model_dump(mode="json", by_alias=True, exclude=exclude), headers=headers)


def accepted(request: Request, record: JobRecord) -> JSONResponse:
    """202 with the job's URLs and a ``Location`` header."""
    status_url = str(request.url_for("job_status", job_id=record.id).path)
    body = JobAccepted(id=record.id, status=record.status, status_url=status_url, result_url=status_url + "/result")
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": status_url})
