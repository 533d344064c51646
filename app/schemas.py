"""Request option and response models (the API's contract), separate from the code that fills them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

OutputFormat = Literal["json", "markdown", "text"]


class Block(BaseModel):
    """One recognised region of a page: a text line for the CPU engines, a layout block for the VLM."""

    bbox: list[float] = Field(description="[x0, y0, x1, y1] in page pixels")
    text: str
    score: float | None = Field(None, description="confidence 0..1 when the engine reports one")
    label: str = "text"
    order: int = Field(0, description="reading order within the page, from 0")


class PageResult(BaseModel):
    index: int = Field(description="page number in the document, from 1")
    width: int
    height: int
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


class DocumentResult(BaseModel):
    """The result of one document: what ``POST /ocr`` returns and what is stored as ``result.json``."""

    id: str
    filename: str | None
    content_type: str
    engine: str
    languages: list[str] = Field(default_factory=list, description="languages the engine was asked to read")
    page_count: int = Field(description="pages in the document")
    pages: list[PageResult]
    markdown: str
    text: str
    timings: Timings
    files: ResultFiles = Field(default_factory=ResultFiles)


class EngineHealth(BaseModel):
    name: str
    device: str
    state: Literal["initializing", "ready", "failed"]
    error: str | None = None
    init_seconds: float | None = None
    selection: str | None = Field(None, description="why this engine serves requests (OCR_ENGINE and what was found)")
    detail: str | None = Field(None, description="what the engine is doing or waiting for")
    languages: list[str] | None = Field(None, description="languages it reads (ISO 639-1); null: every language")


class HealthResponse(BaseModel):
    status: Literal["starting", "healthy", "unhealthy"]
    engine: EngineHealth = Field(description="the default engine: serves requests that name no engine or language")
    engines: list[EngineHealth] = Field(default_factory=list, description="every loaded engine, default first")
    languages: list[str] = Field(default_factory=list, description="languages of requests without lang (OCR_LANGUAGES)")
    paddleocr: Literal["initializing", "ready", "failed"]
    s3_storage: str
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


class JobError(BaseModel):
    status: int
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
    error: JobError | None
    queue_position: int | None
    result_url: str
