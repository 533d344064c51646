"""The layout kinds of ``scripts/bench_engines.py``: pages in columns, ruled tables, Russian look-alikes.

Each kind is a set of generated pages that differ in font (DejaVu Sans or Serif), size, column gap, table
shape and seed, clean or scanned (blur, a degree askew, JPEG), so no single drawing carries a figure. Every
engine reads them as the service does (:meth:`EngineRuntime.recognize_batch`, then ``build_page``), and,
for comparison, as it did before the layout step (its lines in its own order, or top to bottom). Tesseract
is also run with its own order replaced by the XY-cut, to show which order is better.

Figures per engine and kind: character error rate of the page text in reading order (mean over pages), the
share of table cells read exactly as drawn (spaces aside), CPU seconds and wall seconds per page.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from app.engines.base import EngineRuntime, OcrEngine
from app.results import build_page, lines_markdown, reading_order
from tests.support.documents import (
    ENGLISH_LINES,
    MIXED_LINES,
    RUSSIAN_TECH_LINES,
    blurred,
    cer,
    jpeg_artefacts,
    render_page,
    rotated,
)
from tests.support.layout_pages import (
    ENGLISH_PROSE,
    RUSSIAN_LOOKALIKE_LINES,
    RUSSIAN_PROSE,
    LayoutPage,
    columns_page,
    invoice_rows,
    lookalike_page,
    prose,
    table_page,
)

FACES = ("DejaVuSans.ttf", "DejaVuSerif.ttf")
BEFORE = ("pp-ocr", "tesseract")  # engines whose reading before the layout step is shown too
XY_CUT = "tesseract, XY-cut order"  # Tesseract with its own line order replaced by the XY-cut
ENGLISH_TABLE = [
    ["Item", "Qty", "Unit price", "Total"],
    ["Printer paper A4", "20", "3.90", "78.00"],
    ["Stapler, heavy duty", "4", "12.50", "50.00"],
    ["Envelopes C4", "250", "0.06", "15.00"],
    ["Archive box", "8", "2.75", "22.00"],
    ["Ballpoint pens, blue", "100", "0.35", "35.00"],
]


def scanned(page: LayoutPage) -> LayoutPage:
    return LayoutPage(jpeg_artefacts(rotated(blurred(page.image, 0.8), 1.0), 40), page.text, page.tables)


def columns(n: int, count: int, narrow: bool = False) -> list[LayoutPage]:
    pages = []
    for seed in range(count):
        size = (19, 22, 24)[seed % 3]
        gutter = int(size * (1.3 + 0.2 * seed)) if narrow else (36, 60, 84)[seed % 3]
        sections = [(n, prose(ENGLISH_PROSE, 3, seed=seed + n)), (1, prose(ENGLISH_PROSE, 1, seed=seed + 9))]
        face = FACES[seed % 2]
        title = "Library committee news"
        pages.append(columns_page(sections, title=title, font_name=face, font_size=size, gutter=gutter))
    return pages


def russian_columns(count: int) -> list[LayoutPage]:
    return [
        columns_page(
            [(2, prose(RUSSIAN_PROSE, 4, seed=seed))],
            title="Протокол заседания совета",
            font_name=FACES[seed % 2],
            font_size=(20, 23)[seed % 2],
            gutter=(45, 70)[seed % 2],
        )
        for seed in range(count)
    ]


def russian_tables(count: int) -> list[LayoutPage]:
    return [
        table_page(
            invoice_rows(5 + seed % 5, seed=seed),
            font_name=FACES[seed % 2],
            font_size=(18, 20, 22)[seed % 3],
            padding=(8, 12)[seed % 2],
            before=["Счёт № 117 от 12 марта 2024 г."],
            after=["Итого к оплате указано в рублях."],
        )
        for seed in range(count)
    ]


def english_tables(count: int) -> list[LayoutPage]:
    return [
        table_page(
            ENGLISH_TABLE[: 3 + seed % 4],
            font_name=FACES[seed % 2],
            font_size=(18, 21)[seed % 2],
            before=["Invoice 2024-117"],
            after=["Payment within 14 days."],
        )
        for seed in range(count)
    ]


def lookalikes(count: int) -> list[LayoutPage]:
    return [
        lookalike_page(lines[seed:] + lines[:seed], 22 + (2 * seed) % 6, FACES[seed % 2])
        for seed in range(count)
        for lines in [RUSSIAN_LOOKALIKE_LINES]
    ]


def single_column(lines: Sequence[str], count: int) -> list[LayoutPage]:
    """The engines bench's plain pages (20 lines of 24 px, one column): the layout step must not hurt them."""
    texts = [[lines[(n + i * 7) % len(lines)] for i in range(20)] for n in range(count)]
    return [LayoutPage(render_page(text, font_size=24, top=90, gap=3.2), "\n".join(text)) for text in texts]


