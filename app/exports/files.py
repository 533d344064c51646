"""When a job's PDF, Word and Excel files are made, and where they are kept: beside ``result.json``.

- **On the first request** (``output=pdf|docx|xlsx``), by whichever replica gets it: the file is rendered from
  the stored result (and, for the PDF, the job's document), saved in the result folder and served from there
  afterwards. One rendering per job and format at a time (later requests wait for it and get the same file).
- **When the job is assembled**, before anything is deleted:

  - the formats ``S3_RESULT_FORMATS`` names, with S3 on: rendered before ``result.json`` is written, so they go
    to the bucket with the result and every replica serves them from there;
  - the PDF when ``KEEP_JOB_INPUTS=false``: the document is deleted when the job ends, and the PDF needs its
    pages. It is kept on this replica's disk (in the bucket too when ``S3_RESULT_FORMATS`` names ``pdf``).

A rendering that fails when the job is assembled does not fail the job (it is logged; a request then renders it,
or answers 410 when the document is gone); a full disk does, as every write of the job does (it waits).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.documents import Limits
from app.errors import Gone, Internal, Invalid, OutOfSpace, ServiceError
from app.exports.formats import FORMATS, ExportFormat
from app.jobs.models import JobRecord
from app.jobs.repository.base import JobRepository
from app.schemas import DocumentResult

log = logging.getLogger(__name__)

_LOCKS = [threading.Lock() for _ in range(32)]
_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class DocumentGone(Exception):
    """The job's document is no longer stored, and the PDF was not made before it went."""


@dataclass(frozen=True)
class ExportPlan:
    """What is rendered when a job is assembled (see the module docstring)."""

    mirrored: Sequence[str]  # formats S3_RESULT_FORMATS names (pdf, docx, xlsx)
    limits: Limits

    def before_save(self, store: JobRepository, record: JobRecord, result: DocumentResult) -> None:
        """The mirrored formats, into the result folder before ``result.json`` (shared stores only)."""
        if store.shares_results:
            for name in self.mirrored:
                _render_quietly(store, record, result, FORMATS[name], self.limits)

    def after_save(self, store: JobRepository, record: JobRecord, result: DocumentResult) -> None:
        """The PDF of a job whose document goes when it ends, unless it was made already."""
        if not record.keep_input and store.result_file(record, FORMATS["pdf"].file_name) is None:
            _render_quietly(store, record, result, FORMATS["pdf"], self.limits)


def export_file(
    store: JobRepository, record: JobRecord, result: DocumentResult, fmt: ExportFormat, limits: Limits
) -> Path:
    """The job's ``fmt`` file, rendered now when it is not stored yet (blocking).

    Errors: 422 ``no_tables`` (XLSX of a result without tables), 410 ``export_unavailable`` (a PDF whose document
    is gone), 500 ``export_failed``; :class:`~app.jobs.store.StorageUnavailable` when the bucket cannot be read.
    """
    found = store.result_file(record, fmt.file_name)
    if found is not None:
        return found
    with _LOCKS[hash((record.id, fmt.name)) % len(_LOCKS)]:
        found = store.result_file(record, fmt.file_name)
        if found is not None:
            return found
        try:
            return render(store, record, result, fmt, limits)
        except DocumentGone:
            raise Gone(
                "export_unavailable",
                f"the document of job {record.id} is no longer stored (KEEP_JOB_INPUTS is off or it expired), and "
                "its PDF was not made before it went; send the document again",
            ) from None
        except ServiceError:
            raise
        except OSError as exc:
            if exc.errno in _DISK_ERRORS:
                raise OutOfSpace(
                    "disk_full",
                    f"the {fmt.name} file cannot be stored: {exc.strerror}",
                    retry_after=60,
                ) from None
            raise _failed(record, fmt, exc) from None
        except Exception as exc:
            raise _failed(record, fmt, exc) from None


def render(store: JobRepository, record: JobRecord, result: DocumentResult, fmt: ExportFormat, limits: Limits) -> Path:
    """Render ``fmt`` into the job's result folder; the file's path. :class:`DocumentGone` for a PDF whose document
    is not stored; ``NoTables`` (a 422 ``no_tables`` :class:`ServiceError`) for a workbook without tables."""
    from app.exports.xlsx import NoTables

    target = store.result_folder(record) / fmt.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if fmt.name == "pdf":
        from app.exports.pdf import write_searchable_pdf

        document = store.input_path(record)
        if document is None:
            raise DocumentGone(record.id)
        write_searchable_pdf(result, document, record.content_type, target, dpi=record.dpi, limits=limits)
    elif fmt.name == "docx":
        from app.exports.docx import write_docx

        write_docx(result, target)
    else:
        from app.exports.xlsx import write_xlsx

        try:
            write_xlsx(result, target)
        except NoTables:
            raise Invalid(
                "no_tables",
                f"the result of job {record.id} has no tables, so there is no workbook to make; its text is in the "
                "other outputs (json, markdown, text, pdf, docx)",
                details={"job_id": record.id},
            ) from None
    log.info(
        "job %s: %s made in %.2f s (%d page(s), %d bytes)",
        record.id,
        fmt.file_name,
        time.monotonic() - started,
        len(result.pages),
        target.stat().st_size,
    )
    return target


def _render_quietly(
    store: JobRepository, record: JobRecord, result: DocumentResult, fmt: ExportFormat, limits: Limits
) -> None:
    """Render when the job is assembled: a failure is logged (the job goes on), a full disk is raised (it waits)."""
    try:
        render(store, record, result, fmt, limits)
    except ServiceError as exc:
        log.info("job %s: no %s: %s", record.id, fmt.file_name, exc.message)
    except DocumentGone:
        log.warning("job %s: no %s: its document is no longer stored", record.id, fmt.file_name)
    except OSError as exc:
        if exc.errno in _DISK_ERRORS:
            raise
        log.exception("job %s: %s could not be made", record.id, fmt.file_name)
    except Exception:
        log.exception("job %s: %s could not be made", record.id, fmt.file_name)


def _failed(record: JobRecord, fmt: ExportFormat, exc: BaseException) -> ServiceError:
    log.error("job %s: %s could not be made: %r", record.id, fmt.file_name, exc)
    return Internal("export_failed", f"the {fmt.name} file of job {record.id} could not be made: {type(exc).__name__}")
