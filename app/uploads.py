"""Receiving uploads: stream to a server-named file with a size cap, sniff the type from the bytes."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import anyio
from starlette.exceptions import HTTPException

from app.documents import SUPPORTED_TYPES, sniff_content_type
from app.errors import ServiceError, bad_request, too_large

_CHUNK = 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised while a request body is still streaming in. An HTTPException so that FastAPI's body
    parser re-raises it unchanged (it turns other exceptions into a 400)."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, f"the upload exceeds the limit of {limit_bytes / 1024 / 1024:g} MB")


def _copy_capped(source: BinaryIO, target: Path, limit: int) -> tuple[int, bytes]:
    """Copy at most ``limit`` bytes; returns (size, first bytes). Raises 413 past the limit."""
    size = 0
    head = b""
    source.seek(0)
    with target.open("wb") as out:
        while chunk := source.read(_CHUNK):
            if not head:
                head = chunk[:2048]
            size += len(chunk)
            if size > limit:
                raise too_large("upload_too_large", f"the upload exceeds the limit of {limit / 1024 / 1024:g} MB")
            out.write(chunk)
    return size, head


async def save_upload(source: BinaryIO, target: Path, limit: int) -> str:
    """Store an uploaded file at ``target`` and return its sniffed content type.

    Errors: 400 for an empty file, 413 over ``limit`` bytes, 415 for a type we do not read.
    The caller removes ``target`` when done (it is removed here on error).
    """
    try:
        size, head = await anyio.to_thread.run_sync(_copy_capped, source, target, limit)
        if size == 0:
            raise bad_request("empty_file", "the uploaded file is empty")
        content_type = sniff_content_type(head)
        if content_type is None:
            raise ServiceError(
                415,
                "unsupported_type",
                "the file is not a supported document; send one of: " + ", ".join(SUPPORTED_TYPES),
            )
        return content_type
    except BaseException:
        target.unlink(missing_ok=True)
        raise
