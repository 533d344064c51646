"""The web page at ``/``, in headless Chromium (Debian's) driven by Playwright, against the real service,
in both of its languages: each test runs with a Russian and an English browser (the context's locale).

One browser for the module; each test gets a fresh context (its own sessionStorage). Screenshots are
saved under ``test-artifacts/``. The expected texts below are written here, not read from the page's
dictionaries, so a missing or wrong translation fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from tests.support.browser import chromium, drop_file, screenshot
from tests.support.documents import ENGLISH_LINES, cer, image_bytes, render_page, text_pdf
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.integration

API_KEY = "web-page-test-key-5c1e"  # pragma: allowlist secret
LINES = ENGLISH_LINES[:6]
RESULT_TIMEOUT_MS = 90_000
LOCALES = {"en": "en-US", "ru": "ru-RU"}
TEXT = {
    "en": {
        "heading": "Document OCR",
        "submit": "Recognise",
        "progress_of_30": "of 30 pages recognised",
        "cancelled": "The job was cancelled.",
        "cancelled_done": r"^(\d+) of 30 page\(s\) had been recognised\.$",
        "choose_first": "Choose a document first",
        "unsupported": "This file type is not supported.",
        "bad_option": "The document or an option could not be used.",
        "needs_key": "This service needs an API key.",
        "key_refused": "The API key was not accepted.",
        "score": "score",
        "engine_ready": "ready",
    },
    "ru": {
        "heading": "Распознавание документов",
        "submit": "Распознать",
        "progress_of_30": "из 30 страниц",
        "cancelled": "Задание отменено.",
        "cancelled_done": r"^Успели распознать страниц: (\d+) из 30\.$",
        "choose_first": "Сначала выберите документ",
        "unsupported": "Этот тип файла не поддерживается.",
        "bad_option": "Документ или параметр не подходит.",
        "needs_key": "Сервису нужен ключ API.",
        "key_refused": "Ключ API не принят.",
        "score": "уверенность",
        "engine_ready": "готов",
    },
}


def blocks_label(lang: str, count: int) -> str:
    """ "3 blocks" / "3 блока": Russian has three plural forms."""
    if lang == "en":
        return f"{count} block" if count == 1 else f"{count} blocks"
    if count % 10 == 1 and count % 100 != 11:
        return f"{count} блок"
    if count % 10 in (2, 3, 4) and count % 100 not in (12, 13, 14):
        return f"{count} блока"
    return f"{count} блоков"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as instance:
        yield instance


@pytest.fixture(params=sorted(LOCALES))
def lang(request: pytest.FixtureRequest) -> str:
    """The browser's language for this run of the test."""
    value: str = request.param
    return value


