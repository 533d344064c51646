"""``POST /ocr``: one document in, its recognised pages out (JSON, Markdown or plain text).

The document runs as a job; when it is not done within ``SYNC_TIMEOUT_S`` (below the gateway's cut)
the answer is 202 with the job's URLs and the work goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.api.deps import AppSettings, Receiver, Service
from app.api.downloads import FILE_RESPONSES, file_response
from app.api.intake import REQUEST_BODY, Submission, submit_document
from app.jobs.models import JobRecord
from app.schemas import DocumentResult, ErrorResponse, JobAccepted

log = logging.getLogger(__name__)
router = APIRouter(tags=["ocr"])

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


@router.post(
    "/ocr",
    response_model=DocumentResult,
    responses={
        **ERRORS,
        200: {
            "content": {"text/markdown": {}, "text/plain": {}, **FILE_RESPONSES},
            "description": "the recognised document (JSON, Markdown, text; or a PDF, Word or Excel file)",
        },
        202: {"model": JobAccepted, "description": "not done within SYNC_TIMEOUT_S: continues as a job"},
    },
    openapi_extra=REQUEST_BODY,
)
async def ocr(
    request: Request, submission: Submission, service: Service, receiver: Receiver, settings: AppSettings
) -> Response:
    """Recognise a document, waiting at most ``SYNC_TIMEOUT_S`` before handing back a job, then at most
    ``S3_UPLOAD_WAIT_S`` for the result's S3 upload (``storage.s3.status`` says whether it is done)."""
    record = await submit_document(request, service, receiver, submission)
    record = await service.wait(record.id, settings.sync_timeout_s)
    if not record.finished:
        log.info("ocr id=%s continues as a job after %.0f s", record.id, settings.sync_timeout_s)
        return accepted(request, record)
    result = await service.result(record, settings.s3_upload_wait_s)
    if submission.output in ("pdf", "docx", "xlsx"):
        return await file_response(service, record, result, submission.output)
    return render_result(result, submission.output, content=submission.return_content)
