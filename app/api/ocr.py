"""``POST /ocr``: one document in, its recognised pages out (JSON, Markdown or plain text).

The document runs as a job; when it is not done within ``SYNC_TIMEOUT_S`` (below the gateway's cut)
the answer is 202 with the job's URLs and the work goes on.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.deps import AppSettings, Receiver, Service
from app.api.downloads import FILE_RESPONSES, file_response
from app.api.intake import REQUEST_BODY, Submission, submit_document
from app.api.responses import ERRORS, accepted, render_result
from app.schemas import DocumentResult, JobAccepted

log = logging.getLogger(__name__)
router = APIRouter(tags=["ocr"])


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
