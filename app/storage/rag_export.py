"""The knowledge-base export: every finished document as one text file in one flat folder of the bucket.

Cloud.ru Managed RAG indexes the files of one Object Storage folder that have one extension. With
``RAG_EXPORT_PREFIX`` set (and the S3 mirror on) each succeeded job also writes
``<RAG_EXPORT_PREFIX>/<name>.md`` (or ``.txt``, ``RAG_EXPORT_FORMAT``):

- **name**: the uploaded file's name without its document extension, letters and digits of any script,
  ``-``, ``_`` and ``.`` kept, anything else one ``_``, then ``_<job id>`` so that names never clash
  (``Договор поставки №5.pdf`` -> ``Договор_поставки_5_<id>.md``); or, when the client passes
  ``export_name``, that name made safe the same way and *without* the id: recognising a document again
  under the same ``export_name`` replaces its file instead of adding a second one.
- **content**: a heading with the document's name, then each page introduced by a line
  ``--- Страница 3 / 12 · <document> ---``, repeated as ``--- Страница 3 / 12 (продолжение) · <document> ---``
  about every :data:`MARK_EVERY_CHARS` characters inside a long page (never inside a table or a code block),
  so that a chunk of the knowledge base's splitter of that size or more carries its document and page.
  Markdown keeps the engine's headings and tables (image references are dropped: the images are not in
  the folder); plain text is the pages' text.

The file goes through the S3 mirror's outbox like every other upload (after the job's ``result.json``: a
sync ``/ocr`` never waits for it), guarded by the job id and submission time stored with the object, so an
older job's export never overwrites a newer one of the same name, and the retention clean-up deletes an
export only while it is still that job's (:meth:`RagExport.forget`; ``RAG_EXPORT_KEEP`` leaves it). An
export that cannot be written is logged; the job still succeeds.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from app.schemas import DocumentResult, RagExportStorage
from app.settings import Settings
from app.storage.local import atomic_write
from app.storage.s3.client import content_type
from app.storage.s3.mirror import S3Mirror
from app.storage.s3.outbox import Item


class ExportedJob(Protocol):
    """What the export needs to know of a job (a job's record has it)."""

    id: str
    filename: str | None
    export_name: str | None
    created_at: str
    rag_export_key: str | None


log = logging.getLogger(__name__)

ExportFormat = Literal["md", "txt"]
EXPORT_NAME_MAX = 200
"""Longest ``export_name`` a request may pass (characters)."""
STEM_MAX = 100
"""Longest name part of an export file (characters, before ``_<id>`` and the extension)."""
MARK_EVERY_CHARS = 1200
"""A page mark is repeated inside a page after about this many characters."""
MARK_NAME_MAX = 80
FOLDER = ".rag-export"
"""Local copies of the exports, under ``OUTPUT_DIR`` (what the outbox uploads)."""
DOCUMENT_SUFFIXES = frozenset({".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"})

_UNSAFE = re.compile(r"[^\w.\-]+")
_REPEATED = re.compile(r"([._\-])[._\-]+")
_IMAGE_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_EMPTY_DIV = re.compile(r"<div\b[^>]*>\s*</div>", re.IGNORECASE)
_MARKDOWN_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


# --- names --------------------------------------------------------------------------------------------------
def safe_stem(text: str, limit: int = STEM_MAX) -> str:
    """``text`` as a file-name part: letters and digits of any script, ``-``, ``_``, ``.``; runs of anything
    else become one ``_``; no leading or trailing punctuation; at most ``limit`` characters. May be empty."""
    stem = _UNSAFE.sub("_", unicodedata.normalize("NFC", text))
    stem = _REPEATED.sub(lambda m: m.group(1), stem).strip("._-")
    return stem[:limit].rstrip("._-")


def check_export_name(value: str | None) -> str | None:
    """The request's ``export_name`` (stripped), or None when absent or blank.

    Raises ValueError (for a 422) when it is longer than :data:`EXPORT_NAME_MAX` characters or has no
    letter or digit to make a file name of.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > EXPORT_NAME_MAX:
        raise ValueError(f"at most {EXPORT_NAME_MAX} characters")
    if not safe_stem(value):
        raise ValueError("needs a letter or a digit")
    return value


def export_file_name(job_id: str, filename: str | None, export_name: str | None, fmt: ExportFormat) -> str:
    """The export's file name: ``<safe export_name>.<fmt>``, else ``<safe file stem>_<job_id>.<fmt>``."""
    if export_name and safe_stem(export_name):
        return f"{safe_stem(export_name)}.{fmt}"
    base = PurePosixPath((filename or "").replace("\\", "/")).name
    root, dot, suffix = base.rpartition(".")
    if dot and root and f".{suffix.lower()}" in DOCUMENT_SUFFIXES:
        base = root
    return f"{safe_stem(base) or 'document'}_{job_id}.{fmt}"


def display_name(job_id: str, filename: str | None, export_name: str | None) -> str:
    """How the export names its document: ``export_name``, else the uploaded file's name, on one line."""
    name = " ".join((export_name or filename or "").split()) or f"документ {job_id[:8]}"
    return name if len(name) <= MARK_NAME_MAX else name[: MARK_NAME_MAX - 1] + "…"


# --- content ------------------------------------------------------------------------------------------------
def page_mark(number: int, total: int, name: str, continued: bool = False) -> str:
    """The line that introduces page ``number`` of ``total`` (or continues it)."""
    more = " (продолжение)" if continued else ""
    return f"--- Страница {number} / {total}{more} · {name} ---"


def strip_images(markdown: str) -> str:
    """Markdown without image references (``<img>`` tags, their empty ``<div>`` wrappers, ``![alt](src)``
    kept as its alt text): the image files are not exported."""
    markdown = _IMAGE_TAG.sub("", markdown)
    markdown = _EMPTY_DIV.sub("", markdown)
    return _MARKDOWN_IMAGE.sub(lambda m: m.group(1), markdown)


def render_export(result: DocumentResult, name: str, fmt: ExportFormat, every: int = MARK_EVERY_CHARS) -> str:
    """The export file's text for ``result`` (see the module docstring). Pure."""
    md = fmt == "md"
    recognised = len(result.pages)
    lines = [f"# {name}" if md else name, ""]
    lines.append(
        f"Распознанный текст документа «{name}»: страниц в документе {result.page_count}, "
        f"распознано {recognised}; задание {result.id}."
    )
    for page in result.pages:
        lines += ["", page_mark(page.index, result.page_count, name), ""]
        text = strip_images(page.markdown) if md else page.text
        body = "(страница не распознана)" if page.error else text
        continued = page_mark(page.index, result.page_count, name, continued=True)
        lines += _with_marks(body.strip("\n"), continued, every, md)
    return "\n".join(lines).rstrip() + "\n"


def _with_marks(body: str, mark: str, every: int, md: bool) -> list[str]:
    """``body``'s lines with ``mark`` put in before a line once ``every`` characters have passed since the
    last mark, where that splits no table row pair, HTML table or fenced code block."""
    out: list[str] = []
    since = 0
    fenced = False
    tables = 0
    previous = ""
    for line in body.split("\n"):
        in_table_rows = previous.lstrip().startswith("|") and line.lstrip().startswith("|")
        if since >= every and not fenced and tables <= 0 and not in_table_rows and line.strip():
            out += (["", mark, ""] if previous.strip() else [mark, ""]) if md else [mark]
            since = 0
        out.append(line)
        since += len(line) + 1
        if _FENCE.match(line):
            fenced = not fenced
        lowered = line.lower()
        tables += lowered.count("<table") - lowered.count("</table")
        previous = line
    return out


# --- the export ---------------------------------------------------------------------------------------------
class RagExport:
    """Writes, describes and deletes the knowledge-base exports of jobs (all methods are blocking and
    thread-safe; none raises)."""

    def __init__(self, settings: Settings, mirror: S3Mirror | None, root: Path) -> None:
        self.prefix = settings.rag_export_prefix
        self.format: ExportFormat = settings.rag_export_format
        self.keep = settings.rag_export_keep
        self.mirror = mirror
        self.root = root
        self.enabled = bool(self.prefix) and mirror is not None
        if self.prefix and mirror is None:
            log.warning("RAG_EXPORT_PREFIX is set but the S3 mirror is off: no knowledge-base export")
        elif self.enabled and mirror is not None:
            log.info("knowledge-base export on: %s/%s/*.%s", mirror.bucket, self.prefix, self.format)

    def export(self, record: ExportedJob, result: DocumentResult) -> str | None:
        """Write the job's export and record it in the outbox; its object key, or None (off, or it failed)."""
        if not self.enabled or self.mirror is None:
            return None
        try:
            name = export_file_name(record.id, record.filename, record.export_name, self.format)
            text = render_export(result, display_name(record.id, record.filename, record.export_name), self.format)
            path = self.root / FOLDER / f"{record.id}.{self.format}"
            atomic_write(path, text.encode("utf-8"))
            key = f"{self.prefix}/{name}"
            version = f"{record.created_at}/{record.id}"  # later submissions win
            item = Item(f"{FOLDER}/{path.name}", key, content_type(name), owner=record.id, version=version)
            self.mirror.outbox.add(record.id, [item])
            return key
        except Exception:  # the export never fails the job
            log.exception("job %s: the knowledge-base export could not be written", record.id)
            return None

    def forget(self, record: ExportedJob) -> None:
        """For the retention clean-up: remove the local copy and (unless ``RAG_EXPORT_KEEP``) record the
        deletion of the object in the outbox; it is deleted only while it is still this job's."""
        try:
            for fmt in ("md", "txt"):
                (self.root / FOLDER / f"{record.id}.{fmt}").unlink(missing_ok=True)
            if self.mirror is not None and record.rag_export_key and not self.keep:
                item = Item("", record.rag_export_key, "", delete=True, owner=record.id)
                self.mirror.outbox.add(record.id, [item])
        except Exception:
            log.exception("job %s: the deletion of its knowledge-base export could not be recorded", record.id)

    def describe(self, record: ExportedJob) -> RagExportStorage:
        """The ``storage.rag_export`` block of the job's result."""
        if not self.enabled or self.mirror is None:
            return RagExportStorage(status="disabled")
        key = record.rag_export_key
        if key is None:
            return RagExportStorage(status="not_exported")
        pending = self.mirror.outbox.upload_pending(record.id, key)
        return RagExportStorage(status="pending" if pending else "uploaded", bucket=self.mirror.bucket, key=key)
