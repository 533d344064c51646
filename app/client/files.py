"""The batch client's files: the documents in a folder, where their outputs go, when an output is complete,
and the journal of submitted jobs (what lets an interrupted run resume)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

SUPPORTED_SUFFIXES = frozenset({".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"})
JOURNAL_NAME = ".ocr-batch-jobs.jsonl"


@dataclass(frozen=True)
class Document:
    """One input and where its outputs go."""

    source: Path
    relative: str  # POSIX path under the input root, the document's name in journals and summaries
    markdown: Path
    json: Path


def find_documents(root: Path, recursive: bool = False, exclude: Path | None = None) -> list[Path]:
    """Supported documents (by extension, any case) in ``root``, sorted; hidden files and ``exclude`` skipped."""
    pattern = "**/*" if recursive else "*"
    excluded = exclude.resolve() if exclude is not None else None
    found = []
    for path in root.glob(pattern):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or path.suffix.lower() not in SUPPORTED_SUFFIXES:
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


def is_complete(document: Document, digest: str) -> bool:
    """Both outputs exist and the JSON is a whole result made from this very input (same SHA-256)."""
    if not document.markdown.is_file():
        return False
    try:
        data = json.loads(document.json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and isinstance(data.get("pages"), list)
        and isinstance(data.get("client"), dict)
        and data["client"].get("sha256") == digest
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