@pytest.fixture(scope="module")
def keyed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The service with ``API_KEY`` set."""
    env = {"API_KEY": API_KEY, "OCR_CONCURRENCY": "1"}
    with ServiceProcess(tmp_path_factory.mktemp("keyed"), env=env) as server:
        server.wait_ready()
        yield server


class Session:
    """A browser context on the page, collecting script errors and the bodies of ``POST /jobs``."""

    def __init__(self, context: BrowserContext, base_url: str) -> None:
        self.context = context
        self.base_url = base_url
        self.page = context.new_page()
        self.errors: list[str] = []
        self.submissions: list[bytes] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.route("**/jobs", self._record)  # passed on to the service unchanged

    def _record(self, route: Route) -> None:
        if route.request.method == "POST":
            self.submissions.append(route.request.post_data_buffer or b"")
        route.continue_()

    def open(self) -> Page:
        self.page.goto(self.base_url + "/")
        self.page.wait_for_selector("body[data-ready=true]")
        return self.page

    def language(self) -> str:
        return str(self.page.get_attribute("html", "lang"))

    def wait_for_result(self) -> dict[str, Any]:
        """Wait until the result is shown; returns the JSON the page displays."""
        page = self.page
        expect(page.locator("#result")).to_be_visible(timeout=RESULT_TIMEOUT_MS)
        result: dict[str, Any] = json.loads(page.text_content("#json") or "null")
        return result

    def wait_for_page_image(self) -> dict[str, Any]:
        self.page.wait_for_function(
            "() => { const i = document.getElementById('page-image');"
            " return i.getAttribute('src') && i.complete && i.naturalWidth > 0; }"
        )
        image: dict[str, Any] = self.page.eval_on_selector(
            "#page-image", "i => ({src: i.src, width: i.naturalWidth, height: i.naturalHeight})"
        )
        return image


@pytest.fixture
def desktop(browser: Browser, service: ServiceProcess, lang: str) -> Iterator[Session]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True, locale=LOCALES[lang])
    session = Session(context, service.url)
    yield session
    context.close()
    assert session.errors == [], session.errors


def png_page() -> bytes:
    return image_bytes(render_page(LINES, size=(1000, 480), top=40), "PNG")


def boxes_match_blocks(page: Page, blocks: list[dict[str, Any]], width: int, height: int) -> None:
    """One drawn box per block, each where the block's bbox puts it on the shown page (within 2 px)."""
    boxes = page.locator("#boxes .box")
    expect(boxes).to_have_count(len(blocks))
    stage = page.locator("#stage").bounding_box()
    assert stage is not None
    scale_x, scale_y = stage["width"] / width, stage["height"] / height
    for index in (0, len(blocks) - 1):
        drawn = boxes.nth(index).bounding_box()
        assert drawn is not None
        x0, y0, x1, _ = blocks[index]["bbox"]
        assert abs(drawn["x"] - stage["x"] - x0 * scale_x) < 2
        assert abs(drawn["y"] - stage["y"] - y0 * scale_y) < 2
        assert abs(drawn["width"] - (x1 - x0) * scale_x) < 2


def test_image_upload_shows_boxes_markdown_json_and_downloads(
    desktop: Session, service: ServiceProcess, lang: str
) -> None:
    page = desktop.open()
    assert desktop.language() == lang
    expect(page.locator("h1")).to_have_text(TEXT[lang]["heading"])
    expect(page.locator("#submit")).to_have_text(TEXT[lang]["submit"])
    expect(page.locator("#key-row")).to_be_hidden()  # no API_KEY on this service
    page.set_input_files("#file", files=[{"name": "report.png", "mimeType": "image/png", "buffer": png_page()}])
    expect(page.locator("#file-name")).to_contain_text("report.png")
    page.click("#submit")
    expect(page.locator("#progress")).to_be_visible()
    shown = desktop.wait_for_result()

    stored = httpx.get(f"{service.url}/jobs/{shown['id']}/result", timeout=30).json()
    assert shown == stored  # the JSON tab shows the service's result as it is
    body = desktop.submissions[0]
    assert b'name="file"' in body
    for unset in (b'name="pages"', b'name="dpi"', b'name="lang"', b'name="engine"'):
        assert unset not in body  # options are sent only when the user sets them

    result_page = stored["pages"][0]
    assert abs(sum(len(block["lines"]) for block in result_page["blocks"]) - len(LINES)) <= 1  # grouped lines
    image = desktop.wait_for_page_image()
    assert image["src"].startswith("blob:")  # the uploaded file itself, drawn by the browser
    assert (image["width"], image["height"]) == (1000, 480) == (result_page["width"], result_page["height"])
    boxes_match_blocks(page, result_page["blocks"], result_page["width"], result_page["height"])
    expect(page.locator("#result-meta")).to_contain_text("tesseract")

    block = result_page["blocks"][-1]
    page.locator("#boxes .box").nth(len(result_page["blocks"]) - 1).hover()
    tooltip = page.locator("#tooltip")
    expect(tooltip).to_be_visible()
    expect(tooltip).to_contain_text(block["text"].split("\n")[-1])
    expect(tooltip).to_contain_text(f"{TEXT[lang]['score']} {block['score']:.3f}")
    screenshot(page, f"web-desktop-image-{lang}")

    page.click("#tab-markdown")
    markdown = page.locator("#markdown")
    expect(markdown).to_be_visible()
    expect(markdown).to_contain_text("Invoice 2024-117 was paid on the third of May.")
    assert cer("\n".join(LINES), markdown.inner_text()) < 0.03
    page.click("#tab-json")
    expect(page.locator("#json")).to_contain_text('"engine": "tesseract"')

    with page.expect_download() as markdown_download:
        page.click("#download-md")
    assert markdown_download.value.suggested_filename == "report.md"
    assert Path(markdown_download.value.path()).read_text(encoding="utf-8") == stored["markdown"]
    with page.expect_download() as json_download:
        page.click("#download-json")
    assert json_download.value.suggested_filename == "report.json"
    assert json.loads(Path(json_download.value.path()).read_text(encoding="utf-8")) == stored
    expect(page.locator("#download-xlsx")).to_be_hidden()  # no table in this result
    for output, magic in (("pdf", b"%PDF-"), ("docx", b"PK")):
        with page.expect_download() as made:
            page.click(f"#download-{output}")
        assert made.value.suggested_filename == f"report.{output}"
        kept = httpx.get(f"{service.url}/jobs/{shown['id']}/result", params={"output": output}, timeout=60).content
        assert Path(made.value.path()).read_bytes() == kept and kept.startswith(magic)


