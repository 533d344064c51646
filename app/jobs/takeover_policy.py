"""What becomes of a job another replica takes over: the decisions, as pure functions (no storage, no S3).

- A job whose replicas keep stopping while its pages are being recognised, without a page finished in between,
  is a *poison document*: after ``MAX_JOB_TAKEOVERS`` such crashes in a row it fails (422) instead of taking the
  fleet down one replica after another (the crash count itself: :mod:`app.jobs.ownership.lease`).
- A job whose document is gone from the bucket (a lifecycle rule, an operator) with pages still to do fails once
  (410) instead of moving from replica to replica for ever.
"""

from __future__ import annotations

from app.errors import Gone, Invalid
from app.jobs.models import JobError


def poison(crashes: int, limit: int) -> JobError | None:
    """The error of a job taken over after ``crashes`` crashes in a row without progress; None while it may run."""
    if crashes <= limit:
        return None
    message = (
        f"the replicas running this document stopped {crashes} times in a row without finishing a page "
        f"(MAX_JOB_TAKEOVERS={limit}); it is not retried: the document may crash the OCR engine or need more memory "
        "than a replica has"
    )
    return JobError.of(Invalid("document_crashes_service", message))


def document_lost(has_document: bool, every_page_stored: bool) -> JobError | None:
    """The error of a job that cannot go on without its document; None when it can."""
    if has_document or every_page_stored:
        return None
    return JobError.of(Gone("document_lost", "the job's document is no longer stored; send it again"))
