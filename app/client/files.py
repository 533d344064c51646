"""The batch client's files: the documents in a folder, where their outputs go, when an output is complete,
and the journal of submitted jobs (what lets an interrupted run resume)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

SUPPORTED_SUFFIXES = frozenset({".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"})
JOURNAL_NAME = ".ocr-batch-jobs.jsonl"
OCR_PDF_SUFFIX = ".ocr.pdf"
"""The searchable PDFs this client writes (``--format pdf``): never read as inputs."""
FORMATS = ("md", "json", "pdf", "docx", "xlsx")
"""What ``--format`` may name: the Markdown, the JSON (always written: it marks a document complete), and the files
the service makes from a result (searchable PDF, Word, Excel with the tables)."""


def parse_formats(value: str) -> tuple[str, ...]:
    """``--format`` (``md,json,pdf``) as known formats in a fixed order, json always included; ValueError naming
    an unknown one."""
    names = {name.strip().lower().lstrip(".") for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return tuple(name for name in FORMATS if name in names or name == "json")


@dataclass(frozen=True)
class Document:
    """One input and where its outputs go."""

    source: Path
    relative: str  # POSIX path under the input root, the document's name in journals and summaries
    markdown: Path
    json: Path

    def output(self, extension: str) -> Path:
        """Where the ``extension`` file goes: beside the JSON, under the same name (``scan.tif`` -> ``scan.docx``);
        the searchable PDF is ``<name>.ocr.pdf``, a name the next run does not take for an input."""
        return self.json.with_suffix(OCR_PDF_SUFFIX if extension == "pdf" else f".{extension}")


def find_documents(root: Path, recursive: bool = False, exclude: Path | None = None) -> list[Path]:
    """Supported documents (by extension, any case) in ``root``, sorted; hidden files, ``exclude`` and this client's
    searchable PDFs (``*.ocr.pdf``) skipped."""
    pattern = "**/*" if recursive else "*"
    excluded = exclude.resolve() if exclude is not None else None
    found = []
    for path in root.glob(pattern):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or path.suffix.lower() not in SUPPORTED_SUFFIXES:
            continue
        if path.name.lower().endswith(OCR_PDF_SUFFIX):  # an output of --format pdf
            continue
        if excluded is not None and path.resolve().is_relative_to(excluded):
            continue
        if path.is_file():
            found.append(path)
    return sorted(found)


def plan_outputs(root: Path, sources: Iterable[Path], output_dir: Path | None = None) -> list[Document]:
    """Output paths: ``<stem>.md``/``<stem>.json`` beside the input (or mirrored under ``output_dir``).

    When two inputs in one folder share a stem (``scan.pdf``, ``scan.png``), both keep their full name
    (``scan.pdf.md``), so that no output is written twice.
    """
    sources = list(sources)
    stems: dict[tuple[Path, str], int] = {}
    for source in sources:
        key = (source.parent, source.stem)
        stems[key] = stems.get(key, 0) + 1
    documents = []
    for source in sources:
        relative = source.relative_to(root)
        folder = output_dir / relative.parent if output_dir is not None else source.parent
        name = source.name if stems[(source.parent, source.stem)] > 1 else source.stem
        documents.append(Document(source, relative.as_posix(), folder / f"{name}.md", folder / f"{name}.json"))
    return documents


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_complete(document: Document, digest: str, formats: Sequence[str] = ("md", "json")) -> bool:
    """Every output of ``formats`` exists (an Excel file may be missing when the JSON records that the result has no
    tables) and the JSON is a whole result made from this very input (same SHA-256)."""
    if "md" in formats and not document.markdown.is_file():
        return False
    try:
        data = json.loads(document.json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not (
        isinstance(data, dict)
        and isinstance(data.get("pages"), list)
        and isinstance(data.get("client"), dict)
        and data["client"].get("sha256") == digest
    ):
        return False
    no_tables = data["client"].get("no_tables") is True
    return all(
        document.output(name).is_file() or (name == "xlsx" and no_tables)
        for name in formats
        if name not in ("md", "json")
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class Journal:
    """Append-only record of submitted jobs (one JSON line each); the last line of a document wins."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.entries: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[str(entry["source"])] = entry
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a crash

    def job_for(self, relative: str, digest: str) -> str | None:
        entry = self.entries.get(relative)
        return str(entry["job_id"]) if entry and entry.get("sha256") == digest and entry.get("job_id") else None

    def record(self, relative: str, digest: str, job_id: str) -> None:
        entry = {"source": relative, "sha256": digest, "job_id": job_id, "submitted_at": now_iso()}
        with self._lock:
            self.entries[relative] = entry
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")


def export_name_of(document: Document) -> str:
    """The document's stable knowledge-base name (``export_name``): its path under the input root with the
    name of its outputs (no extension, unless two inputs share a stem), so that a later run replaces its file."""
    return (PurePosixPath(document.relative).parent / document.markdown.stem).as_posix()


def recorded_export(document: Document) -> dict[str, Any] | None:
    """The ``storage.rag_export`` block kept in a document's JSON output, if any."""
    try:
        data = json.loads(document.json.read_text(encoding="utf-8"))
        block = (data.get("storage") or {}).get("rag_export")
    except (OSError, ValueError, AttributeError):
        return None
    return block if isinstance(block, dict) else None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
