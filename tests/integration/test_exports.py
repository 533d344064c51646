"""The files people keep, through the real service on real engines: searchable PDF, Word and Excel.

Generated documents (scans, a photo-less image, a vector PDF, a page lying sideways) are recognised by Tesseract
and PP-OCR; the PDF is read back with poppler (pdftotext, ``-bbox``) and checked with ``qpdf --check``; the Word
and Excel files with python-docx and openpyxl.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pikepdf
import pytest
from PIL import Image

from app.engines.orientation import turn
from tests.support.documents import ENGLISH_LINES, RUSSIAN_LINES, cer, image_bytes, pdf_bytes, render_page, text_pdf
from tests.support.pdf_tools import check_word_positions, page_count, pdf_text, pdf_words, qpdf_check, shown_sizes
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with ServiceProcess(tmp_path_factory.mktemp("exports")) as server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=180) as http:
            yield http


def recognise(client: httpx.Client, name: str, data: bytes, **form: str) -> dict[str, Any]:
    response = client.post("/ocr", files={"file": (name, data)}, data=form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def download(client: httpx.Client, job_id: str, output: str, target: Path) -> httpx.Response:
    response = client.get(f"/jobs/{job_id}/result", params={"output": output})
    assert response.status_code == 200, response.text
    target.write_bytes(response.content)
    return response


def assert_searchable(path: Path, result: dict[str, Any]) -> None:
    """Page count, a clean qpdf check, the text (CER <= 1 %) and every word where the JSON puts it."""
    assert page_count(path) == len(result["pages"])
    check = qpdf_check(path)
    assert check.returncode == 0 and "WARNING" not in check.stdout + check.stderr, check.stdout + check.stderr
    error = cer(result["text"].replace("\f", ""), pdf_text(path).replace("\f", ""))
    assert error <= 0.01, (error, pdf_text(path))
    for page, found, size in zip(result["pages"], pdf_words(path), shown_sizes(path), strict=True):
        assert any(block.get("words") for block in page["blocks"])
        assert check_word_positions(page, found, size) == []


def test_scanned_pdf_becomes_searchable_with_its_own_pages(client: httpx.Client, tmp_path: Path) -> None:
    """Tesseract, a 2-page scan: words with boxes in the JSON, the same words where they stand in the PDF, and the
    scan's images kept byte for byte (not re-rasterised)."""
    source = pdf_bytes([render_page(ENGLISH_LINES), render_page(ENGLISH_LINES[::-1])])
    result = recognise(client, "scan.pdf", source)
    assert result["engine"] == "tesseract"
    words = result["pages"][0]["blocks"][0]["words"]
    assert " ".join(w["text"] for w in words) == " ".join(result["pages"][0]["blocks"][0]["text"].split())  # lines
    assert all(0 <= w["score"] <= 1 and len(w["bbox"]) == 4 for w in words)
    response = download(client, result["id"], "pdf", tmp_path / "scan.pdf")
    assert response.headers["content-type"] == "application/pdf"
    assert 'filename="scan.pdf"' in response.headers["content-disposition"]
    assert_searchable(tmp_path / "scan.pdf", result)
    with pikepdf.open(io.BytesIO(source)) as original, pikepdf.open(tmp_path / "scan.pdf") as made:
        for before, after in zip(original.pages, made.pages, strict=True):
            (old,) = before.get_images().values()
            (new,) = after.get_images().values()
            assert old.read_raw_bytes() == new.read_raw_bytes()
    again = client.get(f"/jobs/{result['id']}/result", params={"output": "pdf"})
    assert again.content == response.content  # made once, kept beside result.json


def test_russian_image_is_searchable_in_cyrillic(client: httpx.Client, tmp_path: Path) -> None:
    """A Russian PNG at lang=ru, asked as a PDF on POST /ocr: Cyrillic text comes out as Cyrillic; the image is
    wrapped losslessly (same pixels); the download keeps the Cyrillic file name (RFC 5987)."""
    page = render_page(RUSSIAN_LINES)
    data = image_bytes(page, "PNG")
    response = client.post("/ocr", files={"file": ("Договор №5.png", data)}, data={"lang": "ru", "output": "pdf"})
    assert response.status_code == 200, response.text
    disposition = response.headers["content-disposition"]
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == "Договор №5.pdf"
    path = tmp_path / "ru.pdf"
    path.write_bytes(response.content)
    result = client.get(f"/jobs/{response.headers['x-result-id']}/result").json()
    assert_searchable(path, result)
    text = pdf_text(path)
    assert "Москве" in text and "Исполнитель" in text
    with pikepdf.open(path) as made:
        (image,) = made.pages[0].get_images().values()
        assert pikepdf.PdfImage(image).as_pil_image().convert("RGB").tobytes() == page.tobytes()


