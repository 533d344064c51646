"""``POST /layout-parsing`` through real servers, with requests shaped like PaddleX's documented client.

The shared service runs the default settings (URL input on, private addresses refused). A second
service, started through ``start.sh``, allows private URLs (so a local HTTP server can serve
documents) and has a 1 MB upload limit and a 2 s fetch timeout.
"""

from __future__ import annotations

import base64
import io
import pathlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app.engines.pp_ocr import PpOcrEngine
from app.main import create_app
from app.settings import Settings
from tests.support.documents import ENGLISH_LINES, cer, image_bytes, page_lines, pdf_bytes, render_page, text_pdf
from tests.support.http_source import DocumentSource
from tests.support.server import ROOT, ServiceProcess, ThreadServer

pytestmark = pytest.mark.integration

ENVELOPE = {"logId", "errorCode", "errorMsg", "result"}
ERROR_ENVELOPE = {"logId", "errorCode", "errorMsg"}
PRUNED_KEYS = {"page_count", "width", "height", "model_settings", "parsing_res_list"}
BLOCK_KEYS = {"block_label", "block_content", "block_bbox", "block_id", "block_order", "group_id"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def layout_parsing(client: httpx.Client, payload: dict[str, Any]) -> httpx.Response:
    return client.post("/layout-parsing", json=payload)


def assert_success(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ENVELOPE
    assert body["errorCode"] == 0 and body["errorMsg"] == "Success" and body["logId"]
    assert set(body["result"]) == {"layoutParsingResults", "dataInfo"}
    for page in body["result"]["layoutParsingResults"]:
        assert set(page["prunedResult"]) == PRUNED_KEYS
        assert all(set(block) == BLOCK_KEYS for block in page["prunedResult"]["parsing_res_list"])
        assert set(page["markdown"]) == {"text", "images"}
    return body


def assert_paddlex_error(response: httpx.Response, status: int, text: str = "") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_ENVELOPE, body
    assert body["errorCode"] == status and body["logId"]
    assert text in body["errorMsg"], body["errorMsg"]
    return str(body["errorMsg"])


def small_page(lines: list[str]) -> Image.Image:
    """A 900x300 page (fast to recognise); as a PDF at 150 dpi it renders back at 900x300."""
    return render_page(lines, size=(900, 300), top=40)


def page_text(page: dict[str, Any]) -> str:
    return "\n".join(block["block_content"] for block in page["prunedResult"]["parsing_res_list"])


def jpeg_size(data: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        assert image.format == "JPEG"
        return image.size


def test_image_like_the_paddlex_client_example(client: httpx.Client, output_dir: Path, tmp_path: Path) -> None:
    lines = ENGLISH_LINES[:5]
    file_data = b64(image_bytes(render_page(lines), "PNG"))
    response = client.post("/layout-parsing", json={"file": file_data, "fileType": 1})
    body = assert_success(response)
    result = body["result"]
    assert result["dataInfo"] == {"width": 1240, "height": 1754, "type": "image"}
    (page,) = result["layoutParsingResults"]
    pruned = page["prunedResult"]
    assert (pruned["width"], pruned["height"], pruned["page_count"]) == (1240, 1754, None)
    assert pruned["model_settings"]["use_layout_detection"] is False  # pp-ocr reads lines
    assert cer("\n".join(lines), page_text(page)) <= 0.02, page_text(page)
    assert cer("\n".join(lines), page["markdown"]["text"]) <= 0.02
    assert [b["block_order"] for b in pruned["parsing_res_list"]] == list(range(1, len(pruned["parsing_res_list"]) + 1))
    # visualize is on by default, as in PaddleX: the page and its reading-order picture.
    assert jpeg_size(page["inputImage"]) == (1240, 1754)
    assert jpeg_size(page["outputImages"]["layout_order_res"]) == (1240, 1754)

    # The client loop of PaddleX's documentation runs unchanged on this answer.
    for i, res in enumerate(result["layoutParsingResults"]):
        md_dir = tmp_path / f"markdown_{i}"
        md_dir.mkdir()
        (md_dir / "doc.md").write_text(res["markdown"]["text"])
        for img_path, img in res["markdown"]["images"].items():
            target = md_dir / img_path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(img))
        for img_name, img in res["outputImages"].items():
            out = pathlib.Path(tmp_path / f"{img_name}_{i}.jpg")
            out.write_bytes(base64.b64decode(img))
    assert (tmp_path / "markdown_0" / "doc.md").read_text() == page["markdown"]["text"]
    assert (tmp_path / "layout_order_res_0.jpg").stat().st_size > 1000

    # The result is stored like any other, under the id in X-Result-Id.
    result_id = response.headers["x-result-id"]
    stored = list(output_dir.glob(f"*/{result_id}/result.json"))
    assert len(stored) == 1


def test_pdf_with_file_type_0(client: httpx.Client) -> None:
    body = assert_success(layout_parsing(client, {"file": b64(text_pdf(2)), "fileType": 0, "visualize": False}))
    info = body["result"]["dataInfo"]
    assert info["type"] == "pdf" and info["numPages"] == 2 and len(info["pages"]) == 2
    pages = body["result"]["layoutParsingResults"]
    assert len(pages) == 2
    for number, (page, size) in enumerate(zip(pages, info["pages"], strict=True), start=1):
        assert abs(size["width"] - 1240) <= 1 and size == {
            "width": page["prunedResult"]["width"],
            "height": size["height"],
        }
        assert cer("\n".join(page_lines(number)), page_text(page)) <= 0.02, page_text(page)
        assert cer("\n".join(page_lines(number)), page["markdown"]["text"]) <= 0.02
        assert "outputImages" not in page and "inputImage" not in page  # visualize off: left out, as PaddleX


@pytest.mark.parametrize("file_type", [None, "omitted", 1])
def test_file_type_null_or_wrong_is_read_from_the_bytes(client: httpx.Client, file_type: int | str | None) -> None:
    """PaddleX refuses fileType null for base64; we detect the type, and the bytes win over a wrong fileType."""
    lines = ENGLISH_LINES[3:5]
    payload: dict[str, Any] = {"file": b64(pdf_bytes([small_page(lines)])), "visualize": False}
    if file_type != "omitted":
        payload["fileType"] = file_type
    body = assert_success(layout_parsing(client, payload))
    info = body["result"]["dataInfo"]
    assert info["type"] == "pdf" and info["numPages"] == 1
    (size,) = info["pages"]
    assert abs(size["width"] - 900) <= 1 and abs(size["height"] - 300) <= 1  # rendered at PDF_DPI (150)
    # A JPEG-compressed scan in a PDF: a lost space or two is within tolerance.
    assert cer("\n".join(lines), body["result"]["layoutParsingResults"][0]["markdown"]["text"]) <= 0.05


def test_jpeg_with_file_type_null(client: httpx.Client) -> None:
    jpeg = image_bytes(small_page(ENGLISH_LINES[:2]), "JPEG", quality=90)
    body = assert_success(layout_parsing(client, {"file": b64(jpeg), "fileType": None, "visualize": False}))
    assert body["result"]["dataInfo"] == {"width": 900, "height": 300, "type": "image"}


def test_unknown_and_unsupported_options_are_accepted(client: httpx.Client) -> None:
    payload = {
        "file": b64(image_bytes(render_page(ENGLISH_LINES[:2]), "PNG")),
        "fileType": 1,
        "useDocOrientationClassify": True,
        "useDocUnwarping": True,
        "useLayoutDetection": True,
        "useChartRecognition": False,
        "promptLabel": "ocr",
        "temperature": 0.1,
        "prettifyMarkdown": False,
        "showFormulaNumber": True,
        "visualize": False,
        "somethingNew": {"x": 1},
    }
    page = assert_success(layout_parsing(client, payload))["result"]["layoutParsingResults"][0]
    assert cer("\n".join(ENGLISH_LINES[:2]), page_text(page)) <= 0.02


@pytest.mark.parametrize(
    "payload,status,text",
    [
        ({"file": "not base64!!", "fileType": 1}, 422, "base64"),
        ({"fileType": 1}, 422, "file"),
        ({"file": b64(b"just some text, not a document"), "fileType": 1}, 415, "not a supported document"),
        ({"file": "", "fileType": 1}, 400, "empty"),
        ({"file": b64(b"%PDF-1.7\n" + b"garbage " * 100), "fileType": 0}, 422, "PDF"),
        ({"file": "iVBORw0KGgo=", "fileType": 2}, 422, "fileType"),
        ({"file": 12345}, 422, "file"),
        ({"file": "ftp://example.com/doc.pdf"}, 422, "base64"),
        ({"file": "http://127.0.0.1:9/doc.pdf", "fileType": 0}, 400, "loopback"),
        ({"file": "http://169.254.169.254/latest/meta-data/"}, 400, "link-local"),
        ({"file": "http://[::1]/doc.pdf"}, 400, "loopback"),
        ({"file": "http://localhost/doc.pdf"}, 400, "loopback"),
        ({"file": "http://10.20.30.40/doc.pdf"}, 400, "private"),
        ({"file": "http:///nohost.pdf"}, 400, "URL"),
    ],
)
def test_errors_use_the_paddlex_envelope(client: httpx.Client, payload: dict[str, Any], status: int, text: str) -> None:
    assert_paddlex_error(layout_parsing(client, payload), status, text)


def test_malformed_requests(client: httpx.Client) -> None:
    assert_paddlex_error(
        client.post("/layout-parsing", content=b"{not json", headers={"content-type": "application/json"}), 422
    )
    assert_paddlex_error(client.post("/layout-parsing"), 422)
    assert_paddlex_error(client.get("/layout-parsing"), 405)
    assert client.get("/health").json()["status"] == "healthy"
    assert "/layout-parsing" in client.get("/openapi.json").json()["paths"]


# --- URL input, size and time limits: a service started by start.sh that allows private URLs ---------------


@pytest.fixture(scope="module")
def private_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {"ALLOW_PRIVATE_URLS": "true", "MAX_UPLOAD_MB": "1", "URL_FETCH_TIMEOUT_S": "2", "PYTHON": sys.executable}
    with ServiceProcess(tmp_path_factory.mktemp("private-urls"), env=env, command=[str(ROOT / "start.sh")]) as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def documents() -> Iterator[DocumentSource]:
    with DocumentSource() as source:
        yield source


@pytest.fixture
def private_client(private_urls: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=private_urls.url, timeout=60) as http:
        yield http


def test_url_end_to_end(private_client: httpx.Client, documents: DocumentSource) -> None:
    lines = ENGLISH_LINES[2:4]
    png_url = documents.add("page.png", image_bytes(small_page(lines), "PNG"))
    body = assert_success(layout_parsing(private_client, {"file": png_url, "fileType": 1, "visualize": False}))
    assert body["result"]["dataInfo"] == {"width": 900, "height": 300, "type": "image"}
    assert cer("\n".join(lines), page_text(body["result"]["layoutParsingResults"][0])) <= 0.02

    pdf_url = documents.add("two.pdf", text_pdf(2))
    body = assert_success(layout_parsing(private_client, {"file": pdf_url, "visualize": False}))  # fileType null
    assert body["result"]["dataInfo"]["numPages"] == 2
    assert cer("\n".join(page_lines(2)), page_text(body["result"]["layoutParsingResults"][1])) <= 0.02

    redirected = f"{documents.url}/redirect?to=/doc/page.png"
    body = assert_success(layout_parsing(private_client, {"file": redirected, "visualize": False}))
    assert cer("\n".join(lines), page_text(body["result"]["layoutParsingResults"][0])) <= 0.02


def test_url_failures(private_client: httpx.Client, documents: DocumentSource) -> None:
    assert_paddlex_error(layout_parsing(private_client, {"file": f"{documents.url}/big?mb=2"}), 413, "limit")
    assert_paddlex_error(layout_parsing(private_client, {"file": f"{documents.url}/big?mb=2&chunked=1"}), 413)
    assert_paddlex_error(layout_parsing(private_client, {"file": f"{documents.url}/slow?s=6"}), 504, "2 s")
    assert_paddlex_error(layout_parsing(private_client, {"file": f"{documents.url}/missing.pdf"}), 502, "404")
    assert_paddlex_error(layout_parsing(private_client, {"file": f"{documents.url}/hops/6"}), 400, "redirected")
    not_a_document = documents.add("notes.txt", b"plain text notes")
    assert_paddlex_error(layout_parsing(private_client, {"file": not_a_document}), 415)
    assert private_client.get("/health").json()["status"] == "healthy"


def test_base64_over_the_limit(private_client: httpx.Client) -> None:
    # Decodes to 1.2 MB: within the body allowance for base64, refused by the decoded size (1 MB).
    over = "JVBERi0x" + "A" * int(1.6 * 1024 * 1024)
    assert_paddlex_error(layout_parsing(private_client, {"file": over, "fileType": 0}), 413, "1 MB")
    # A body far past any base64 of 1 MB is refused before it is read, in the same envelope.
    huge = "A" * (4 * 1024 * 1024)
    assert_paddlex_error(layout_parsing(private_client, {"file": huge, "fileType": 0}), 413, "limit")


# --- settings that need their own app ----------------------------------------------------------------------


class NeverReady(PpOcrEngine):
    """The real engine whose loading waits until the test ends (the service stays ``initializing``)."""

    def __init__(self) -> None:
        super().__init__(parallel=1, threads=1)
        self.release = threading.Event()

    def load(self) -> None:
        self.release.wait(60)


def test_url_input_disabled_and_engine_not_ready(tmp_path: Path) -> None:
    engine = NeverReady()
    app = create_app(Settings(output_dir=tmp_path, allow_url_input=False), engine=engine)
    try:
        with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            refused = layout_parsing(client, {"file": "https://example.com/doc.pdf", "fileType": 0})
            assert_paddlex_error(refused, 400, "ALLOW_URL_INPUT")
            busy = layout_parsing(client, {"file": b64(image_bytes(small_page(["x"]), "PNG")), "fileType": 1})
            assert_paddlex_error(busy, 503, "initialising")
            assert int(busy.headers["retry-after"]) > 0
    finally:
        engine.release.set()
