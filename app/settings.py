"""Service configuration: the one place where environment variables are read.

Every field maps to an upper-case environment variable of the same name (``ocr_engine`` ->
``OCR_ENGINE``) and is documented in ``ML_INFERENCE_ENV_VARS.md``; a test keeps the two in step.
"""

from __future__ import annotations

import logging
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.engines.languages import parse_languages
from app.iam import DEFAULT_IAM_URL

#: The engines that run on the CPU, in the order ``auto`` prefers them for a request.
CPU_ENGINES = ("pp-ocr", "tesseract")
_FOLDER = re.compile(r"^(?!.*(?:^|/)\.\.?(?:/|$))[\w.\-]+(?:/[\w.\-]+)*$")
_DAY = re.compile(r"^\d{4}-\d\d-\d\d$")
#: Tesseract page segmentation modes offered (4, "one column", breaks lines on slightly rotated pages).
TESSERACT_PSMS = (3, 6, 11)
#: Settings where an empty value is a value of its own (no key prefix); for every other one, empty = default.
RESULT_FORMATS = ("json", "md", "pdf", "docx", "xlsx")
"""The files of a result: ``result.json``, ``result.md`` (with its images) and the three made from them."""
EMPTY_IS_A_VALUE = frozenset({"cloudru_s3_prefix"})
#: A comment left at the end of a line (``OCR_ENGINE=auto  # note``): a console form or ``docker --env-file`` keeps
#: it as part of the value. No setting's value holds a blank followed by '#', nor starts with '# '.
_TRAILING_COMMENT = re.compile(r"\s#|^#(?:\s|$)")


