"""Russian and mixed pages through the real service (Tesseract), and the choice of engine by language.

Character error rates are asserted on generated pages: clean ones at most 3 %, noisy ones (blur, a slight
rotation, JPEG artefacts, and all three at once) at most 8 %.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from app.engines.base import EnginePage, EngineRuntime
from app.engines.errors import PageTimeout
from app.engines.languages import parse_languages
from app.engines.tesseract import TesseractEngine, find_tessdata
from tests.support.documents import (
    ENGLISH_LINES,
    MIXED_LINES,
    RUSSIAN_LINES,
    blurred,
    cer,
    font,
    image_bytes,
    jpeg_artefacts,
    render_page,
    rotated,
)
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.integration

CLEAN_CER = 0.03
NOISY_CER = 0.08
NOISE: dict[str, Callable[[Image.Image], Image.Image]] = {
    "blur": blurred,
    "rotation": rotated,
    "jpeg": jpeg_artefacts,
    "blur+rotation+jpeg": lambda page: jpeg_artefacts(rotated(blurred(page))),
}


def post_ocr(client: httpx.Client, page: Image.Image, **form: str) -> httpx.Response:
    return client.post("/ocr", files={"file": ("page.png", image_bytes(page, "PNG"))}, data=form)


def read(client: httpx.Client, page: Image.Image, **form: str) -> dict[str, object]:
    response = post_ocr(client, page, **form)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


# --- quality, through HTTP ----------------------------------------------------------------------------------


def test_russian_clean_page(client: httpx.Client) -> None:
    body = read(client, render_page(RUSSIAN_LINES), lang="ru")
    assert body["engine"] == "tesseract" and body["languages"] == ["ru", "en"]  # English for Latin words
    assert "tesseract reads ru (pp-ocr does not read ru)" in str(body["engine_reason"])
    error = cer("\n".join(RUSSIAN_LINES), str(body["text"]))
    assert error <= CLEAN_CER, (error, body["text"])


@pytest.mark.parametrize("noise", list(NOISE))
def test_russian_noisy_pages(client: httpx.Client, noise: str) -> None:
    body = read(client, NOISE[noise](render_page(RUSSIAN_LINES)), lang="ru")
    assert body["engine"] == "tesseract"
    error = cer("\n".join(RUSSIAN_LINES), str(body["text"]))
    assert error <= NOISY_CER, (noise, error, body["text"])


@pytest.mark.parametrize("noise", [None, "blur+rotation+jpeg"])
def test_mixed_russian_english_pages(client: httpx.Client, noise: str | None) -> None:
    page = render_page(MIXED_LINES)
    body = read(client, NOISE[noise](page) if noise else page, lang="ru,en")
    assert body["engine"] == "tesseract" and body["languages"] == ["ru", "en"]
    error = cer("\n".join(MIXED_LINES), str(body["text"]))
    assert error <= (NOISY_CER if noise else CLEAN_CER), (error, body["text"])
    pages = body["pages"]
    assert isinstance(pages, list)
    blocks = pages[0]["blocks"]
    assert len(blocks) == 1 and blocks[0]["label"] == "text"  # one paragraph: evenly spaced lines
    lines = blocks[0]["lines"]
    assert len(lines) == len(MIXED_LINES)  # each line with a box and a confidence
    for line, top in zip(lines, range(120, 2000, 56), strict=False):
        x0, y0, x1, y1 = line["bbox"]
        assert 0 <= x0 < x1 <= 1240 and 0 <= y0 < y1 <= 1754 and 0.5 < line["score"] <= 1
        if noise is None:
            assert abs(x0 - 110) < 15 and abs(y0 - top) < 20  # where it was drawn


# --- which engine serves a request --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "engine"),
    [
        ({"lang": "en"}, "tesseract"),  # measured faster and as accurate (app/engines/measured.json)
        ({"lang": "de"}, "pp-ocr"),  # no German model for Tesseract here
        ({"lang": "ru"}, "tesseract"),
        ({"lang": "ru,en"}, "tesseract"),
        ({"lang": "eng+rus"}, "tesseract"),
        ({}, "tesseract"),  # OCR_LANGUAGES=en in the test service
        ({"engine": "tesseract"}, "tesseract"),
        ({"engine": "tesseract", "lang": "en"}, "tesseract"),
        ({"engine": "pp-ocr", "lang": "en"}, "pp-ocr"),
        ({"engine": "auto", "lang": "ru"}, "tesseract"),
        ({"lang": "ru", "lang_strict": "true"}, "tesseract"),
    ],
)
def test_engine_by_language(client: httpx.Client, form: dict[str, str], engine: str) -> None:
    body = read(client, render_page(ENGLISH_LINES[:2]), **form)
    assert body["engine"] == engine
    asked = list(parse_languages(form.get("lang", "en")))
    assert body["languages"] == (asked if form.get("lang_strict") or asked != ["ru"] else ["ru", "en"])
    # The Russian model alone reads English letters as Cyrillic look-alikes; with English added it does not.
    assert cer("\n".join(ENGLISH_LINES[:2]), str(body["text"])) <= (1.0 if body["languages"] == ["ru"] else 0.02)


@pytest.mark.parametrize(
    ("form", "code", "message"),
    [
        ({"lang": "xx"}, "invalid_lang", "lang: xx: unknown; installed languages: af, az,"),
        ({"lang": "ru,uk"}, "invalid_lang", "uk: not installed (for Tesseract, the Debian package tesseract-ocr-ukr)"),
        ({"lang": "r;u"}, "invalid_lang", "'r;u' is not a language code"),
        ({"engine": "pp-ocr", "lang": "ru"}, "invalid_lang", "pp-ocr does not read ru"),
        ({"engine": "paddleocr-vl"}, "invalid_engine", "'paddleocr-vl' is not loaded here; loaded: pp-ocr, tesseract"),
    ],
)
def test_refused_language_or_engine(client: httpx.Client, form: dict[str, str], code: str, message: str) -> None:
    for path in ("/ocr", "/jobs"):
        response = client.post(path, files={"file": ("p.png", b"not even read")}, data=form)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == code and message in error["message"]
    if code == "invalid_lang" and "installed languages" in message:
        assert ", ru, " in error["message"]  # the installed ones are listed: Tesseract's and pp-ocr's


def test_job_keeps_engine_and_languages(client: httpx.Client, output_dir: Path) -> None:
    accepted = client.post(
        "/jobs", files={"file": ("p.png", image_bytes(render_page(RUSSIAN_LINES[:4]), "PNG"))}, data={"lang": "ru"}
    )
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    stored = json.loads((output_dir / "jobs" / job_id / "job.json").read_text())
    assert stored["engine"] == "tesseract" and stored["languages"] == ["ru", "en"]  # what a resumed job runs with
    result = client.get(f"/jobs/{job_id}/result")
    for _ in range(100):
        if result.status_code != 409:
            break
        threading.Event().wait(0.2)
        result = client.get(f"/jobs/{job_id}/result")
    assert result.status_code == 200, result.text
    assert result.json()["engine"] == "tesseract"
    assert cer("\n".join(RUSSIAN_LINES[:4]), result.json()["text"]) <= CLEAN_CER


def test_health_lists_engines_and_languages(client: httpx.Client) -> None:
    health = client.get("/health").json()
    assert health["engine"]["name"] == "tesseract" and health["languages"] == ["en"]
    assert "auto: pp-ocr and tesseract read en; tesseract is the fastest" in health["engine"]["selection"]
    engines = {engine["name"]: engine for engine in health["engines"]}
    assert set(engines) == {"pp-ocr", "tesseract"} and health["engines"][0]["name"] == "tesseract"
    assert {"ru", "en"} <= set(engines["tesseract"]["languages"])
    assert "ru" not in engines["pp-ocr"]["languages"] and "de" in engines["pp-ocr"]["languages"]
    assert all(engine["state"] == "ready" for engine in engines.values())
    assert engines["tesseract"]["device"].startswith("cpu; tesseract 5.")


# --- production defaults: OCR_LANGUAGES=ru,en -----------------------------------------------------------------


@pytest.fixture(scope="module")
def default_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    server = ServiceProcess(tmp_path_factory.mktemp("defaults"))
    server.env.pop("OCR_LANGUAGES")  # as deployed: ru,en
    with server:
        server.wait_ready()
        yield server


def test_defaults_read_russian_everywhere(default_service: ServiceProcess) -> None:
    with httpx.Client(base_url=default_service.url, timeout=120) as client:
        health = client.get("/health").json()
        assert health["engine"]["name"] == "tesseract" and health["languages"] == ["ru", "en"]
        assert (
            "requests without lang (OCR_LANGUAGES=ru,en): auto: tesseract reads ru,en"
            in (health["engine"]["selection"])
        )
        page = render_page(RUSSIAN_LINES[:6])
        body = read(client, page)
        assert body["engine"] == "tesseract" and body["languages"] == ["ru", "en"]
        assert cer("\n".join(RUSSIAN_LINES[:6]), str(body["text"])) <= CLEAN_CER
        # PaddleX's API has no language option: OCR_LANGUAGES applies, so Russian is read there too.
        payload = {"file": base64.b64encode(image_bytes(page, "PNG")).decode(), "fileType": 1, "visualize": False}
        response = client.post("/layout-parsing", json=payload)
        assert response.status_code == 200, response.text
        markdown = response.json()["result"]["layoutParsingResults"][0]["markdown"]["text"]
        assert cer("\n".join(RUSSIAN_LINES[:6]), markdown) <= CLEAN_CER
        assert read(client, render_page(ENGLISH_LINES[:2]), lang="de")["engine"] == "pp-ocr"


# --- the engine itself --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[TesseractEngine]:
    tesseract = TesseractEngine(find_tessdata(), parallel=2, default_languages=("ru", "en"))
    tesseract.load()
    yield tesseract
    tesseract.close()


def test_columns_are_read_one_after_the_other(engine: TesseractEngine) -> None:
    left = ["Первая колонка: договор поставки", "заключён между сторонами в", "городе Москве пятнадцатого"] * 3
    right = ["Вторая колонка: условия оплаты", "определяются приложением номер", "один к настоящему договору"] * 3
    page = Image.new("RGB", (1240, 700), "white")
    draw = ImageDraw.Draw(page)
    for row, (a, b) in enumerate(zip(left, right, strict=True)):
        draw.text((80, 80 + row * 36), a, font=font(22), fill="black")
        draw.text((660, 80 + row * 36), b, font=font(22), fill="black")
    result = engine.recognize([page], ("ru",))[0]
    texts = [block.text for block in result.blocks]
    assert cer("\n".join(left + right), "\n".join(texts)) <= CLEAN_CER, texts
    assert result.markdown is not None and "\n\n" in result.markdown  # the columns are separate paragraphs


def test_requested_languages_choose_the_models(engine: TesseractEngine) -> None:
    page = render_page(RUSSIAN_LINES[:3])
    expected = "\n".join(RUSSIAN_LINES[:3])
    russian, english = engine.recognize([page], ("ru",))[0], engine.recognize([page], ("en",))[0]
    assert cer(expected, "\n".join(b.text for b in russian.blocks)) <= CLEAN_CER
    assert cer(expected, "\n".join(b.text for b in english.blocks)) > 0.5  # the English model reads no Cyrillic
    fallback = engine.recognize([page], ("de",))[0]  # not installed: the default models
    assert cer(expected, "\n".join(b.text for b in fallback.blocks)) <= CLEAN_CER


def test_pages_in_parallel_threads(engine: TesseractEngine) -> None:
    pages = {"ru": render_page(RUSSIAN_LINES[:4]), "mixed": render_page(MIXED_LINES[:4])}
    expected = {"ru": RUSSIAN_LINES[:4], "mixed": MIXED_LINES[:4]}
    results: dict[str, str] = {}

    def work(name: str) -> None:
        for _ in range(2):
            results[name] = "\n".join(b.text for b in engine.recognize([pages[name]], ("ru", "en"))[0].blocks)

    threads = [threading.Thread(target=work, args=(name,)) for name in pages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for name, lines in expected.items():
        assert cer("\n".join(lines), results[name]) <= CLEAN_CER, results[name]


def test_tiny_and_blank_images_are_empty_pages(engine: TesseractEngine) -> None:
    """Tesseract reports an empty line on such images, and tesserocr raises for its text: not an error."""
    images = [Image.new("RGB", size, colour) for size in ((1, 1), (8, 8), (40, 3)) for colour in ("white", "black")]
    pages = engine.recognize([*images, Image.new("RGB", (1240, 1754), "white")], ("en",))
    assert [page.blocks for page in pages] == [[]] * 7


def test_page_timeout_stops_tesseract() -> None:
    hasty = TesseractEngine(find_tessdata(), timeout_s=0.005)
    try:
        with pytest.raises(PageTimeout) as caught:
            hasty.recognize([render_page(RUSSIAN_LINES)], ("ru",))
        assert caught.value.message == "Tesseract stopped after 0.005 s"
    finally:
        hasty.close()


class CountingTesseract(TesseractEngine):
    """The real engine, counting how many pages it works on at once."""

    def __init__(self) -> None:
        super().__init__(find_tessdata(), parallel=1)
        self.lock = threading.Lock()
        self.now = self.most = 0

    def recognize(self, images: Sequence[Image.Image], languages: Sequence[str]) -> list[EnginePage]:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return super().recognize(images, languages)
        finally:
            with self.lock:
                self.now -= 1


def test_an_engine_gets_no_more_pages_at_once_than_it_allows() -> None:
    """Several engines share the workers; each runtime lets through at most ``max_parallel`` pages."""
    engine = CountingTesseract()
    runtime = EngineRuntime(engine)
    page = render_page(RUSSIAN_LINES[:2])
    threads = [threading.Thread(target=runtime.recognize_batch, args=([page], ("ru",))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert engine.most == 1
    engine.close()
