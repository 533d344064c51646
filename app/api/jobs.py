"""Async jobs for long documents: submit, poll, fetch the result, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from app.api.deps import Receiver, Service
from app.api.downloads import FILE_RESPONSES, file_response
from app.api.errors import http_status
from app.api.intake import REQUEST_BODY, Submission, output_format, submit_document
from app.api.responses import ERRORS, accepted, render_result
from app.jobs.models import JobError, JobRecord
from app.jobs.service import OcrService
from app.schemas import DocumentResult, ErrorResponse, JobAccepted, JobFailure, JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"])


def status_body(request: Request, service: OcrService, record: JobRecord) -> JobStatus:
    return JobStatus(
        id=record.id,
        status=record.status,
        filename=record.filename,
        pages_done=record.pages_done,
        pages_total=len(record.pages),
        failed_pages=record.failed_pages,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        error=failure(record.error) if record.error else None,
        queue_position=service.queue_position(record),
        owner=record.owner,
        waiting=record.waiting,
        takeovers=record.takeovers,
        result_url=str(request.url_for("job_result", job_id=record.id).path),
    )


@router.post("", status_code=202, response_model=JobAccepted, responses=ERRORS, openapi_extra=REQUEST_BODY)
async def create_job(request: Request, submission: Submission, service: Service, receiver: Receiver) -> JSONResponse:
    """Accept a document and answer at once with the job's URLs (same inputs as ``POST /ocr``)."""
    record = await submit_document(request, service, receiver, submission)
    return accepted(request, record)


@router.get("/{job_id}", response_model=JobStatus, name="job_status", responses=ERRORS)
async def job_status(job_id: str, request: Request, service: Service) -> JobStatus:
    """Status and progress (``pages_done`` of ``pages_total``); from S3 when another replica runs the job."""
    return status_body(request, service, await service.find(job_id))


@router.get(
    "/{job_id}/result",
    response_model=DocumentResult,
    name="job_result",
    responses={**ERRORS, 200: {"content": {"text/markdown": {}, "text/plain": {}, **FILE_RESPONSES}}},
)
async def job_result(
    job_id: str,
    service: Service,
    output: str | None = Query(
        "json",
        description="json | markdown | text, or a file to keep: pdf (searchable: the document's pages with the "
        "recognised text over them), docx, xlsx (the tables; 422 no_tables without any)",
    ),
) -> Response:
    """The finished document, as ``POST /ocr`` returns it; 409 while the job is not finished."""
    output = output_format(output)
    record = await service.find(job_id)
    result = await service.result(record)
    if output in ("pdf", "docx", "xlsx"):
        return await file_response(service, record, result, output)
    return render_result(result, output)


@router.get(
    "/{job_id}/pages/{number}/image",
    response_class=Response,
    name="job_page_image",
    responses={**ERRORS, 410: {"model": ErrorResponse}, 200: {"content": {"image/jpeg": {}}}},
)
async def job_page_image(
    job_id: str,
    number: Annotated[int, Path(ge=1, description="page number in the document, from 1")],
    service: Service,
) -> Response:
    """Page ``number`` of the job's document as a JPEG, as the engine saw it: draw the result's boxes on it
    scaled by ``width`` and ``height`` of the page. 410 when the document is no longer stored."""
    image = await service.page_image(await service.find(job_id), number)
    return Response(image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.delete("/{job_id}", response_model=JobStatus, responses=ERRORS)
async def cancel_job(job_id: str, request: Request, service: Service) -> JobStatus:
    """Cancel a queued or running job: pages in progress finish, no new pages start."""
    return status_body(request, service, await service.cancel(job_id))


def failure(error: JobError) -> JobFailure:
    service_error = error.as_service_error()
    return JobFailure(status=http_status(service_error), code=error.code, message=error.message)
