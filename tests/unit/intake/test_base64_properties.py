"""Property tests for the base64 input path: what a client encodes is exactly what lands on disk, and
any string is either a document or a clean 4xx — never another exception."""

from __future__ import annotations

import asyncio
import base64
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from app.api.errors import http_status
from app.errors import ServiceError
from app.intake.sources import save_base64

PNG = b"\x89PNG\r\n\x1a\n"


def save(data: str, limit: int = 1 << 20) -> tuple[str | None, bytes | None, ServiceError | None]:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "upload"
        try:
            content_type = asyncio.run(save_base64(data, target, limit))
        except ServiceError as exc:
            return None, None, exc
        return content_type, target.read_bytes(), None


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000), st.sampled_from(["plain", "lines", "data-uri", "unpadded"]))
def test_round_trip(payload: bytes, framing: str) -> None:
    document = PNG + payload
    encoded = base64.b64encode(document).decode()
    if framing == "lines":
        encoded = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    elif framing == "data-uri":
        encoded = "data:image/png;base64," + encoded
    elif framing == "unpadded":
        encoded = encoded.rstrip("=")
    content_type, stored, error = save(encoded)
    assert error is None, error
    assert content_type == "image/png" and stored == document


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_document_or_a_4xx(data: str) -> None:
    _, _, error = save(data)
    if error is not None:
        assert 400 <= http_status(error) < 500


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4000))
def test_over_the_limit_is_413_before_decoding(limit: int) -> None:
    encoded = base64.b64encode(PNG + b"\x00" * (limit + 1)).decode()
    _, _, error = save(encoded, limit=limit)
    assert error is not None and http_status(error) == 413