def test_dropped_pdf_shows_server_rendered_pages_with_options(desktop: Session, lang: str) -> None:
    page = desktop.open()
    drop_file(page, "#dropzone", "three.pdf", "application/pdf", text_pdf(3))
    expect(page.locator("#file-name")).to_contain_text("three.pdf")
    page.fill("#pages", "2-3")
    page.fill("#dpi", "100")
    page.fill("#lang", "en")
    page.click("#submit")
    result = desktop.wait_for_result()

    body = desktop.submissions[0]
    for sent in (b'name="pages"\r\n\r\n2-3', b'name="dpi"\r\n\r\n100', b'name="lang"\r\n\r\nen'):
        assert sent in body
    assert b'name="engine"' not in body
    assert [p["index"] for p in result["pages"]] == [2, 3] and result["page_count"] == 3
    assert result["pages"][0]["width"] == round(595.28 * 100 / 72)  # A4 at the requested 100 dpi

    first, second = result["pages"]
    image = desktop.wait_for_page_image()
    assert image["src"].startswith("blob:")  # fetched from /jobs/{id}/pages/2/image
    assert (image["width"], image["height"]) == (first["width"], first["height"])
    boxes_match_blocks(page, first["blocks"], first["width"], first["height"])
    expect(page.locator("#page-select")).to_have_value("0")
    screenshot(page, f"web-desktop-pdf-{lang}")

    page.click("#next-page")
    expect(page.locator("#page-info")).to_have_text(blocks_label(lang, len(second["blocks"])))
    page.wait_for_function(
        "src => document.getElementById('page-image').src !== src && document.getElementById('page-image').complete",
        arg=image["src"],
    )
    boxes_match_blocks(page, second["blocks"], second["width"], second["height"])
    page.click("#tab-markdown")
    expect(page.locator("#markdown")).to_contain_text("Page 3 of the generated test document")
    assert "Page 1 of the generated" not in page.inner_text("#markdown")


