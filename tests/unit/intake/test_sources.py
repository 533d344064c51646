"""Receiving a base64 document: size checked before decoding, lenient on framing, strict on content."""

from __future__ import annotations

import base64
from pathlib import Path

import anyio
import pytest

from app.api.errors import http_status
from app.errors import ServiceError
from app.intake.sources import decoded_size, save_base64
from tests.support.documents import ENGLISH_LINES, image_bytes, render_page

PNG = image_bytes(render_page(ENGLISH_LINES[:1], size=(400, 120), top=20), "PNG")
PNG_B64 = base64.b64encode(PNG).decode()


def save(data: str, target: Path, limit: int = 10 * 1024 * 1024) -> str:
    return anyio.run(save_base64, data, target, limit)


def error_of(data: str, target: Path, limit: int = 10 * 1024 * 1024) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        save(data, target, limit)
    assert not target.exists(), "a refused document leaves no file behind"
    return caught.value


@pytest.mark.parametrize(
    "framing",
    [
        lambda s: s,
        lambda s: "\n".join(s[i : i + 76] for i in range(0, len(s), 76)) + "\n",  # MIME line wrapping
        lambda s: "data:image/png;base64," + s,
        lambda s: s.rstrip("="),  # padding left out
    ],
)
def test_decodes_what_clients_send(framing: object, tmp_path: Path) -> None:
    target = tmp_path / "doc"
    assert save(framing(PNG_B64), target) == "image/png"  # type: ignore[operator]
    assert target.read_bytes() == PNG


def test_large_documents_decode_in_chunks(tmp_path: Path) -> None:
    data = b"%PDF-1.7\n" + bytes(range(256)) * 40_000  # ~10 MB: spans several decode chunks
    target = tmp_path / "doc"
    assert save(base64.b64encode(data).decode(), target, limit=len(data)) == "application/pdf"
    assert target.read_bytes() == data


def test_size_is_checked_before_decoding(tmp_path: Path) -> None:
    # Not even valid base64 past the first characters: a 413 proves nothing was decoded.
    data = "JVBERi0x" + "!" * 4_000_000
    error = error_of(data, tmp_path / "doc", limit=1024 * 1024)
    assert http_status(error) == 413 and error.code == "upload_too_large"


def test_exactly_at_the_limit_is_accepted(tmp_path: Path) -> None:
    assert save(PNG_B64, tmp_path / "doc", limit=len(PNG)) == "image/png"
    assert http_status(error_of(PNG_B64, tmp_path / "doc2", limit=len(PNG) - 1)) == 413


@pytest.mark.parametrize("data", ["not base64!!", PNG_B64[:100] + "*" + PNG_B64[101:], "A", "ftp://host/doc.pdf"])
def test_invalid_base64_is_422_naming_file(data: str, tmp_path: Path) -> None:
    error = error_of(data, tmp_path / "doc")
    assert http_status(error) == 422 and error.code == "invalid_file" and "base64" in error.message


def test_empty_and_unsupported(tmp_path: Path) -> None:
    assert error_of("", tmp_path / "doc").code == "empty_file"
    unsupported = error_of(base64.b64encode(b"just some text, not a document").decode(), tmp_path / "doc")
    assert http_status(unsupported) == 415 and unsupported.code == "unsupported_type"


def test_decoded_size() -> None:
    for raw in (b"", b"a", b"ab", b"abc", b"abcd", bytes(1000)):
        assert decoded_size(base64.b64encode(raw).decode()) == len(raw)