def test_pp_ocr_words_place_the_text_layer(client: httpx.Client, tmp_path: Path) -> None:
    result = recognise(
        client, "letter.jpg", image_bytes(render_page(ENGLISH_LINES), "JPEG", quality=90), engine="pp-ocr"
    )
    assert result["engine"] == "pp-ocr"
    download(client, result["id"], "pdf", tmp_path / "letter.pdf")
    assert_searchable(tmp_path / "letter.pdf", result)


def test_vector_pdf_keeps_its_content_and_gets_no_second_layer(client: httpx.Client, tmp_path: Path) -> None:
    source = text_pdf(2)
    result = recognise(client, "digital.pdf", source)
    download(client, result["id"], "pdf", tmp_path / "digital.pdf")
    assert page_count(tmp_path / "digital.pdf") == 2 and qpdf_check(tmp_path / "digital.pdf").returncode == 0
    with pikepdf.open(io.BytesIO(source)) as original, pikepdf.open(tmp_path / "digital.pdf") as made:
        for before, after in zip(original.pages, made.pages, strict=True):
            assert after.obj.Contents.read_bytes() == before.obj.Contents.read_bytes()
            assert "/OCR" not in str(after.obj.Resources.get("/XObject", {}))
    assert cer(result["text"].replace("\f", ""), pdf_text(tmp_path / "digital.pdf").replace("\f", "")) <= 0.01


def test_page_turned_upright_is_shown_upright_with_its_text(client: httpx.Client, tmp_path: Path) -> None:
    """A page lying on its side: the service reads it turned (rotation), the PDF page gets /Rotate so that it
    shows upright, and the words stand where the JSON (upright frame) says."""
    sideways = turn(render_page(ENGLISH_LINES), 90)
    result = recognise(client, "sideways.pdf", pdf_bytes([sideways]))
    rotation = result["pages"][0]["rotation"]
    assert rotation in (90, 270)
    download(client, result["id"], "pdf", tmp_path / "sideways.pdf")
    with pikepdf.open(tmp_path / "sideways.pdf") as made:
        assert int(made.pages[0].obj.get("/Rotate", 0)) == rotation
    assert_searchable(tmp_path / "sideways.pdf", result)


def test_word_document_holds_the_text_in_order(client: httpx.Client, tmp_path: Path) -> None:
    import docx

    source = pdf_bytes([render_page(ENGLISH_LINES), render_page(RUSSIAN_LINES)])
    result = recognise(client, "two pages.pdf", source, lang="ru,en")
    response = download(client, result["id"], "docx", tmp_path / "two.docx")
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.wordprocessing")
    assert 'filename="two pages.docx"' in response.headers["content-disposition"]
    document = docx.Document(str(tmp_path / "two.docx"))
    text = "\n".join(p.text for p in document.paragraphs if p.text.strip())
    assert cer(result["text"].replace("\f", ""), text) <= 0.01
    breaks = document.element.body.xml.count('w:type="page"')
    assert breaks == 1


def test_workbook_of_a_result_without_tables_is_a_clear_error(client: httpx.Client) -> None:
    result = recognise(client, "plain.png", image_bytes(render_page(ENGLISH_LINES[:3]), "PNG"))
    response = client.get(f"/jobs/{result['id']}/result", params={"output": "xlsx"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "no_tables"
    assert result["id"] in response.json()["error"]["message"]
    bad = client.get(f"/jobs/{result['id']}/result", params={"output": "odt"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_output"


def test_blank_frame_is_a_page_without_text(client: httpx.Client, tmp_path: Path) -> None:
    """A TIFF whose second frame is blank: nothing is read there, and the PDF still has both pages."""
    frames = [render_page(ENGLISH_LINES), Image.new("RGB", (1240, 1754), "white")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:], compression="tiff_deflate")
    result = recognise(client, "pages.tiff", buffer.getvalue())
    download(client, result["id"], "pdf", tmp_path / "pages.pdf")
    assert page_count(tmp_path / "pages.pdf") == 2
    texts = pdf_text(tmp_path / "pages.pdf").split("\f")
    assert "Quarterly" in texts[0] and not texts[1].strip()