def test_progress_and_cancel(desktop: Session, lang: str) -> None:
    page = desktop.open()
    page.set_input_files("#file", files=[{"name": "long.pdf", "mimeType": "application/pdf", "buffer": text_pdf(30)}])
    page.fill("#dpi", "75")
    page.select_option("#engine", "pp-ocr")  # the slower engine: the job is still running when cancelled
    page.click("#submit")
    expect(page.locator("#progress-text")).to_contain_text(TEXT[lang]["progress_of_30"], timeout=30_000)
    expect(page.locator("#cancel")).to_be_visible()
    page.click("#cancel")
    message = page.locator("#message")
    expect(message).to_contain_text(TEXT[lang]["cancelled"], timeout=30_000)
    done = re.match(TEXT[lang]["cancelled_done"], page.inner_text("#message-text"))
    assert done, page.inner_text("#message-text")
    assert int(done.group(1)) < 30
    expect(page.locator("#progress")).to_be_hidden()
    expect(page.locator("#result")).to_be_hidden()


def test_errors_are_shown_in_plain_words(desktop: Session, lang: str) -> None:
    page = desktop.open()
    page.click("#submit")
    expect(page.locator("#message")).to_contain_text(TEXT[lang]["choose_first"])

    page.set_input_files("#file", files=[{"name": "notes.pdf", "mimeType": "application/pdf", "buffer": b"hello"}])
    page.click("#submit")
    message = page.locator("#message")
    expect(message).to_contain_text(TEXT[lang]["unsupported"])
    expect(message).to_contain_text("415 unsupported_type")
    expect(page.locator("#result")).to_be_hidden()
    expect(page.locator("#progress")).to_be_hidden()
    screenshot(page, f"web-error-{lang}")

    page.set_input_files("#file", files=[{"name": "one.png", "mimeType": "image/png", "buffer": png_page()}])
    page.fill("#pages", "9")
    page.click("#submit")
    expect(message).to_contain_text(TEXT[lang]["bad_option"])
    expect(message).to_contain_text("page 9 does not exist")  # the service's own words
    expect(message).to_contain_text("422 invalid_pages")


def test_api_key_is_asked_for_and_kept_in_the_tab_only(
    browser: Browser, keyed_service: ServiceProcess, lang: str
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=LOCALES[lang])
    session = Session(context, keyed_service.url)
    page = session.open()  # the page and its files are open although API_KEY is set
    key_row = page.locator("#key-row")
    expect(key_row).to_be_visible()
    page.set_input_files("#file", files=[{"name": "one.pdf", "mimeType": "application/pdf", "buffer": text_pdf(1)}])
    page.click("#submit")
    expect(page.locator("#message")).to_contain_text(TEXT[lang]["needs_key"])
    assert session.submissions == []  # nothing was sent without a key

    page.fill("#api-key", "not-the-key")
    page.click("#submit")
    expect(page.locator("#message")).to_contain_text(TEXT[lang]["key_refused"])
    expect(page.locator("#message")).to_contain_text("401 unauthorized")

    page.fill("#api-key", API_KEY)
    page.click("#submit")
    result = session.wait_for_result()
    expect(page.locator("#message")).to_be_hidden()
    image = session.wait_for_page_image()  # the page image request carried the key too
    assert image["width"] == result["pages"][0]["width"]
    expect(page.locator("#boxes .box")).to_have_count(len(result["pages"][0]["blocks"]))
    screenshot(page, f"web-api-key-{lang}")
    image_url = f"{keyed_service.url}/jobs/{result['id']}/pages/1/image"
    assert httpx.get(image_url, timeout=10).status_code == 401  # the page image is behind the key
    assert httpx.get(image_url, headers={"X-API-Key": API_KEY}, timeout=10).status_code == 200

    storage = page.evaluate("() => [JSON.stringify(sessionStorage), JSON.stringify(localStorage), document.cookie]")
    assert API_KEY in storage[0] and API_KEY not in storage[1] and API_KEY not in storage[2]
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#api-key")).to_have_value(API_KEY)  # same tab: still there
    page.click("#forget-key")
    assert page.evaluate("() => sessionStorage.length") == 0
    assert session.errors == []
    context.close()

    other = browser.new_context(locale=LOCALES[lang])
    fresh = Session(other, keyed_service.url).open()
    expect(fresh.locator("#api-key")).to_have_value("")  # another tab (context) does not get it
    other.close()
    assert API_KEY not in keyed_service.log()