#: kind -> (pages, languages)
def kinds(count: int) -> dict[str, tuple[list[LayoutPage], tuple[str, ...]]]:
    return {
        "1 column": (single_column(ENGLISH_LINES, count), ("en",)),
        "1 column, Latin terms (ru)": (single_column(RUSSIAN_TECH_LINES, count), ("ru", "en")),
        "1 column, Russian + English": (single_column(MIXED_LINES, count), ("ru", "en")),
        "2 columns": (columns(2, count), ("en",)),
        "3 columns": (columns(3, count), ("en",)),
        "2 columns, narrow gutter": (columns(2, count, narrow=True), ("en",)),
        "2 columns, scanned": ([scanned(p) for p in columns(2, count)], ("en",)),
        "2 columns (ru)": (russian_columns(count), ("ru", "en")),
        "ruled table": (english_tables(count), ("en",)),
        "ruled table (ru)": (russian_tables(count), ("ru", "en")),
        "ruled table (ru), scanned": ([scanned(p) for p in russian_tables(count)], ("ru", "en")),
        "look-alikes (ru)": (lookalikes(count), ("ru", "en")),
    }


@dataclass
class Figures:
    cers: list[float] = field(default_factory=list)
    before: list[float] = field(default_factory=list)  # the same pages without the layout step
    cells: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    cpu_before: list[float] = field(default_factory=list)  # the engine alone, as before the layout step
    wall: list[float] = field(default_factory=list)


def _squeezed(text: str) -> str:
    return "".join(text.split())


def _cells_right(page: LayoutPage, blocks: Sequence[object]) -> float | None:
    if not page.tables:
        return None
    drawn = {(c.row, c.col): _squeezed(c.text) for cells in page.tables for c in cells}
    found = {}
    for block in blocks:
        table = getattr(block, "table", None)
        if table is not None:
            found.update({(c.row, c.col): _squeezed(c.text) for c in table.cells})
    return sum(found.get(key) == text for key, text in drawn.items()) / max(1, len(drawn))


def _before(engine: OcrEngine, image: Image.Image, languages: Sequence[str]) -> str:
    """The page's text as the service made it before the layout step."""
    page = engine.recognize([image], languages)[0]
    if engine.line_order == "ordered_lines":
        return "\n".join(block.text for block in page.blocks)
    return lines_markdown(reading_order(page.blocks))[1]


def measure(
    runtime: EngineRuntime, pages: Sequence[LayoutPage], languages: tuple[str, ...], before: bool = True
) -> Figures:
    figures = Figures()
    for page in pages:
        began, cpu = time.perf_counter(), time.process_time()
        read = runtime.recognize_batch([page.image], languages)[0]
        built = build_page(1, page.image.width, page.image.height, read.blocks, read.markdown)
        figures.wall.append(time.perf_counter() - began)
        figures.cpu.append(time.process_time() - cpu)
        figures.cers.append(cer(page.text, built.text))
        right = _cells_right(page, built.blocks)
        if right is not None:
            figures.cells.append(right)
        if before:
            cpu = time.process_time()
            text = _before(runtime.engine, page.image, languages)
            figures.cpu_before.append(time.process_time() - cpu)
            figures.before.append(cer(page.text, text))
    return figures


def report(engines: dict[str, OcrEngine], count: int, readable: Callable[[str, tuple[str, ...]], bool]) -> str:
    """The layout section's Markdown: a row per kind, a column per engine."""
    runtimes = {name: EngineRuntime(engine) for name, engine in engines.items()}
    rows = [
        "| Kind (lang) | Engine | CER now | CER before the layout step | Table cells exact | CPU s/page "
        "| CPU s/page before | Wall s/page |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, (pages, languages) in kinds(count).items():
        for name, runtime in runtimes.items():
            if not readable(name, languages):
                continue
            figures = measure(runtime, pages, languages, before=name in BEFORE)
            cells = f"{statistics.mean(figures.cells) * 100:.0f} %" if figures.cells else "—"
            before = f"{statistics.mean(figures.before) * 100:.2f} %" if figures.before else "—"
            cpu_before = f"{statistics.mean(figures.cpu_before):.2f}" if figures.cpu_before else "—"
            rows.append(
                f"| {kind} ({','.join(languages)}) | {name} | {statistics.mean(figures.cers) * 100:.2f} % "
                f"| {before} | {cells} | {statistics.mean(figures.cpu):.2f} | {cpu_before} "
                f"| {statistics.mean(figures.wall):.2f} |"
            )
    return "\n".join(rows)
