"""The result as a file to keep: ``output=pdf|docx|xlsx`` on ``POST /ocr`` and ``GET /jobs/{id}/result``."""

from __future__ import annotations

import anyio
from fastapi.responses import FileResponse

from app.exports.files import export_file
from app.exports.formats import FORMATS, content_disposition, download_name
from app.jobs.models import JobRecord
from app.jobs.service import OcrService
from app.schemas import DocumentResult

FILE_RESPONSES: dict[str, dict[str, object]] = {fmt.media_type: {} for fmt in FORMATS.values()}
"""The 200 answer's extra media types, for the OpenAPI schema."""


async def file_response(service: OcrService, record: JobRecord, result: DocumentResult, output: str) -> FileResponse:
    """The job's ``output`` file (rendered on the first request, see :mod:`app.exports.files`), named after the
    uploaded document (``Content-Disposition`` with an RFC 5987 ``filename*``)."""
    fmt = FORMATS[output]
    path = await anyio.to_thread.run_sync(export_file, service.jobs, record, result, fmt, service.limits)
    name = download_name(record.filename, record.id, fmt.extension)
    headers = {"X-Result-Id": result.id, "Content-Disposition": content_disposition(name)}
    return FileResponse(path, media_type=fmt.media_type, headers=headers)