def test_phone_width_has_no_horizontal_overflow(browser: Browser, service: ServiceProcess, lang: str) -> None:
    viewport = {"width": 390, "height": 844}
    context = browser.new_context(viewport=viewport, is_mobile=True, has_touch=True, locale=LOCALES[lang])
    session = Session(context, service.url)
    page = session.open()

    def overflow() -> int:
        return int(page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth"))

    assert overflow() == 0
    page.set_input_files("#file", files=[{"name": "phone.png", "mimeType": "image/png", "buffer": png_page()}])
    page.click("#submit")
    result = session.wait_for_result()
    session.wait_for_page_image()
    expect(page.locator("#boxes .box")).to_have_count(len(result["pages"][0]["blocks"]))
    assert overflow() == 0
    screenshot(page, f"web-phone-{lang}")  # before the tap: a full-page shot resizes the view under the finger
    page.locator("#boxes .box").first.tap()
    expect(page.locator("#tooltip")).to_be_visible()
    expect(page.locator("#tooltip")).to_contain_text(result["pages"][0]["blocks"][0]["text"].split("\n")[0])
    for tab in ("#tab-markdown", "#tab-json"):
        page.click(tab)
        assert overflow() == 0, tab
    assert session.errors == []
    context.close()


def test_engine_choices_follow_health(desktop: Session, service: ServiceProcess, lang: str) -> None:
    """The engine list is shown only when /health lists several engines (languages likewise)."""
    health = httpx.get(service.url + "/health", timeout=10).json()
    engines = health.get("engines")
    names = (
        [e if isinstance(e, str) else e.get("name") for e in engines]
        if isinstance(engines, list)
        else list(engines)
        if isinstance(engines, dict)
        else []
    )
    page = desktop.open()
    expect(page.locator("#health")).to_have_text(f"{health['engine']['name']} · {TEXT[lang]['engine_ready']}")
    if len(names) >= 2:
        expect(page.locator("#engine-row")).to_be_visible()
        values = page.eval_on_selector_all("#engine option", "options => options.map(o => o.value)")
        assert values == ["", *names]
    else:
        expect(page.locator("#engine-row")).to_be_hidden()


HOSTILE = """\
# Title with <b>tag</b>

<script>window.__xss = 1</script>
<img src="x" onerror="window.__xss = 2">
<svg onload="window.__xss = 3"></svg>
<iframe srcdoc="<script>parent.__xss = 4</script>"></iframe>

<table border=1 style="position:fixed"><tr><td onclick="window.__xss = 5" colspan="2" rowspan="x">cell</td></tr>
<tr><td><a href="javascript:window.__xss = 6">link</a><img src=y onerror="window.__xss = 7" alt="Chart"></td>
</tr></table>

A [bad link](javascript:window.__xss=8) and a [good one](https://example.org/a "t") and ![pic](imgs/p1.jpg).
Inline <img src=z onerror="window.__xss = 9"> stays text; 1 < 2 > 0 & so on.

| Item | Price |
|:-----|------:|
| Tea <i>x</i> | 2.50 |
| Escaped \\| pipe | **9** |

- one
- two *em*
  - nested `code`
1. first
2. second

```
<b>code is text</b>
```

$$E = mc^2$$
"""


def test_markdown_renderer_is_safe_and_renders_the_usual_syntax(desktop: Session) -> None:
    page = desktop.open()
    report = page.evaluate(
        """async (source) => {
            const { renderMarkdown } = await import("./ui/markdown.js");
            const host = document.createElement("div");
            host.append(renderMarkdown(source));
            document.body.append(host);
            await new Promise((resolve) => setTimeout(resolve, 300));
            const all = [...host.querySelectorAll("*")];
            return {
                xss: window.__xss || null,
                tags: [...new Set(all.map((e) => e.localName))].sort(),
                attributes: [...new Set(all.flatMap((e) => [...e.attributes].map((a) => a.name)))].sort(),
                styles: all.filter((e) => e.hasAttribute("style"))
                    .map((e) => `${e.localName} ${e.getAttribute("style")}`),
                links: [...host.querySelectorAll("a")].map((a) => a.getAttribute("href")),
                cells: [...host.querySelectorAll("td, th")].map((c) => c.textContent),
                colspans: [...host.querySelectorAll("td[colspan]")].map((c) => c.getAttribute("colspan")),
                text: host.textContent,
                code: host.querySelector("pre code").textContent,
            };
        }""",
        HOSTILE,
    )
    assert report["xss"] is None
    for forbidden in ("script", "img", "svg", "iframe", "b"):
        assert forbidden not in report["tags"], forbidden
    assert set(report["attributes"]) <= {"class", "colspan", "href", "rel", "target", "title", "style"}
    aligned = ["text-align: left;", "text-align: right;"]
    # only the pipe table's column alignment: the HTML table's style attribute is gone
    assert report["styles"] == [f"{cell} {align}" for cell in ("th", "td", "td") for align in aligned]
    assert report["links"] == ["https://example.org/a"]
    assert report["colspans"] == ["2"]
    assert "cell" in report["cells"] and "Tea <i>x</i>" in report["cells"] and "Escaped | pipe" in report["cells"]
    for tag in ("h1", "table", "thead", "ul", "ol", "li", "em", "strong", "code", "pre"):
        assert tag in report["tags"], tag
    assert "Title with <b>tag</b>" in report["text"]  # markup in a heading is shown, not applied
    assert "Inline <img src=z" in report["text"] and "1 < 2 > 0 & so on" in report["text"]
    assert "[Chart: y]" in report["text"] and "[pic: p1.jpg]" in report["text"]
    assert report["code"] == "<b>code is text</b>"
    assert "E = mc^2" in report["text"]


def test_markdown_figures_take_the_page_language(desktop: Session) -> None:
    page = desktop.open()
    texts = page.evaluate(
        """async () => {
            const { renderMarkdown } = await import("./ui/markdown.js");
            const text = (words) => {
                const host = document.createElement("div");
                host.append(renderMarkdown("![](imgs/p1.jpg)\\n\\n<div><img src='imgs/p2.jpg'></div>", words));
                const figures = [...host.querySelectorAll(".figure")];
                return [figures.map((f) => f.textContent), figures[0].title];
            };
            return [text(), text({ figure: "рисунок", figureTitle: "на сервере" })];
        }"""
    )
    assert texts[0][0] == ["[figure: p1.jpg]", "[figure: p2.jpg]"]
    assert texts[1] == [["[рисунок: p1.jpg]", "[рисунок: p2.jpg]"], "на сервере"]


def test_the_language_follows_the_browser_and_the_switch(browser: Browser, service: ServiceProcess) -> None:
    for locale, expected in (("ru-RU", "ru"), ("ru", "ru"), ("en-GB", "en"), ("de-DE", "en")):
        context = browser.new_context(locale=locale)
        page = Session(context, service.url).open()
        assert page.get_attribute("html", "lang") == expected, locale
        expect(page.locator("h1")).to_have_text(TEXT[expected]["heading"])
        expect(page.locator(f"[data-lang={expected}]")).to_have_attribute("aria-pressed", "true")
        context.close()

    context = browser.new_context(locale="ru-RU")
    session = Session(context, service.url)
    page = session.open()
    page.set_input_files("#file", files=[{"name": "scan.png", "mimeType": "image/png", "buffer": png_page()}])
    page.click("#submit")
    result = session.wait_for_result()
    count = len(result["pages"][0]["blocks"])
    expect(page.locator("#result-meta")).to_contain_text(f"1 страница · {blocks_label('ru', count)} · tesseract")
    expect(page.locator("#page-info")).to_have_text(blocks_label("ru", count))

    page.click("[data-lang=en]")  # what is on screen is redrawn in English at once
    assert page.get_attribute("html", "lang") == "en"
    expect(page.locator("h1")).to_have_text(TEXT["en"]["heading"])
    expect(page.locator("#result-meta")).to_contain_text(f"1 page · {blocks_label('en', count)} · tesseract")
    expect(page.locator("#page-info")).to_have_text(blocks_label("en", count))
    expect(page.locator("#health")).to_contain_text(TEXT["en"]["engine_ready"])
    assert page.title().startswith("OCR")

    page.reload()  # the choice is kept in this tab
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("h1")).to_have_text(TEXT["en"]["heading"])
    page.goto(service.url + "/?lang=ru")  # and the address can ask for one
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("h1")).to_have_text(TEXT["ru"]["heading"])
    assert session.errors == []
    context.close()


