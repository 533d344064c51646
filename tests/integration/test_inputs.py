"""POST /ocr and /jobs take a document as a file, base64 (form or JSON) or a URL, with the earlier field
names too; URLs to private addresses are refused (SSRF guard)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.support.documents import ENGLISH_LINES, cer, image_bytes, render_page, text_pdf
from tests.support.http_source import DocumentSource
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.integration

LINES = ENGLISH_LINES[:3]


@pytest.fixture(scope="module")
def page_png() -> bytes:
    return image_bytes(render_page(LINES), "PNG")


def assert_read(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert cer("\n".join(LINES), response.json()["text"]) <= 0.02


def test_json_base64(client: httpx.Client, page_png: bytes) -> None:
    encoded = base64.b64encode(page_png).decode()
    assert_read(client.post("/ocr", json={"file": encoded, "filename": "scan.png"}))
    assert_read(client.post("/ocr", json={"file": "data:image/png;base64," + encoded}))
    assert_read(client.post("/ocr", json={"image_base64": encoded, "dpi": 150, "return_content": True}))
    body = client.post("/ocr", json={"file": encoded, "filename": "scan.png"}).json()
    assert body["filename"] == "scan.png"


def test_form_base64_and_legacy_names(client: httpx.Client, page_png: bytes) -> None:
    encoded = base64.b64encode(page_png).decode()
    assert_read(client.post("/ocr", data={"image_base64": encoded}))
    assert_read(client.post("/ocr", data={"file": encoded}))  # `file` as a base64 string field


def test_return_content_false_leaves_the_pages_out(client: httpx.Client, page_png: bytes) -> None:
    body = client.post("/ocr", files={"file": ("p.png", page_png)}, data={"return_content": "false"}).json()
    assert "pages" not in body and "text" not in body and "markdown" not in body
    assert body["id"] and body["page_count"] == 1 and body["files"]["json"]


def test_jobs_take_json_too(client: httpx.Client) -> None:
    encoded = base64.b64encode(text_pdf(2)).decode()
    response = client.post("/jobs", json={"file": encoded, "pages": "2", "dpi": 100})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "kwargs,status,code",
    [
        ({"json": {"file": "not base64 at all!!"}}, 422, "invalid_file"),
        ({"json": ["a", "list"]}, 422, "invalid_json"),
        ({"content": b"{broken", "headers": {"content-type": "application/json"}}, 422, "invalid_json"),
        ({"json": {}}, 400, "no_file"),
        ({"json": {"file": "aGVsbG8=", "url": "https://example.com/x.pdf"}}, 400, "several_sources"),
        ({"json": {"file": base64.b64encode(b"plain text").decode()}}, 415, "unsupported_type"),
        ({"json": {"file": "aGVsbG8=", "dpi": "high"}}, 422, "invalid_dpi"),
        ({"json": {"file": "aGVsbG8=", "return_content": "maybe"}}, 422, "invalid_return_content"),
        ({"content": b"x", "headers": {"content-type": "text/plain"}}, 415, "unsupported_body"),
    ],
)
def test_bad_inputs(client: httpx.Client, kwargs: dict[str, object], status: int, code: str) -> None:
    response = client.post("/ocr", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/doc.pdf",
        "http://10.1.2.3/doc.pdf",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/doc.pdf",
        "http://localhost/doc.pdf",
        "http://[::ffff:127.0.0.1]/doc.pdf",
        "file:///etc/passwd",
        "ftp://example.com/doc.pdf",
    ],
)
def test_private_and_odd_urls_are_refused(client: httpx.Client, url: str) -> None:
    for field in ("url", "image_url"):
        response = client.post("/ocr", data={field: url})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] in ("url_refused", "invalid_url")


def test_redirect_to_loopback_is_refused(client: httpx.Client) -> None:
    """The first hop is a local server too, so it is refused before the redirect is even seen; the
    redirect re-check itself is covered in tests/unit/intake/test_url_fetch.py with a resolver stub."""
    with DocumentSource() as source:
        response = client.post("/ocr", json={"url": f"{source.url}/redirect?to=http://127.0.0.1:1/x"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "url_refused"


@pytest.fixture(scope="module")
def private_allowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with ServiceProcess(tmp_path_factory.mktemp("urls"), env={"ALLOW_PRIVATE_URLS": "1"}) as server:
        server.wait_ready()
        yield server


def test_url_input_end_to_end(private_allowed: ServiceProcess, page_png: bytes) -> None:
    with DocumentSource() as source, httpx.Client(base_url=private_allowed.url, timeout=60) as client:
        url = source.add("scan.png", page_png)
        assert_read(client.post("/ocr", data={"url": url}))
        body = client.post("/ocr", json={"image_url": f"{source.url}/redirect?to=/doc/scan.png"}).json()
        assert cer("\n".join(LINES), body["text"]) <= 0.02
        assert body["filename"]