def carries_comment(value: str) -> bool:
    """Whether ``value`` goes on with what looks like a ``#`` comment copied along with it."""
    return bool(_TRAILING_COMMENT.search(value))


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """All settings of the service, read from the environment (and ``.env`` when present)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # --- server -------------------------------------------------------------------------------
    host: str = "0.0.0.0"  # noqa: S104 - a container service listens on all interfaces
    port: int = Field(8081, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    shutdown_grace_s: int = Field(30, ge=0, le=3600)
    header_timeout_s: float = Field(30, gt=0, le=3600)  # a connection must send its request head within this
    body_read_timeout_s: float = Field(60, gt=0, le=3600)  # longest wait for the next piece of a request body
    keep_alive_timeout_s: int = Field(5, ge=1, le=3600)  # idle keep-alive connections are closed after this

    # --- engine -------------------------------------------------------------------------------
    ocr_engine: Literal["auto", "paddleocr-vl", "pp-ocr", "tesseract"] = "auto"
    ocr_cpu_engines: str = "auto"  # "auto" or a list of CPU engines to load: "pp-ocr,tesseract"
    ocr_languages: str = "ru,en"  # languages of requests that do not say (ISO 639-1)
    ocr_concurrency: int = Field(default_factory=_cpu_count, ge=1, le=64)
    engine_threads: int = Field(0, ge=0, le=64)
    ocr_device: str = ""  # "" = gpu:0 when paddle sees a CUDA GPU, else cpu

    ocr_auto_rotate: bool = True  # CPU engines: turn pages lying sideways or upside down upright (Tesseract OSD)
    pp_ocr_textline_orientation: bool = False  # pp-ocr: rapidocr's per-line 0/180 classifier (scene photos)

    # --- tesseract ----------------------------------------------------------------------------
    tessdata_dir: str = ""  # "" = the first of the usual Debian/Ubuntu/Homebrew folders that has models
    tesseract_psm: int = 3  # page segmentation: 3 automatic (columns), 6 one block of text, 11 sparse text

    # --- paddleocr-vl ---------------------------------------------------------------------------
    vl_pipeline_version: str = ""  # "" = the installed paddleocr's default
    vl_backend: Literal["native", "vllm-server", "sglang-server", "fastdeploy-server"] = "native"
    vl_server_url: str = ""
    vl_api_key: SecretStr = SecretStr("")
    vl_iam_key_id: str = ""  # with VL_IAM_SECRET: Cloud.ru IAM access tokens for the VLM server, renewed
    vl_iam_secret: SecretStr = SecretStr("")
    vl_iam_url: str = DEFAULT_IAM_URL
    vl_model_name: str = ""  # "" = the one model the server lists at GET /models
    vl_max_concurrency: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = "auto"  # VLM requests at once
    vl_auto_concurrency_max: int = Field(128, ge=1, le=256)  # the upper bound of "auto"
    vl_batch_pages: int = Field(4, ge=1, le=64)
    vl_request_timeout_s: float = Field(180, gt=0, le=3600)
    vl_request_attempts: int = Field(3, ge=1, le=10)  # tries of a VLM request on a broken connection or 429/502-504
    # server backends: processes that build and send the VLM requests; "auto" = 1 per 4 cores (0 below 4), up to 4
    vl_page_processes: Annotated[int, Field(ge=0, le=16)] | Literal["auto"] = "auto"
    vl_limit_sync_s: float = Field(2.0, ge=0, le=600)  # auto limit: remembered and shared this often; 0 = never
    vl_server_metrics_url: str = ""  # "" = <VL_SERVER_URL's host>/metrics; "off" = latency only
    vl_use_layout_detection: bool = True
    vl_use_doc_orientation_classify: bool = False
    vl_use_doc_unwarping: bool = False

    # --- limits -------------------------------------------------------------------------------
    max_upload_mb: float = Field(100, gt=0)
    max_pages: int = Field(500, ge=1)
    max_image_pixels: int = Field(120_000_000, ge=1_000_000)
    pdf_dpi: int = Field(150, ge=50, le=600)
    max_dpi: int = Field(300, ge=50, le=600)
    max_queued_jobs: int = Field(64, ge=1)
    max_queued_pages: int = Field(5000, ge=1)

    # --- jobs ---------------------------------------------------------------------------------
    sync_timeout_s: float = Field(90, gt=0)
    page_timeout_s: float = Field(300, gt=0)
    result_ttl_hours: float = Field(72, gt=0)
    keep_job_inputs: bool = True  # keep uploads until RESULT_TTL_HOURS so pages can be shown as images

    # --- replicas sharing jobs through S3 ---------------------------------------------------------
    replica_id: str = ""  # "" = the host name with a random suffix
    job_lease_s: float = Field(30, ge=3, le=600)  # a replica that stops renewing loses its jobs after this
    job_scan_interval_s: float = Field(10, gt=0, le=600)  # how often replicas look for jobs to take over
    max_job_takeovers: int = Field(3, ge=1, le=100)  # crashes in a row without progress before a job fails

    # --- security -----------------------------------------------------------------------------
    api_key: SecretStr | None = None
    cors_origins: str = ""

    # --- URL input ----------------------------------------------------------------------------
    allow_url_input: bool = True
    allow_private_urls: bool = False
    url_fetch_timeout_s: float = Field(60, gt=0, le=3600)

    # --- storage ------------------------------------------------------------------------------
    output_dir: Path = Path("/app/output")
    disk_min_free_mb: float = Field(256, ge=0)  # below this much free space in OUTPUT_DIR new work gets 507
    disk_wait_s: float = Field(60, gt=0, le=3600)  # with S3: a job that cannot write this long goes to another replica
    disk_check_interval_s: float = Field(5, gt=0, le=600)
    # fsync each file written to OUTPUT_DIR: "auto" = only without S3 (with S3 the bucket holds what must outlive the
    # container, and a container's disk does not survive a host's crash anyway)
    output_fsync: bool | Literal["auto"] = "auto"

    # --- S3 mirror (Cloud.ru Object Storage): on only when the first four are all set ----------------
    cloudru_s3_endpoint: str = ""
    cloudru_s3_bucket: str = ""
    cloudru_s3_access_key: SecretStr = SecretStr("")
    cloudru_s3_secret_key: SecretStr = SecretStr("")
    cloudru_s3_region: str = "ru-central-1"
    cloudru_s3_prefix: str = "ocr-results"
    cloudru_s3_ca_bundle: str = ""
    s3_upload_wait_s: float = Field(5, ge=0, le=60)
    s3_connect_timeout_s: float = Field(3, gt=0, le=60)
    s3_read_timeout_s: float = Field(30, gt=0, le=600)
    s3_retry_max_s: float = Field(60, gt=0, le=3600)
    s3_upload_concurrency: int = Field(4, ge=1, le=32)
    s3_result_formats: str = "json,md"  # result files mirrored: json and md always; pdf, docx, xlsx when named

    # --- knowledge-base export (Cloud.ru Managed RAG): a folder of the same bucket; needs the S3 mirror ------
    rag_export_prefix: str = ""  # "" = off
    rag_export_format: Literal["md", "txt"] = "md"
    rag_export_keep: bool = False  # true: the retention clean-up leaves exports in the bucket

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object, info: ValidationInfo) -> object:
        """A variable set to an empty (or blank) value, as an empty row in a console form sets it, means
        the default rather than an invalid value that would stop the service from starting."""
        if not isinstance(value, str) or value.strip() or info.field_name in EMPTY_IS_A_VALUE:
            return value
        field = cls.model_fields[str(info.field_name)]
        return field.get_default(call_default_factory=True)

    @field_validator("cloudru_s3_endpoint", "cloudru_s3_bucket", "cloudru_s3_region", "cloudru_s3_ca_bundle")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("vl_iam_key_id", "vl_iam_url", "vl_model_name")
    @classmethod
    def _strip_vl(cls, value: str) -> str:
        return value.strip()

    @field_validator("vl_max_concurrency", "vl_page_processes", mode="before")
    @classmethod
    def _auto_or_number(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cloudru_s3_access_key", "cloudru_s3_secret_key", "vl_iam_secret")
    @classmethod
    def _strip_secret(cls, value: SecretStr) -> SecretStr:
        return SecretStr(value.get_secret_value().strip())

    @field_validator("cloudru_s3_prefix")
    @classmethod
    def _strip_slashes(cls, value: str) -> str:
        return value.strip().strip("/")

    @field_validator("s3_result_formats")
    @classmethod
    def _result_formats(cls, value: str) -> str:
        names = [name.strip().lower() for name in value.replace(";", ",").split(",") if name.strip()]
        unknown = [name for name in names if name not in RESULT_FORMATS]
        if unknown:
            raise ValueError(f"unknown format(s) {', '.join(unknown)}; use {', '.join(RESULT_FORMATS)}")
        return ",".join(name for name in RESULT_FORMATS if name in names or name in ("json", "md"))

    @field_validator("rag_export_prefix")
    @classmethod
    def _export_folder(cls, value: str) -> str:
        value = value.strip().strip("/")
        if value and not _FOLDER.match(value):
            raise ValueError("a folder path of letters, digits, '-', '_' and '.', separated by '/'; no '..'")
        return value

    @model_validator(mode="after")
    def _export_apart_from_results(self) -> Settings:
        """The knowledge base indexes the export folder: it must hold no ``result.md`` of the S3 mirror."""
        export, results = self.rag_export_prefix, self.cloudru_s3_prefix
        if not export:
            return self
        if results and (export == results or results.startswith(export + "/")):
            raise ValueError(f"RAG_EXPORT_PREFIX '{export}' contains the results (CLOUDRU_S3_PREFIX '{results}')")
        inside = export if not results else export[len(results) + 1 :] if export.startswith(results + "/") else ""
        first = inside.split("/", 1)[0]
        if first == "jobs" or _DAY.match(first):
            raise ValueError(f"RAG_EXPORT_PREFIX '{export}' is a folder of the S3 mirror (jobs/ or a day)")
        return self

    @field_validator("ocr_cpu_engines")
    @classmethod
    def _known_cpu_engines(cls, value: str) -> str:
        value = value.strip().lower()
        if value == "auto":
            return value
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in CPU_ENGINES]
        if unknown or not names:
            raise ValueError(f"'auto' or a comma-separated list of {', '.join(CPU_ENGINES)}; got '{value}'")
        return ",".join(dict.fromkeys(names))

    @field_validator("ocr_languages")
    @classmethod
    def _language_list(cls, value: str) -> str:
        return ",".join(parse_languages(value))

    @field_validator("tesseract_psm")
    @classmethod
    def _supported_psm(cls, value: int) -> int:
        if value not in TESSERACT_PSMS:
            raise ValueError(f"one of {', '.join(map(str, TESSERACT_PSMS))}")
        return value

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def s3_export_formats(self) -> tuple[str, ...]:
        """The files made from a result (pdf, docx, xlsx) that ``S3_RESULT_FORMATS`` names for the bucket."""
        return tuple(name for name in self.s3_result_formats.split(",") if name not in ("json", "md"))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def disk_min_free_bytes(self) -> int:
        return int(self.disk_min_free_mb * 1024 * 1024)

    @property
    def languages(self) -> tuple[str, ...]:
        """``OCR_LANGUAGES`` as canonical codes."""
        return tuple(self.ocr_languages.split(","))

    @property
    def cpu_engines(self) -> tuple[str, ...] | None:
        """``OCR_CPU_ENGINES`` as engine names; ``None`` for ``auto``."""
        return None if self.ocr_cpu_engines == "auto" else tuple(self.ocr_cpu_engines.split(","))

    @property
    def threads_per_worker(self) -> int:
        """Math threads one OCR worker may use, so that the workers together fill the cores once."""
        if self.engine_threads:
            return self.engine_threads
        return max(1, _cpu_count() // self.ocr_concurrency)


def warn_about_comments(settings: Settings, log: logging.Logger) -> None:
    """Log one warning per setting whose value carries a ``#`` comment, naming the variable, never the value.

    Only values that passed validation get here (a comment in a number or a choice stops the start), so these are
    free text: a key, a URL, a name, a path, that the service would otherwise use with the comment inside.
    """
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str | Path) and carries_comment(str(text)):
            log.warning(
                "%s: the value goes on with ' #…', a comment copied along with the line that is now part of the"
                " value; put comments on a line of their own",
                name.upper(),
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
