"""The files made from a result: their names beside ``result.json``, media types, and the download's name."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class ExportFormat:
    name: str  # as in ``output=`` and ``S3_RESULT_FORMATS``
    file_name: str  # in the result folder (and the bucket)
    media_type: str

    @property
    def extension(self) -> str:
        return self.file_name.rsplit(".", 1)[-1]


FORMATS: dict[str, ExportFormat] = {
    "pdf": ExportFormat("pdf", "result.pdf", "application/pdf"),
    "docx": ExportFormat(
        "docx", "result.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    ),
    "xlsx": ExportFormat("xlsx", "result.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}

_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._ ()\[\]-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def download_name(filename: str | None, job_id: str, extension: str) -> str:
    """The uploaded document's name with the format's extension (``Договор.pdf`` -> ``Договор.docx``); the job
    id when the upload had no usable name. Folders in the name and control characters are dropped."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = _CONTROL.sub("", base).strip().strip(".")
    stem = base.rsplit(".", 1)[0].strip() if "." in base else base
    return f"{(stem or 'document-' + job_id)[:150]}.{extension}"


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII ``filename`` for old clients and the exact name as RFC 5987 ``filename*``."""
    stem, dot, extension = name.rpartition(".") if "." in name else (name, "", "")
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    ascii_stem = _UNSAFE_ASCII.sub("_", ascii_stem).strip("_ .") or "document"
    ascii_name = ascii_stem + dot + _UNSAFE_ASCII.sub("_", extension)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
