"""A request's document source and how its bytes are received: into a server-named file with a size cap, the type
sniffed from the bytes.

Three sources, one set of rules (400 empty, 413 over the limit, 415 not a document we read): a multipart upload
(:func:`save_upload`), a base64 string (:func:`save_base64`) and a URL (:func:`save_url`, through the guarded
fetcher in :mod:`app.intake.url_fetch`). Every endpoint (``/ocr``, ``/jobs``, ``/layout-parsing``) receives through
:func:`receive`, called by :class:`app.intake.receiver.DocumentReceiver`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import anyio
import httpx

from app.documents import SUPPORTED_TYPES, sniff_content_type
from app.errors import Unsupported, bad_request, invalid_field, too_large
from app.intake.url_fetch import FetchPolicy, fetch_to_file

_CHUNK = 1024 * 1024
_B64_CHUNK = 4 * 1024 * 1024  # characters; a multiple of 4
_HEAD = 2048
_DATA_URI = re.compile(r"^data:[\w.+/-]*(;[\w.+-]+=[\w.+-]+)*;base64,", re.IGNORECASE)


def _limit_message(limit: int) -> str:
    return f"the upload exceeds the limit of {limit / 1024 / 1024:g} MB"


def check_received(size: int, head: bytes) -> str:
    """The content type of a received document from its size and first bytes; 400 empty, 415 unsupported."""
    if size == 0:
        raise bad_request("empty_file", "the uploaded file is empty")
    content_type = sniff_content_type(head)
    if content_type is None:
        raise Unsupported(
            "unsupported_type",
            "the file is not a supported document; send one of: " + ", ".join(SUPPORTED_TYPES),
        )
    return content_type


async def _received(target: Path, store: Callable[[], tuple[int, bytes]]) -> str:
    """Run ``store`` (writes ``target``, returns its size and first bytes) in a worker thread and return the sniffed
    content type (:func:`check_received`); ``target`` is removed on any error."""
    try:
        size, head = await anyio.to_thread.run_sync(store)
        return check_received(size, head)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _copy_capped(source: BinaryIO, target: Path, limit: int) -> tuple[int, bytes]:
    """Copy at most ``limit`` bytes; returns (size, first bytes). Raises 413 past the limit."""
    size = 0
    head = b""
    source.seek(0)
    with target.open("wb") as out:
        while chunk := source.read(_CHUNK):
            if not head:
                head = chunk[:_HEAD]
            size += len(chunk)
            if size > limit:
                raise too_large("upload_too_large", _limit_message(limit))
            out.write(chunk)
    return size, head


async def save_upload(source: BinaryIO, target: Path, limit: int) -> str:
    """Store an uploaded file at ``target`` and return its sniffed content type.

    Errors: 400 for an empty file, 413 over ``limit`` bytes, 415 for a type we do not read.
    The caller removes ``target`` when done (it is removed here on error).
    """
    return await _received(target, functools.partial(_copy_capped, source, target, limit))


def decoded_size(data: str) -> int:
    """The number of bytes that the (whitespace-free, padded) base64 string ``data`` decodes to."""
    return len(data) // 4 * 3 - data[-2:].count("=")


def _compact_base64(data: str) -> str:
    """``data`` without a ``data:...;base64,`` prefix and whitespace (a piece at a time, so that the
    event loop gets its turns while a worker thread compacts a large document)."""
    prefix = _DATA_URI.match(data[:256])
    if prefix:
        data = data[prefix.end() :]
    pieces: list[str] = []
    for start in range(0, len(data), _B64_CHUNK):
        pieces.extend(data[start : start + _B64_CHUNK].split())
    return pieces[0] if len(pieces) == 1 else "".join(pieces)


def _padded(data: str) -> str:
    """``data`` with its missing ``=`` padding; 422 when no base64 string has its length."""
    remainder = len(data) % 4
    if remainder == 1:
        raise invalid_field("file", "is neither an http(s) URL nor valid base64 (wrong length)")
    if remainder:
        data += "=" * (4 - remainder)
    return data


def _decode_base64(data: str, target: Path) -> tuple[int, bytes]:
    size = 0
    head = b""
    with target.open("wb") as out:
        for start in range(0, len(data), _B64_CHUNK):
            try:
                chunk = base64.b64decode(data[start : start + _B64_CHUNK], validate=True)
            except (binascii.Error, ValueError):
                raise invalid_field("file", "is neither an http(s) URL nor valid base64") from None
            if not head:
                head = chunk[:_HEAD]
            size += len(chunk)
            out.write(chunk)
    return size, head


def _store_base64(data: str, target: Path, limit: int) -> tuple[int, bytes]:
    compact = _compact_base64(data)
    if len(compact) * 3 // 4 - 2 > limit:  # before any check or decoding of the content
        raise too_large("upload_too_large", _limit_message(limit))
    compact = _padded(compact)
    if decoded_size(compact) > limit:
        raise too_large("upload_too_large", _limit_message(limit))
    return _decode_base64(compact, target)


async def save_base64(data: str, target: Path, limit: int) -> str:
    """Decode the base64 document ``data`` into ``target``; return its sniffed content type.

    The decoded size is checked against ``limit`` before anything is decoded (413). Whitespace and a
    ``data:`` URI prefix are accepted, missing padding is added; other non-base64 characters are a 422
    naming ``file``. Also 400 empty and 415 unsupported, as for uploads. ``target`` is removed on error.
    All of it runs in a worker thread, a piece at a time.
    """
    return await _received(target, functools.partial(_store_base64, data, target, limit))


async def save_url(url: str, target: Path, policy: FetchPolicy) -> str:
    """Fetch ``url`` into ``target`` through the guarded fetcher; return its sniffed content type.

    Errors: those of :func:`app.url_fetch.fetch_to_file`, plus 400 empty and 415 unsupported.
    ``target`` is removed on error.
    """
    try:
        fetched = await fetch_to_file(url, target, policy)
        return check_received(fetched.size, fetched.head)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class DocumentSource:
    """Where a request's document comes from: exactly one of an uploaded file, a base64 string and a URL."""

    upload: BinaryIO | None = None
    base64: str | None = None
    url: str | None = None
    filename: str | None = None  # the client's name for it (data, never a path)


