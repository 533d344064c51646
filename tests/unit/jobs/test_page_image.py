"""Page images of a job's document (app.jobs.assembly.page_image) when the document is not kept
(``KEEP_JOB_INPUTS=false``): refused once the job's status is final, also in the moment between the final record and
the document's removal (the runner stores the end first, so that a crash between them loses no unfinished job)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.documents import Limits
from app.errors import Gone
from app.jobs.assembly import page_image
from app.jobs.models import JobRecord
from app.jobs.repository.local import LocalRepository
from tests.support.documents import text_pdf

LIMITS = Limits(max_pages=10, max_image_pixels=20_000_000)


def stored_job(tmp_path: Path, *, keep_input: bool) -> tuple[LocalRepository, JobRecord]:
    repository = LocalRepository(tmp_path / "output")
    upload = tmp_path / "doc.pdf"
    upload.write_bytes(text_pdf(1))
    job_id = "0" * 32
    record = JobRecord(job_id, "doc.pdf", "application/pdf", 1, [1], 75, f"2026-01-01/{job_id}", "pp-ocr")
    record.keep_input = keep_input
    repository.create(record, upload)
    return repository, record


def test_a_running_job_shows_its_pages_whether_or_not_its_document_is_kept(tmp_path: Path) -> None:
    for keep in (True, False):
        repository, record = stored_job(tmp_path / str(keep), keep_input=keep)
        record.status = "running"
        assert asyncio.run(page_image(repository, record, 1, LIMITS))[:3] == b"\xff\xd8\xff"


def test_a_finished_job_whose_document_is_not_kept_shows_no_page_even_before_the_removal(tmp_path: Path) -> None:
    repository, record = stored_job(tmp_path, keep_input=False)
    record.status = "succeeded"
    assert repository.input_path(record) is not None  # not removed yet
    with pytest.raises(Gone) as refused:
        asyncio.run(page_image(repository, record, 1, LIMITS))
    assert refused.value.code == "page_image_unavailable"


def test_a_finished_job_whose_document_is_kept_shows_its_pages(tmp_path: Path) -> None:
    repository, record = stored_job(tmp_path, keep_input=True)
    record.status = "succeeded"
    assert asyncio.run(page_image(repository, record, 1, LIMITS))[:3] == b"\xff\xd8\xff"
