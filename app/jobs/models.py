"""What a job is: its record (``job.json``), its request options, a page's outcome and a job's error."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

from app.errors import ServiceError, error_of
from app.schemas import PageResult

log = logging.getLogger("app.jobs.runner")

JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE: tuple[JobStatusName, ...] = ("queued", "running")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


#: Records written by earlier versions kept an HTTP status instead of the kind (read back as that kind).
_LEGACY_STATUS_KINDS = {
    400: "bad_request",
    404: "not_found",
    409: "conflict",
    410: "gone",
    413: "too_large",
    415: "unsupported",
    422: "invalid",
    429: "busy",
    502: "upstream_failed",
    503: "unavailable",
    504: "timed_out",
    507: "out_of_space",
}


@dataclass(frozen=True)
class JobError:
    """Why a job or a page failed, as kept in ``job.json`` and page files: the service error's kind (see
    :mod:`app.errors`), a stable code and a sentence for a person."""

    kind: str
    code: str
    message: str

    @classmethod
    def of(cls, error: ServiceError) -> JobError:
        return cls(error.kind, error.code, error.message)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JobError:
        kind = raw.get("kind") or _LEGACY_STATUS_KINDS.get(int(raw.get("status", 500)), "internal")
        return cls(str(kind), str(raw.get("code", "ocr_failed")), str(raw.get("message", "")))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_service_error(self) -> ServiceError:
        return error_of(self.kind, self.code, self.message)


@dataclass(frozen=True)
class OcrOptions:
    """A request's recognition options (its engine and languages come beside them, as a
    :class:`~app.engines.select.Choice`)."""

    pages: str | None = None
    dpi: int = 150
    export_name: str | None = None  # stable name of the knowledge-base export (RAG_EXPORT_PREFIX)


@dataclass
class JobRecord:
    """What is known about a job; serialised as ``job.json`` (locally and, with S3, in the bucket)."""

    id: str
    filename: str | None
    content_type: str
    page_count: int
    pages: list[int]
    dpi: int
    result_dir: str
    engine: str
    languages: list[str] = field(default_factory=list)  # what the engine was asked to read
    engine_reason: str | None = None  # why that engine (shown in the result)
    status: JobStatusName = "queued"
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None
    finished_at: str | None = None
    error: JobError | None = None
    pages_done: int = 0
    failed_pages: list[int] = field(default_factory=list)
    s3_mirrored: bool = False  # the result was recorded for upload to S3
    owner: str | None = None  # the replica running it (shared job stores)
    takeovers: int = 0  # times another replica continued it after its runner stopped
    keep_input: bool = True  # the document stays until retention (page images); else removed when finished
    export_name: str | None = None  # the client's stable name for the knowledge-base export
    rag_export_key: str | None = None  # the export's object key, once recorded for upload
    waiting: str | None = None  # why the job makes no progress now (e.g. OUTPUT_DIR is full)
    epoch: int = 0  # the lease epoch of the owner that wrote this record (shared stores; see app.jobs.ownership)

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE

    @property
    def pages_left(self) -> int:
        return len(self.pages) - self.pages_done

    def storing(self) -> JobRecord:
        """How a finished job whose final record is not in the shared bucket yet is shown: still running."""
        return replace(
            self,
            status="running",
            finished_at=None,
            error=None,
            waiting="finished; its result is being stored, and the final status follows once it is",
        )

    def fail(self, error: JobError) -> None:
        self.status = "failed"
        self.error = error
        self.finished_at = utc_now()

    def to_json(self) -> bytes:
        data = asdict(self)
        data["error"] = self.error.to_dict() if self.error else None
        return json.dumps(data, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> JobRecord:
        """A record from ``job.json``; unknown keys (newer versions) are ignored. ValueError when unreadable."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("job.json is not an object")
        known = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
        if isinstance(known.get("error"), dict):
            known["error"] = JobError.from_dict(known["error"])
        try:
            return cls(**known)
        except TypeError as exc:
            raise ValueError(f"job.json lacks a field: {exc}") from None


@dataclass
class PageOutcome:
    """One page of a job once it has been through the engine: its result, or its error (then ``page`` holds an
    empty page that says so). Stored as ``pages/NNNNN.json``."""

    number: int
    page: PageResult
    decode_ms: float = 0.0
    ocr_ms: float = 0.0
    error: JobError | None = None

    @classmethod
    def failed(cls, number: int, error: JobError) -> PageOutcome:
        page = PageResult(index=number, width=0, height=0, blocks=[], markdown="", text="", error=error.message)
        return cls(number, page, error=error)

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "page": self.page.model_dump(mode="json"),
            "decode_ms": self.decode_ms,
            "ocr_ms": self.ocr_ms,
        }
        if self.error is not None:
            data["error"] = self.error.to_dict()
        return json.dumps(data, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, number: int, data: bytes) -> PageOutcome:
        raw = json.loads(data)
        error = raw.get("error")
        return cls(
            number=number,
            page=PageResult.model_validate(raw["page"]),
            decode_ms=float(raw.get("decode_ms", 0.0)),
            ocr_ms=float(raw.get("ocr_ms", 0.0)),
            error=JobError.from_dict(error) if error else None,
        )


def log_finished(record: JobRecord) -> None:
    """The one line that says a job ended ("job <id> succeeded: ..."): logged once its final record is stored for
    good (on this disk, or in the shared bucket)."""
    log.info("job %s %s: %d page(s), %d failed", record.id, record.status, record.pages_done, len(record.failed_pages))
