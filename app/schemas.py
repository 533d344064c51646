"""Request option and response models (the API's contract), separate from the code that fills them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

OutputFormat = Literal["json", "markdown", "text"]


class Word(BaseModel):
    """One recognised word with its box, where the engine gives words (Tesseract; RapidOCR)."""

    text: str
    bbox: list[float] = Field(description="[x0, y0, x1, y1] in page pixels")
    score: float | None = Field(None, description="confidence 0..1 when the engine reports one")


class TextLine(BaseModel):
    """One line of text inside a block (line-level engines group their lines into blocks)."""

    text: str
    bbox: list[float] = Field(description="[x0, y0, x1, y1] in page pixels")
    score: float | None = Field(None, description="confidence 0..1 when the engine reports one")


class TableCell(BaseModel):
    """One cell of a table; merged cells span several rows or columns."""

    row: int = Field(description="first row of the cell, from 0")
    col: int = Field(description="first column of the cell, from 0")
    row_span: int = Field(1, ge=1)
    col_span: int = Field(1, ge=1)
    text: str = ""
    bbox: list[float] | None = Field(None, description="[x0, y0, x1, y1] in page pixels, when known")


class Table(BaseModel):
    """A table as rows and cells: the VL engine's HTML tables and the tables found on CPU take this shape."""

    rows: int = Field(ge=0)
    cols: int = Field(ge=0)
    cells: list[TableCell] = Field(default_factory=list, description="row by row, left to right")


class Block(BaseModel):
    """One recognised region of a page: a text line or a group of lines for the CPU engines, a layout block for
    the VLM. ``lines``, ``words`` and ``table`` are null where the engine does not give them."""

    bbox: list[float] = Field(description="[x0, y0, x1, y1] in page pixels")
    text: str
    score: float | None = Field(None, description="confidence 0..1 when the engine reports one")
    label: str = "text"
    order: int = Field(0, description="reading order within the page, from 0")
    lines: list[TextLine] | None = Field(None, description="the block's lines, in reading order (line engines)")
    words: list[Word] | None = Field(
        None,
        description="the block's words, in reading order, each with its own box and score: Tesseract and PP-OCR "
        "give them; null where the engine gives blocks only (PaddleOCR-VL). The searchable PDF places its text by them",
    )
    table: Table | None = Field(None, description="label 'table': the table as rows and cells")


class PageResult(BaseModel):
    index: int = Field(description="page number in the document, from 1")
    width: int = Field(description="pixels, of the page as read (turned by rotation)")
    height: int
    rotation: int = Field(
        0,
        description="degrees (0, 90, 180, 270) the page was turned clockwise before OCR to stand upright; "
        "width, height and every bbox refer to the turned page",
    )
    blocks: list[Block]
    markdown: str
    text: str
    error: str | None = Field(None, description="set when this page could not be recognised")


class Timings(BaseModel):
    decode_ms: float
    ocr_ms: float
    total_ms: float


class ResultFiles(BaseModel):
    json_path: str | None = Field(None, alias="json")
    markdown: str | None = None

    model_config = {"populate_by_name": True}


class LocalStorage(BaseModel):
    dir: str = Field(description="the result folder, relative to OUTPUT_DIR")
    files: list[str] = Field(description="its files, relative to the folder")


class S3Storage(BaseModel):
    status: Literal["uploaded", "pending", "disabled"] = Field(
        description="uploaded: in the bucket; pending: recorded in the outbox, uploaded later; disabled: S3 is off"
    )
    bucket: str | None = None
    keys: list[str] = Field(default_factory=list, description="object keys, result.json last")


class RagExportStorage(BaseModel):
    """The document's knowledge-base export (``RAG_EXPORT_PREFIX``)."""

    status: Literal["uploaded", "pending", "disabled", "not_exported"] = Field(
        description="uploaded: in the folder; pending: in the outbox; disabled: the export is off; "
        "not_exported: this job has no export (it failed, or the job is older than the setting)"
    )
    bucket: str | None = None
    key: str | None = Field(None, description="the file's object key: RAG_EXPORT_PREFIX/<name>.md or .txt")


class ResultStorage(BaseModel):
    local: LocalStorage | None = Field(None, description="null on a replica that read the result from S3")
    s3: S3Storage
    rag_export: RagExportStorage | None = None


class DocumentResult(BaseModel):
    """The result of one document: what ``POST /ocr`` returns and what is stored as ``result.json``.

    ``storage`` is filled per response (the S3 status changes after the file is written) and is not part of
    the stored ``result.json``, so the local file and its S3 copy are byte for byte the same.
    """

    id: str
    filename: str | None
    content_type: str
    engine: str
    engine_reason: str | None = Field(None, description="why this engine read the document (lang, engine, auto)")
    languages: list[str] = Field(default_factory=list, description="languages the engine was asked to read")
    page_count: int = Field(description="pages in the document")
    pages: list[PageResult]
    markdown: str
    text: str
    timings: Timings
    files: ResultFiles = Field(default_factory=ResultFiles)
    storage: ResultStorage | None = Field(None, description="where the result is stored (responses only)")


class VlmAuthHealth(BaseModel):
    mode: Literal["none", "api_key", "iam"] = Field(description="VL_API_KEY, IAM tokens (VL_IAM_KEY_ID), or none")
    valid_until: str | None = Field(None, description="IAM: when the current token expires (UTC)")
    renewed_at: str | None = Field(None, description="IAM: when it was obtained")
    renewals: int = Field(0, description="IAM: tokens obtained since start")
    last_error: str | None = Field(None, description="IAM: the last failed renewal, kept after later successes")
    last_error_at: str | None = None