# Latin words a Russian page may show: formats, protocol names, the switch, the service's own name.
LATIN_IN_RUSSIAN = {"PDF", "PNG", "JPEG", "TIFF", "WebP", "BMP", "DPI", "API", "API_KEY", "Markdown", "JSON", "md",
                    "json", "sessionStorage", "RU", "EN", "paddleocr", "vl", "service",
                    "Word", "Excel", "docx", "xlsx"}  # fmt: skip
#: What the page shows of the document, the service or the user (not its own words): recognised text, file
#: names, language codes, engine names, and the engine's selection reason from /health (the title of #health).
NOT_THE_PAGES_WORDS = (
    "code, #json, #markdown, #file-name, #version, #lang-list, #page-select, #boxes, #tooltip, #result-title, "
    '#engine option:not([value=""])'
)

PAGE_WORDS = """(skip) => {
    const skipped = new Set(document.querySelectorAll(skip));
    const inSkipped = (node) => {
        for (let n = node; n; n = n.parentElement) if (skipped.has(n)) return true;
        return false;
    };
    const texts = [document.title];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (!inSkipped(node.parentElement)) texts.push(node.textContent);
    }
    for (const element of document.querySelectorAll("[placeholder], [aria-label], [title], [alt]")) {
        if (inSkipped(element) || element.id === "health") continue;
        for (const name of ["placeholder", "aria-label", "title", "alt"]) texts.push(element.getAttribute(name) || "");
    }
    return texts.join("\\n");
}"""


