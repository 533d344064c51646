"""A finished job's result: assembling it from the stored pages, reading it back, showing a page as an image."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import anyio

from app.documents import Limits, open_document
from app.engines.orientation import turn
from app.errors import Gone, Internal, NotFound, StateConflict
from app.exports.files import ExportPlan
from app.jobs.models import JobRecord, PageOutcome, utc_now
from app.jobs.repository.base import JobRepository, ResultCopy
from app.results import join_pages
from app.schemas import (
    DocumentResult,
    LocalStorage,
    RagExportStorage,
    ResultFiles,
    ResultStorage,
    S3Storage,
    Timings,
)
from app.storage.local import result_files

PAGE_IMAGE_MAX_SIDE = 2000
"""Page images (for showing a page with its boxes) are scaled down to at most this many pixels a side."""


def assemble(
    record: JobRecord, outcomes: Sequence[PageOutcome], store: JobRepository, exports: ExportPlan | None = None
) -> None:
    """Turn the job's stored pages into its result document and store it (blocking); with ``exports``, also the
    PDF, Word and Excel files that must be made now (:mod:`app.exports.files`).

    Sets ``status`` to ``succeeded``, or to ``failed`` with the first page's error when every page failed.
    """
    errors = [o.error for o in outcomes if o.error is not None]
    record.failed_pages = sorted(o.number for o in outcomes if o.error is not None)
    if errors and len(errors) == len(outcomes):
        record.error = errors[0]
        record.finished_at = utc_now()  # before the status: a reader never sees an end without its time
        record.status = "failed"
        return
    pages = [o.page for o in outcomes]
    markdown, text = join_pages(pages)
    created = datetime.fromisoformat(record.created_at)
    result = DocumentResult(
        id=record.id,
        filename=record.filename,
        content_type=record.content_type,
        engine=record.engine,
        engine_reason=record.engine_reason,
        languages=record.languages,
        page_count=record.page_count,
        pages=pages,
        markdown=markdown,
        text=text,
        timings=Timings(
            decode_ms=round(sum(o.decode_ms for o in outcomes), 1),
            ocr_ms=round(sum(o.ocr_ms for o in outcomes), 1),
            total_ms=round((datetime.now(timezone.utc) - created).total_seconds() * 1000, 1),
        ),
        files=ResultFiles(json=f"{record.result_dir}/result.json", markdown=f"{record.result_dir}/result.md"),
    )
    payload = result.model_dump_json(by_alias=True, indent=1, exclude={"storage"}).encode("utf-8")
    if exports is not None:
        exports.before_save(store, record, result)  # mirrored with result.json
    store.save_result(record, result, payload, markdown)
    if exports is not None:
        exports.after_save(store, record, result)  # the PDF, while the document is still there
    record.finished_at = utc_now()
    record.status = "succeeded"


async def read_result(store: JobRepository, record: JobRecord, upload_wait: float = 0) -> DocumentResult:
    """The stored result of a finished job, with ``storage`` filled in. 409 while it runs or when it was cancelled;
    the job's error when it failed; 410 when it is no longer stored; 503 when the shared store cannot be read.

    ``upload_wait``: how long to wait for the result's S3 upload before reporting it ``pending``.
    """
    if record.status in ("queued", "running", "cancelled"):
        raise StateConflict(f"job_{record.status}", f"job {record.id} is {record.status}; no result")
    if record.status == "failed":
        error = record.error
        raise error.as_service_error() if error else Internal("ocr_failed", "")
    found = await anyio.to_thread.run_sync(store.read_result, record)
    if found is None:
        raise Gone("result_expired", f"the result of job {record.id} is no longer stored")
    data, folder = found
    result = DocumentResult.model_validate_json(data)
    result.storage = result_storage(record, folder, await store.result_copy(record, folder, upload_wait))
    return result


async def page_image(store: JobRepository, record: JobRecord, number: int, limits: Limits) -> bytes:
    """Page ``number`` of a job's document as a JPEG, rendered the way the engine saw it (PDF pages at the job's
    dpi, images upright), so the result's boxes fit it when scaled to the page's width and height; at most
    ``PAGE_IMAGE_MAX_SIDE`` pixels a side.

    404 ``page_not_found`` for a page outside the job; 410 ``page_image_unavailable`` once the document is gone
    (``KEEP_JOB_INPUTS=false`` and the job has finished, or the job expired); 503 when the bucket cannot be read.
    """
    if number not in record.pages:
        raise NotFound(
            "page_not_found", f"page {number} is not one of the {len(record.pages)} page(s) of job {record.id}"
        )
    gone = Gone(
        "page_image_unavailable",
        f"the document of job {record.id} is no longer stored (KEEP_JOB_INPUTS is off or the job expired)",
    )

    if record.finished and not record.keep_input:  # its status says so before the removal has quite happened
        raise gone

    def render() -> bytes:
        path = store.input_path(record)
        if path is None:
            raise gone
        try:
            document = open_document(path, record.content_type, limits)
        except FileNotFoundError:  # removed by the retention clean-up just now
            raise gone from None
        with document:
            image = document.render(number, record.dpi)
        if number in store.done_pages(record):  # as it was read (turned upright), so that the boxes fit
            image = turn(image, store.load_page(record, number).page.rotation)
        image.thumbnail((PAGE_IMAGE_MAX_SIDE, PAGE_IMAGE_MAX_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()

    return await anyio.to_thread.run_sync(render)


def result_storage(record: JobRecord, folder: Path | None, copy: ResultCopy) -> ResultStorage:
    """The ``storage`` block of a result: the local folder it was read from (None when read from the bucket) and
    the other copies."""
    local = None if folder is None else LocalStorage(dir=record.result_dir, files=result_files(folder))
    return ResultStorage(
        local=local,
        s3=S3Storage(status=copy.s3, bucket=copy.bucket, keys=copy.keys),
        rag_export=RagExportStorage(
            status=copy.rag_export,
            bucket=copy.bucket if copy.rag_export in ("pending", "uploaded") else None,
            key=copy.rag_export_key,
        ),
    )