class VlmConcurrencyHealth(BaseModel):
    mode: Literal["auto", "fixed"] = Field(description="VL_MAX_CONCURRENCY: auto (adaptive) or a fixed number")
    limit: int = Field(description="VLM requests allowed in flight now")
    maximum: int
    in_flight: int
    waiting: int = Field(description="requests waiting for a slot")
    latency_s: float | None = Field(None, description="mean latency of the last requests to the server")
    baseline_s: float | None = Field(None, description="auto: the server's latency at light load (estimated)")
    signal: Literal["latency", "queue"] = Field(
        "latency", description="auto: what says the server is full: its latency, or its queue (its /metrics)"
    )
    retries: int = Field(0, description="requests sent again after a broken connection or a 429/502/503/504")


class VlmProcessesHealth(BaseModel):
    """VL_PAGE_PROCESSES: the processes that build and send the VLM requests."""

    count: int
    ready: int = Field(description="processes ready for pages")
    restarts: int = Field(0, description="processes started again after one exited")


class VlmHealth(BaseModel):
    """The VLM server of ``paddleocr-vl`` with a server backend."""

    server: str = Field(description="VL_SERVER_URL without credentials")
    model: str | None = Field(None, description="the model name requests carry (found at start)")
    models_offered: list[str] | None = Field(None, description="what the server lists at GET /models")
    auth: VlmAuthHealth
    concurrency: VlmConcurrencyHealth
    page_processes: VlmProcessesHealth | None = Field(
        None, description="null: the VLM requests are built in the service process (VL_PAGE_PROCESSES=0)"
    )


class EngineHealth(BaseModel):
    name: str
    device: str
    state: Literal["initializing", "ready", "failed"]
    error: str | None = None
    init_seconds: float | None = None
    selection: str | None = Field(None, description="why this engine serves requests (OCR_ENGINE and what was found)")
    detail: str | None = Field(None, description="what the engine is doing or waiting for")
    languages: list[str] | None = Field(None, description="languages it reads (ISO 639-1); null: every language")
    vlm: VlmHealth | None = Field(None, description="paddleocr-vl with a VLM server: the server, token and limit")


class S3Error(BaseModel):
    type: str
    message: str
    at: str | None = None


class S3Health(BaseModel):
    """The S3 mirror in detail; ``s3_storage`` repeats ``status`` as a plain string for older probes."""

    status: Literal["not_configured", "configured", "degraded"]
    bucket: str | None = None
    prefix: str | None = None
    startup_check: Literal["running", "ok", "failed"] | None = None
    pending: int = Field(0, description="jobs with uploads waiting in the outbox")
    pending_results: int = Field(0, description="results among them")
    oldest_pending_s: float | None = Field(None, description="age of the oldest pending upload, seconds")
    uploaded: int = Field(0, description="objects uploaded since start")
    last_upload_at: str | None = None
    last_error: S3Error | None = None
    missing: list[str] = Field(default_factory=list, description="required variables that are not set")
    conditional_writes: Literal["checking", "enforced", "not_enforced", "unknown"] | None = Field(
        None, description="whether the bucket enforces If-None-Match / If-Match (job claims rely on them)"
    )
    replica: str | None = Field(None, description="this replica's name in job leases (REPLICA_ID)")
    jobs_held: int = Field(0, description="unfinished jobs this replica holds a lease on")
    jobs_taken_over: int = Field(0, description="jobs this replica took over from stopped replicas since start")


class DiskHealth(BaseModel):
    """``OUTPUT_DIR`` as the last background check found it (see ``app.storage.disk``)."""

    status: Literal["unknown", "ok", "low_space", "not_writable"]
    output_dir: str
    free_mb: float | None = None
    total_mb: float | None = None
    min_free_mb: float = Field(description="DISK_MIN_FREE_MB: below this new work gets 507")
    reason: str | None = Field(None, description="why the disk cannot take documents")
    fallback_from: str | None = Field(None, description="the default OUTPUT_DIR, when it was not writable")
    checked_seconds_ago: float | None = None


class HealthResponse(BaseModel):
    status: Literal["starting", "healthy", "unhealthy"] = Field(description="the default engine's state")
    ready: bool = Field(
        False, description="whether new work is taken: what /ready answers (engine ready, disk ok, not stopping)"
    )
    not_ready: list[str] = Field(default_factory=list, description="why not, one sentence each")
    draining: bool = Field(False, description="a stop is under way: new work gets 503, requests in flight finish")
    engine: EngineHealth = Field(description="the default engine: serves requests that name no engine or language")
    engines: list[EngineHealth] = Field(default_factory=list, description="every loaded engine, default first")
    languages: list[str] = Field(default_factory=list, description="languages of requests without lang (OCR_LANGUAGES)")
    paddleocr: Literal["initializing", "ready", "failed"]
    s3_storage: Literal["not_configured", "configured", "degraded"]
    s3: S3Health
    disk: DiskHealth | None = None
    version: str


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class JobAccepted(BaseModel):
    """202 answer of ``POST /jobs`` (and of ``POST /ocr`` when the document outlasts ``SYNC_TIMEOUT_S``)."""

    id: str
    status: str
    status_url: str
    result_url: str


class JobFailure(BaseModel):
    """Why a job failed, as ``GET /jobs/{id}`` shows it."""

    status: int = Field(description="the HTTP status its result answers with")
    code: str
    message: str


class JobStatus(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    filename: str | None
    pages_done: int
    pages_total: int
    failed_pages: list[int]
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: JobFailure | None
    queue_position: int | None
    result_url: str
    owner: str | None = Field(None, description="the replica running the job (with S3), or that ran it")
    waiting: str | None = Field(None, description="why the job makes no progress now, e.g. its replica's disk is full")
    takeovers: int = Field(0, description="times another replica continued the job after its replica stopped")