def page_words(page: Page) -> str:
    """Every word of the page's own (shown or hidden, text and attributes), without the document's."""
    words: str = page.evaluate(PAGE_WORDS, NOT_THE_PAGES_WORDS)
    health = page.inner_text("#health").split(" · ")[0]  # the engine's name
    codes = page.inner_text("#lang-hint").partition(":")[2]  # the installed languages' codes
    return words.replace(health, "").replace(codes, "")


def test_every_word_of_the_page_is_translated(desktop: Session, lang: str) -> None:
    """In Russian no English word of the page's own is left (formats and names aside); in English no Russian."""
    page = desktop.open()
    page.set_input_files("#file", files=[{"name": "scan.png", "mimeType": "image/png", "buffer": png_page()}])
    page.click("#submit")
    desktop.wait_for_result()
    page.locator("#boxes .box").first.hover()
    for stage in ("result", "progress"):
        text = page_words(page).replace("pp-ocr", "")
        if lang == "ru":
            latin = set(re.findall(r"[A-Za-z][A-Za-z_]*", text)) - LATIN_IN_RUSSIAN
            assert latin == set(), f"{stage}: English left on the Russian page: {sorted(latin)}"
        else:
            cyrillic = re.findall(r"[А-Яа-яЁё]+", text)
            assert cyrillic == [], f"{stage}: Russian on the English page: {cyrillic}"
        page.evaluate("() => { document.getElementById('progress').hidden = false; }")