@dataclass(frozen=True)
class ReceivedDocument:
    """A document on disk under a server-made name, its type sniffed from its bytes, and the client's name."""

    path: Path
    content_type: str
    filename: str | None


async def receive(
    source: DocumentSource, target: Path, limit: int, url_policy: Callable[[], FetchPolicy]
) -> ReceivedDocument:
    """Store ``source`` at ``target`` (the one path every endpoint receives documents through).

    Errors as :func:`save_upload`, :func:`save_base64` and :func:`save_url`; ``url_policy`` is asked only for a URL
    (it raises 400 when URL input is off). ``target`` is removed on error.
    """
    if source.upload is not None:
        content_type = await save_upload(source.upload, target, limit)
    elif source.base64 is not None:
        content_type = await save_base64(source.base64, target, limit)
    elif source.url is not None:
        content_type = await save_url(source.url, target, url_policy())
    else:
        raise bad_request("no_file", "send the document as a file in 'file', as base64 in 'file', or a 'url'")
    return ReceivedDocument(target, content_type, source.filename)


def base64_or_url(text: str) -> DocumentSource:
    """The source in PaddleX's one ``file`` field: an ``http(s)://`` URL to fetch (named after its last path
    segment), anything else the document as base64."""
    if text[:8].lower().startswith(("http://", "https://")):
        return DocumentSource(url=text, filename=name_from_url(text))
    return DocumentSource(base64=text)


def name_from_url(url: str, limit: int = 255) -> str | None:
    """The last path segment of ``url`` as the document's name (None when there is none)."""
    try:
        name = PurePosixPath(httpx.URL(url).path).name
    except (httpx.InvalidURL, ValueError):
        return None
    return name[:limit] or None
