"""Every kind of bad input gets a clear JSON error with the right status, and the service stays healthy."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support.documents import ENGLISH_LINES, image_bytes, pdf_bytes, render_page, text_pdf
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.integration


def post_file(client: httpx.Client, data: bytes, **form: str) -> httpx.Response:
    return client.post("/ocr", files={"file": ("upload.bin", data, "application/octet-stream")}, data=form)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return dict(error)


@pytest.fixture(autouse=True)
def still_healthy(client: httpx.Client) -> Iterator[None]:
    yield
    assert client.get("/health").json()["status"] == "healthy"


def test_no_file(client: httpx.Client) -> None:
    assert_error(client.post("/ocr", data={"pages": "1"}), 400, "no_file")
    assert_error(client.post("/ocr"), 400, "no_file")


def test_empty_file(client: httpx.Client) -> None:
    assert_error(post_file(client, b""), 400, "empty_file")


@pytest.mark.parametrize(
    "data",
    [b"just some text, not a document", b"GIF89a" + b"\x00" * 100, b"PK\x03\x04 a zip file", b"\x00" * 64],
)
def test_unsupported_type_is_sniffed(client: httpx.Client, data: bytes) -> None:
    response = client.post("/ocr", files={"file": ("scan.pdf", data, "application/pdf")})
    assert_error(response, 415, "unsupported_type")


def test_corrupt_pdf(client: httpx.Client) -> None:
    assert_error(post_file(client, b"%PDF-1.7\n" + b"garbage " * 200), 422, "corrupt_document")


def test_truncated_pdf(client: httpx.Client) -> None:
    data = text_pdf(2)
    assert_error(post_file(client, data[: len(data) // 3]), 422, "corrupt_document")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(client: httpx.Client, fmt: str) -> None:
    data = image_bytes(render_page(ENGLISH_LINES[:2]), fmt)
    assert_error(post_file(client, data[: len(data) // 2]), 422, "corrupt_document")


def test_corrupt_image_header(client: httpx.Client) -> None:
    assert_error(post_file(client, b"\x89PNG\r\n\x1a\n" + b"\xff" * 300), 422, "corrupt_document")


def test_password_protected_pdf(client: httpx.Client) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(text_pdf(1))).pages:
        writer.add_page(page)
    writer.encrypt(user_password="secret-pass", algorithm="RC4-128")  # pragma: allowlist secret
    buffer = io.BytesIO()
    writer.write(buffer)
    error = assert_error(post_file(client, buffer.getvalue()), 422, "pdf_encrypted")
    assert "password" in error["message"]


@pytest.mark.parametrize(
    "form,field",
    [
        ({"pages": "abc"}, "pages"),
        ({"pages": "3-1"}, "pages"),
        ({"pages": "0"}, "pages"),
        ({"pages": "9"}, "pages"),
        ({"dpi": "10"}, "dpi"),
        ({"dpi": "5000"}, "dpi"),
        ({"dpi": "high"}, "dpi"),
        ({"output": "xml"}, "output"),
    ],
)
def test_bad_options_name_the_field(client: httpx.Client, form: dict[str, str], field: str) -> None:
    error = assert_error(post_file(client, text_pdf(2), **form), 422, f"invalid_{field}")
    assert field in error["message"]


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/ocr"), 405, "method_not_allowed")


@pytest.fixture(scope="module")
def small_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {"MAX_UPLOAD_MB": "1", "MAX_PAGES": "3", "MAX_IMAGE_PIXELS": "2000000"}
    with ServiceProcess(tmp_path_factory.mktemp("limits"), env=env) as server:
        server.wait_ready()
        yield server


def test_upload_over_limit_with_content_length(small_limits: ServiceProcess) -> None:
    with httpx.Client(base_url=small_limits.url, timeout=60) as client:
        assert_error(post_file(client, b"%PDF-" + b"0" * (3 * 1024 * 1024)), 413, "upload_too_large")


def test_upload_over_limit_while_streaming(small_limits: ServiceProcess) -> None:
    """No Content-Length (chunked): the cap is enforced on the bytes as they arrive."""
    boundary = "x-test-boundary"
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
            "Content-Type: application/pdf\r\n\r\n%PDF-1.7\n"
        ).encode()
        for _ in range(64):  # up to 64 MiB, far past the 1 MB limit
            sent += 1
            yield b"0" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    with httpx.Client(base_url=small_limits.url, timeout=60) as client:
        try:
            response = client.post(
                "/ocr", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
            )
        except httpx.WriteError:  # the server may answer and close before we finish sending
            pytest.skip("server closed the connection before the client read the answer")
        assert_error(response, 413, "upload_too_large")
        assert client.get("/health").status_code == 200


def test_upload_just_over_limit_in_file(small_limits: ServiceProcess) -> None:
    """A file a little over MAX_UPLOAD_MB (within the multipart allowance) is still refused."""
    with httpx.Client(base_url=small_limits.url, timeout=60) as client:
        data = b"%PDF-1.7\n" + b"0" * (1024 * 1024 + 10)
        assert_error(post_file(client, data), 413, "upload_too_large")


def test_too_many_pages(small_limits: ServiceProcess) -> None:
    with httpx.Client(base_url=small_limits.url, timeout=60) as client:
        pages = [render_page([f"page {n}"]).resize((310, 438)) for n in range(5)]
        error = assert_error(post_file(client, pdf_bytes(pages, dpi=37)), 413, "too_many_pages")
        assert "5 pages" in error["message"]


def test_decompression_bomb(small_limits: ServiceProcess) -> None:
    with httpx.Client(base_url=small_limits.url, timeout=60) as client:
        bomb = image_bytes(Image.new("1", (3000, 3000), 1), "PNG")  # 9 MP, a few KB
        assert len(bomb) < 100_000
        assert_error(post_file(client, bomb), 413, "image_too_large")


def test_tiff_with_too_many_frames(small_limits: ServiceProcess, tmp_path: Path) -> None:
    frames = [Image.new("L", (64, 64), 255) for _ in range(4)]
    data = image_bytes(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    with httpx.Client(base_url=small_limits.url, timeout=60) as client:
        assert_error(post_file(client, data), 413, "too_many_pages")
