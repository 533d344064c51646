"""POST /ocr through a real uvicorn process with the real pp-ocr engine on generated documents."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support.documents import (
    ENGLISH_LINES,
    cer,
    image_bytes,
    page_lines,
    render_page,
    text_pdf,
)

pytestmark = pytest.mark.integration


def post_ocr(client: httpx.Client, data: bytes, filename: str = "doc", **form: str) -> httpx.Response:
    return client.post("/ocr", files={"file": (filename, data, "application/octet-stream")}, data=form)


def test_png_page_text_and_blocks(client: httpx.Client, output_dir: Path) -> None:
    lines = ENGLISH_LINES[:6]
    response = post_ocr(client, image_bytes(render_page(lines), "PNG"), filename="letter.png")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["content_type"] == "image/png"
    assert body["engine"] == "tesseract"  # auto for English: measured faster and as accurate
    assert body["page_count"] == 1 and len(body["pages"]) == 1
    page = body["pages"][0]
    assert (page["width"], page["height"]) == (1240, 1754)
    assert cer("\n".join(lines), page["text"]) <= 0.02, page["text"]
    assert [b["order"] for b in page["blocks"]] == list(range(len(page["blocks"])))
    tops = [b["bbox"][1] for b in page["blocks"]]
    assert tops == sorted(tops)
    for block in page["blocks"]:
        x0, y0, x1, y1 = block["bbox"]
        assert 0 <= x0 < x1 <= 1240 and 0 <= y0 < y1 <= 1754
        assert block["label"] == "text" and 0 < block["score"] <= 1
    first = page["blocks"][0]
    assert abs(first["bbox"][1] - 120) < 15 and abs(first["bbox"][0] - 110) < 15  # where it was drawn
    assert body["markdown"] and cer("\n".join(lines), body["text"]) <= 0.02
    assert set(body["timings"]) == {"decode_ms", "ocr_ms", "total_ms"}
    # Stored locally under a server-generated id, never the client's filename.
    stored = json.loads((output_dir / body["files"]["json"]).read_text())
    assert stored["id"] == body["id"] and stored["filename"] == "letter.png"
    assert (output_dir / body["files"]["markdown"]).read_text() == body["markdown"]
    assert "letter" not in body["files"]["json"]
    assert response.headers["x-result-id"] == body["id"]
    # Where it is stored: reported per response, not part of the stored file. No S3 in this service.
    folder = str(Path(body["files"]["json"]).parent)
    assert body["storage"] == {
        "local": {"dir": folder, "files": ["result.md", "result.json"]},
        "s3": {"status": "disabled", "bucket": None, "keys": []},
        "rag_export": {"status": "disabled", "bucket": None, "key": None},
    }
    assert "storage" not in stored and response.headers["x-s3-status"] == "disabled"


def test_multipage_pdf_with_page_selection(client: httpx.Client) -> None:
    response = post_ocr(client, text_pdf(5), filename="five.pdf", pages="2-3,5")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["content_type"] == "application/pdf" and body["page_count"] == 5
    assert [p["index"] for p in body["pages"]] == [2, 3, 5]
    for page in body["pages"]:
        assert cer("\n".join(page_lines(page["index"])), page["text"]) <= 0.02, page["text"]
        assert abs(page["width"] - 1240) <= 1  # A4 at the default 150 dpi
    assert body["markdown"].count("\n---\n") == 2


def test_pdf_dpi_changes_page_size(client: httpx.Client) -> None:
    response = post_ocr(client, text_pdf(1), dpi="100")
    assert response.status_code == 200, response.text
    assert abs(response.json()["pages"][0]["width"] - 1240 * 100 / 150) <= 1


@pytest.mark.parametrize("output,media", [("markdown", "text/markdown"), ("text", "text/plain")])
def test_output_formats(client: httpx.Client, output: str, media: str) -> None:
    lines = ENGLISH_LINES[:3]
    response = post_ocr(client, image_bytes(render_page(lines), "PNG"), output=output)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)
    assert cer("\n".join(lines), response.text) <= 0.02


@pytest.mark.parametrize(
    "fmt,params",
    [("JPEG", {"quality": 92}), ("WEBP", {"quality": 95}), ("BMP", {}), ("TIFF", {"compression": "tiff_lzw"})],
)
def test_image_formats(client: httpx.Client, fmt: str, params: dict[str, object]) -> None:
    lines = ENGLISH_LINES[1:4]
    # The filename lies on purpose: the type comes from the bytes.
    response = post_ocr(client, image_bytes(render_page(lines), fmt, **params), filename="scan.png")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["content_type"] == f"image/{fmt.lower()}"
    assert cer("\n".join(lines), body["text"]) <= 0.02


def test_multiframe_tiff_every_frame_is_a_page(client: httpx.Client) -> None:
    frames = [render_page(page_lines(n)) for n in (1, 2, 3)]
    data = image_bytes(frames[0], "TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw")
    body = post_ocr(client, data).json()
    assert body["page_count"] == 3
    for page in body["pages"]:
        assert cer("\n".join(page_lines(page["index"])), page["text"]) <= 0.02


def test_exif_orientation_is_applied(client: httpx.Client) -> None:
    lines = ENGLISH_LINES[:3]
    upright = render_page(lines)
    stored_rotated = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways, as a camera does
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = image_bytes(stored_rotated, "JPEG", quality=92, exif=exif.tobytes())
    body = post_ocr(client, data).json()
    page = body["pages"][0]
    assert (page["width"], page["height"]) == upright.size
    assert cer("\n".join(lines), page["text"]) <= 0.02


def test_health_shape(client: httpx.Client) -> None:
    body = client.get("/health").json()
    assert body["status"] == "healthy" and body["paddleocr"] == "ready"
    assert body["s3_storage"] == "not_configured"
    assert body["s3"]["status"] == "not_configured" and body["s3"]["pending"] == 0
    assert body["s3"]["missing"] == [
        "CLOUDRU_S3_ENDPOINT",
        "CLOUDRU_S3_BUCKET",
        "CLOUDRU_S3_ACCESS_KEY",
        "CLOUDRU_S3_SECRET_KEY",
    ]
    assert body["engine"]["name"] == "tesseract" and body["engine"]["state"] == "ready"
    assert body["engine"]["device"].startswith("cpu; tesseract 5.") and body["engine"]["init_seconds"] > 0
    assert client.get("/ready").status_code == 200
    assert client.get("/openapi.json").json()["paths"]["/ocr"]
    assert client.get("/docs").status_code == 200


def test_health_stays_fast_while_ocr_runs(client: httpx.Client, service: object) -> None:
    import concurrent.futures

    document = text_pdf(3)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(post_ocr, httpx.Client(base_url=client.base_url, timeout=120), document) for _ in range(4)]
        latencies = []
        while not all(job.done() for job in jobs):
            began = time.perf_counter()
            assert client.get("/health").status_code == 200
            latencies.append(time.perf_counter() - began)
            time.sleep(0.05)
        assert all(job.result().status_code == 200 for job in jobs)
    # A generous bound for a shared 2-core CI box; the 50 ms p99 target is measured by scripts/bench.py.
    assert max(latencies) < 1.0, latencies
