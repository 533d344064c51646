"""Documents on the CPU engines through the real service: Latin words inside Russian text, English scans and
vector PDFs on the engine ``auto`` picks, and pages lying sideways or upside down turned upright.

Character error rates are asserted on generated pages: Russian with Latin terms at ``lang=ru`` at most 3 %,
English (scanned and vector PDF) at ``lang=en`` at most 1 %, rotated pages at most 3 %.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops, ImageStat

from app.engines.orientation import turn
from tests.support.documents import (
    ENGLISH_LINES,
    MIXED_LINES,
    RUSSIAN_LINES,
    RUSSIAN_TECH_LINES,
    cer,
    image_bytes,
    pdf_bytes,
    render_page,
    text_pdf,
)
from tests.support.server import ServiceProcess, wait_for

pytestmark = pytest.mark.integration

TEXTS = {"en": ENGLISH_LINES, "ru": RUSSIAN_LINES, "mixed": MIXED_LINES}
LANGS = {"en": "en", "ru": "ru", "mixed": "ru,en"}


def ocr(client: httpx.Client, name: str, data: bytes, **form: str) -> dict[str, Any]:
    response = client.post("/ocr", files={"file": (name, data)}, data=form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_latin_terms_in_russian_are_read_at_lang_ru(client: httpx.Client) -> None:
    """A Russian man page (vector PDF, 2 pages) with umask, ISO 8859, glibc: English is read beside Russian."""
    halves = [RUSSIAN_TECH_LINES[:5], RUSSIAN_TECH_LINES[5:]]
    pdf = text_pdf(2, lambda number: halves[number - 1])
    expected = "\n".join(RUSSIAN_TECH_LINES)
    body = ocr(client, "man.pdf", pdf, lang="ru")
    assert body["engine"] == "tesseract" and body["languages"] == ["ru", "en"]
    error = cer(expected, body["text"].replace("\f", ""))
    assert error <= 0.03, (error, body["text"])
    for term in ("umask", "ISO 8859-5", "glibc", "nginx", "/etc/fstab", "--verbose", "Linux"):
        assert term in body["text"], term
    strict = ocr(client, "man.pdf", pdf, lang="ru", lang_strict="true")  # the Russian model alone
    assert strict["languages"] == ["ru"]
    assert cer(expected, strict["text"].replace("\f", "")) > 0.08  # Latin words come back as Cyrillic look-alikes


def test_english_scans_and_vector_pdfs_at_lang_en(client: httpx.Client) -> None:
    pages = [ENGLISH_LINES, ENGLISH_LINES[4:] + ENGLISH_LINES[:4], ENGLISH_LINES[::-1]]
    expected = "\n".join("\n".join(lines) for lines in pages)
    scanned = ocr(client, "scan.pdf", pdf_bytes([render_page(lines) for lines in pages]), lang="en")
    vector = ocr(client, "vector.pdf", text_pdf(3, lambda number: pages[number - 1]), lang="en")
    png = ocr(client, "page.png", image_bytes(render_page(pages[0]), "PNG"), lang="en")
    for body, reference in ((scanned, expected), (vector, expected), (png, "\n".join(pages[0]))):
        assert body["engine"] == "tesseract" and "tesseract is the fastest" in body["engine_reason"]
        error = cer(reference, body["text"].replace("\f", ""))
        assert error <= 0.01, (error, body["text"])
        assert all(page["rotation"] == 0 for page in body["pages"])


@pytest.mark.parametrize("rotation", [90, 180, 270])
@pytest.mark.parametrize("text", ["en", "ru", "mixed"])
def test_rotated_pages_are_read_upright(client: httpx.Client, text: str, rotation: int) -> None:
    """The page lies turned ``rotation`` degrees counter-clockwise: the service turns it back clockwise."""
    lines = TEXTS[text]
    upright = render_page(lines)
    lying = turn(upright, 360 - rotation)
    body = ocr(client, "lying.png", image_bytes(lying, "PNG"), lang=LANGS[text])
    page = body["pages"][0]
    assert page["rotation"] == rotation
    assert (page["width"], page["height"]) == upright.size  # the page as read: upright
    error = cer("\n".join(lines), body["text"])
    assert error <= 0.03, (text, rotation, error, body["text"])
    first = page["blocks"][0]["lines"][0]
    x0, y0, x1, y1 = first["bbox"]  # in the upright page: where the first line was drawn
    assert abs(x0 - 110) < 20 and abs(y0 - 120) < 25 and x1 - x0 > 5 * (y1 - y0), first


def test_pp_ocr_pages_are_turned_too(client: httpx.Client) -> None:
    lying = turn(render_page(ENGLISH_LINES), 180)
    body = ocr(client, "upside-down.png", image_bytes(lying, "PNG"), lang="en", engine="pp-ocr")
    assert body["engine"] == "pp-ocr" and body["pages"][0]["rotation"] == 180
    assert cer("\n".join(ENGLISH_LINES), body["text"]) <= 0.03, body["text"]


def test_page_image_is_shown_as_it_was_read(client: httpx.Client) -> None:
    upright = render_page(MIXED_LINES[:4])
    accepted = client.post(
        "/jobs", files={"file": ("side.png", image_bytes(turn(upright, 90), "PNG"))}, data={"lang": "ru,en"}
    )
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["status"] not in ("queued", "running"), 120, "job")
    page = client.get(f"/jobs/{job_id}/result").json()["pages"][0]
    assert page["rotation"] == 270
    response = client.get(f"/jobs/{job_id}/pages/1/image")
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(response.content)).convert("L")
    assert image.size == (page["width"], page["height"]) == upright.size
    difference = ImageStat.Stat(ImageChops.difference(image, upright.convert("L"))).mean[0]
    assert difference < 2.0  # the upright page (JPEG noise only), which the boxes refer to


@pytest.fixture(scope="module")
def as_they_lie(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    server = ServiceProcess(
        tmp_path_factory.mktemp("no-rotate"), env={"OCR_AUTO_ROTATE": "false", "OCR_CPU_ENGINES": "tesseract"}
    )
    with server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=120) as client:
            yield client


def test_auto_rotate_off_reads_pages_as_they_lie(as_they_lie: httpx.Client) -> None:
    body = ocr(as_they_lie, "upside-down.png", image_bytes(turn(render_page(ENGLISH_LINES), 180), "PNG"), lang="en")
    page = body["pages"][0]
    assert page["rotation"] == 0 and (page["width"], page["height"]) == (1240, 1754)
    assert cer("\n".join(ENGLISH_LINES), body["text"]) > 0.5  # read upside down: garbage
