#!/usr/bin/env python3
"""pp-ocr, tesseract and ``auto`` on the same generated document pages: pages/s and character error rate.

Usage: .venv/bin/python scripts/bench_engines.py [--pages 4] [--repeat 2] [--layout-pages 3] [--only-layout]
       [--write BENCHMARKS.md]

Pages: A4 at 150 dpi, 20 lines of 24 px DejaVu Sans, in four sets (English; Russian; Russian with Latin
terms, requested as ``lang=ru``; Russian and English mixed), each in five kinds: clean; noisy (blur, 1.5
degrees askew, JPEG q30); photographed (perspective, uneven light on yellowish paper, sensor noise, JPEG);
a vector PDF rasterised as the service does; and rotated (the clean page turned 90, 180 or 270 degrees).

Each engine runs as the service runs it (``OCR_CONCURRENCY`` = cores pages at a time, one thread each),
reading the languages a request would give it (English added to Russian), but with pages read as they
lie (no orientation detection): that is the engine alone. ``auto`` is what the service does: the engine
:func:`~app.engines.select.choose_for_request` picks with the figures of this run, pages turned upright
when they do not read upright (:mod:`app.engines.orientation`). Rates are the best of ``--repeat`` interleaved runs.

Layout kinds (``scripts/bench_layout.py``): the plain one-column pages (English, Russian with Latin
terms, Russian and English mixed), pages in two and three columns (wide and narrow gutters, clean
and scanned), ruled tables (English and Russian, clean and scanned) and Russian text with look-alike-prone
words, ``--layout-pages`` of each, read by each engine as the service reads them (tables as cells, columns
in order); they go to the ``layout`` section. ``--only-layout`` runs those alone.

With ``--write`` the upright English figures of both engines (the pages both read) are also written to
``app/engines/measured.json``, which ``auto`` uses from then on, and the engines section of the Markdown
file is replaced.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # as start.sh sets it

import bench_layout  # noqa: E402
from bench import write_section  # noqa: E402
from PIL import Image  # noqa: E402

from app.documents import Limits, open_document  # noqa: E402
from app.engines.base import EngineRuntime, OcrEngine  # noqa: E402
from app.engines.languages import with_latin  # noqa: E402
from app.engines.measured import CER_TOLERANCE, FIGURES_PATH, Figures, Measurement  # noqa: E402
from app.engines.orientation import UPRIGHT_CONFIDENCE, OrientationDetector, turn  # noqa: E402
from app.engines.pp_ocr import PpOcrEngine  # noqa: E402
from app.engines.select import Choice, choose_for_request  # noqa: E402
from app.engines.tesseract import TesseractEngine, find_tessdata  # noqa: E402
from app.results import build_page  # noqa: E402
from tests.support.documents import (  # noqa: E402
    ENGLISH_LINES,
    MIXED_LINES,
    RUSSIAN_LINES,
    RUSSIAN_TECH_LINES,
    blurred,
    cer,
    jpeg_artefacts,
    photographed,
    render_page,
    rotated,
    text_pdf,
)

SETS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "English": (ENGLISH_LINES, ("en",)),
    "Russian": (RUSSIAN_LINES, ("ru",)),
    "Russian, Latin terms": (RUSSIAN_TECH_LINES, ("ru",)),
    "Russian + English": (MIXED_LINES, ("ru", "en")),
}
KINDS = ("clean", "noisy", "photo", "vector-pdf", "rotated")
UPRIGHT = KINDS[:4]
ENGINES = ("pp-ocr", "tesseract")
STRICT = "tesseract, lang_strict"  # Tesseract with only the requested languages (no English added)
LINES_PER_PAGE = 20


@dataclass
class Cell:
    """One way of reading one set of pages of one kind: best pages/s over the runs, CER per page."""

    rates: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # CPU seconds of this process per page, per run
    cers: list[float] = field(default_factory=list)
    osd: int = 0  # pages orientation detection ran on (auto only)

    @property
    def rate(self) -> float:
        return max(self.rates)

    @property
    def cpu_per_page(self) -> float:
        return min(self.cpu)

    @property
    def cer(self) -> float:
        return statistics.mean(self.cers)


def page_texts(lines: list[str], count: int) -> list[list[str]]:
    """``count`` distinct pages of 20 lines: the set's lines in a different order on each."""
    return [[lines[(n + i * 7) % len(lines)] for i in range(LINES_PER_PAGE)] for n in range(count)]


def make_pages(texts: list[list[str]], kind: str) -> list[Image.Image]:
    """The pages of ``texts`` as ``kind``; a vector PDF is rasterised at 150 dpi as the service does."""
    if kind == "vector-pdf":
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "doc.pdf"
            path.write_bytes(text_pdf(len(texts), lambda number: texts[number - 1]))
            with open_document(path, "application/pdf", Limits(max_pages=100, max_image_pixels=10**8)) as document:
                return [document.render(number, 150) for number in range(1, len(texts) + 1)]
    clean = [render_page(text, font_size=24, top=90, gap=3.2) for text in texts]
    if kind == "noisy":
        return [jpeg_artefacts(rotated(blurred(page))) for page in clean]
    if kind == "photo":
        return [photographed(page, seed=n) for n, page in enumerate(clean)]
    if kind == "rotated":
        return [turn(page, (90, 180, 270)[n % 3]) for n, page in enumerate(clean)]
    return clean


_WARM: set[tuple[int, tuple[str, ...]]] = set()


def run(
    runtime: EngineRuntime, images: list[Image.Image], languages: Sequence[str], workers: int
) -> tuple[float, list[str], int]:
    """(pages/s, CPU seconds per page, page texts, pages OSD looked at) with ``workers`` pages at a time; the
    first run of a runtime with a set of languages warms each worker up on one page first."""

    def one(image: Image.Image) -> str:
        page = runtime.recognize_batch([image], languages)[0]
        built = build_page(1, image.width, image.height, page.blocks, page.markdown, rotation=page.rotation)
        return built.text  # as the service builds it

    detector = runtime.orientation
    with ThreadPoolExecutor(workers) as pool:
        if (id(runtime), tuple(languages)) not in _WARM:  # models loaded and pools filled before any clock runs
            list(pool.map(one, images[:workers]))
            _WARM.add((id(runtime), tuple(languages)))
        looked = detector.calls if isinstance(detector, CountingDetector) else 0
        began, cpu = time.perf_counter(), time.process_time()
        texts = list(pool.map(one, images))
        took, cpu = time.perf_counter() - began, time.process_time() - cpu
    if isinstance(detector, CountingDetector):
        looked = detector.calls - looked
    return len(images) / took, cpu / len(images), texts, looked


class CountingDetector(OrientationDetector):
    """The real detector, counting the pages it looks at and the time it takes."""

    calls = 0
    seconds = 0.0
    cpu_seconds = 0.0  # of the calling thread, which OSD runs in

    def detect(self, image: Image.Image) -> int | None:
        began, cpu = time.perf_counter(), time.thread_time()
        try:
            return super().detect(image)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - began
            self.cpu_seconds += time.thread_time() - cpu


def measure(
    cell: Cell,
    runtime: EngineRuntime,
    images: list[Image.Image],
    references: list[str],
    languages: Sequence[str],
    workers: int,
) -> None:
    rate, cpu, texts, cell.osd = run(runtime, images, languages, workers)
    cell.rates.append(rate)
    cell.cpu.append(cpu)
    cell.cers = [cer(reference, text) for reference, text in zip(references, texts, strict=True)]


def figures_of(cells: dict[tuple[str, str, str], Cell], command: str) -> Figures:
    engines = {
        name: {
            kind: Measurement(round(cells[name, "English", kind].rate, 3), round(cells[name, "English", kind].cer, 5))
            for kind in UPRIGHT
        }
        for name in ENGINES
    }
    return Figures(("en",), engines, source=command)


def percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=4, help="pages per set and kind")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per cell (the best counts)")
    parser.add_argument("--write", type=Path, help="replace the engines section of this Markdown file")
    parser.add_argument("--layout-pages", type=int, default=3, help="pages per layout kind")
    parser.add_argument("--only-layout", action="store_true", help="the layout kinds alone")
    args = parser.parse_args()
    command = (
        f".venv/bin/python scripts/bench_engines.py --pages {args.pages} --repeat {args.repeat} --write BENCHMARKS.md"
    )
    if args.only_layout:
        layout_only(args.layout_pages, args.write)
        return

    cores = len(os.sched_getaffinity(0))
    workers = cores
    load_before = os.getloadavg()[0]
    tessdata = find_tessdata()
    detector = CountingDetector.find(tessdata)
    if detector is None:
        sys.exit(f"no osd.traineddata in {tessdata}: apt-get install tesseract-ocr-osd")
    engines: dict[str, OcrEngine] = {
        "pp-ocr": PpOcrEngine(parallel=workers, threads=max(1, cores // workers)),
        "tesseract": TesseractEngine(tessdata, parallel=workers, default_languages=("ru", "en")),
    }
    for engine in engines.values():
        engine.load()
    plain = {name: EngineRuntime(engine) for name, engine in engines.items()}
    readable = {name: engine.languages for name, engine in engines.items()}

    texts = {name: page_texts(lines, args.pages) for name, (lines, _) in SETS.items()}
    references = {name: ["\n".join(page) for page in pages] for name, pages in texts.items()}
    images = {(name, kind): make_pages(texts[name], kind) for name in SETS for kind in KINDS}
    cells: dict[tuple[str, str, str], Cell] = {}

    def engines_run(set_name: str, kind: str) -> None:
        languages = SETS[set_name][1]
        for name, runtime in plain.items():
            reads = readable[name]
            if reads is not None and not set(languages) <= reads:
                continue  # pp-ocr has no Cyrillic letters
            cell = cells.setdefault((name, set_name, kind), Cell())
            measure(cell, runtime, images[set_name, kind], references[set_name], with_latin(languages, reads), workers)

    def auto_run(set_name: str, kind: str) -> None:
        choice = picks[set_name]
        cell = cells.setdefault(("auto", set_name, kind), Cell())
        measure(cell, upright[choice.engine], images[set_name, kind], references[set_name], choice.languages, workers)

    upright = {name: EngineRuntime(engine, orientation=detector) for name, engine in engines.items()}
    picks: dict[str, Choice] = {}
    figures: Figures | None = None
    for set_name, (_, languages) in SETS.items():
        measured_first = figures is None
        if measured_first:  # the first set (English, which both engines read) gives the figures auto uses
            for kind in KINDS:
                engines_run(set_name, kind)
            figures = figures_of(cells, command)
        picks[set_name] = choose_for_request(readable, languages, explicit_languages=True, figures=figures)
        for repeat in range(args.repeat):  # the engines and auto one after the other, kind by kind
            for kind in KINDS:
                if not (measured_first and repeat == 0):
                    engines_run(set_name, kind)
                auto_run(set_name, kind)
                print(set_name, kind, f"run {repeat + 1} done", file=sys.stderr, flush=True)
    for set_name, (_, languages) in SETS.items():  # the requested languages alone, as lang_strict=true reads
        if with_latin(languages, readable["tesseract"]) != languages:
            for kind in ("clean", "photo"):
                cell = cells.setdefault((STRICT, set_name, kind), Cell())
                measure(cell, plain["tesseract"], images[set_name, kind], references[set_name], languages, workers)
    layout = layout_section(engines, args.layout_pages, tessdata, command)
    for engine in engines.values():
        engine.close()
    detector.close()
    load_after = os.getloadavg()[0]

    lines = [
        f"Machine: {cores} cores ({platform.processor() or platform.machine()}), Python {sys.version.split()[0]}; "
        f"{workers} pages at a time (one thread each), engines called in-process without HTTP. {args.pages} A4 pages "
        f"per set and kind, 150 dpi, {LINES_PER_PAGE} lines of 24 px DejaVu Sans; the best of {args.repeat} runs, "
        f"engines and auto taking turns kind by kind. Load average {load_before:.1f} before and {load_after:.1f} "
        "after (this run included): the machine is shared with other sessions' work, so wall-clock pages/s swing "
        "by a third from run to run; CPU seconds per page (this process, all threads) do not, and are what the "
        "time goal is checked on.",
        "",
        "Engines read pages as they lie; `auto` is the service's path: the engine it picks, with pages that do "
        "not read upright turned by Tesseract's orientation detection (OSD) and read again. Each cell: pages/s · "
        "CPU s/page · CER (character error rate against the generated text, mean over the pages). pp-ocr reads "
        "no Cyrillic, so it is no candidate for the Russian sets.",
        "",
        "| Pages (lang) | Kind | pp-ocr | tesseract | auto picks | auto | OSD ran on "
        "| auto: within 1.25x the faster engine's time and 0.5 pt of the best CER |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def shown(cell: Cell) -> str:
        return f"{cell.rate:.2f} · {cell.cpu_per_page:.2f} · {percent(cell.cer)}"

    failures = []
    for set_name, (_, languages) in SETS.items():
        choice = picks[set_name]
        for kind in KINDS:
            row = [f"{set_name} ({','.join(languages)})", kind]
            candidates = [cells[name, set_name, kind] for name in ENGINES if (name, set_name, kind) in cells]
            row += [shown(cells[name, set_name, kind]) if (name, set_name, kind) in cells else "—" for name in ENGINES]
            auto = cells["auto", set_name, kind]
            row += [f"{choice.engine} ({','.join(choice.languages)})", shown(auto), f"{auto.osd}/{args.pages}"]
            if kind in UPRIGHT:
                cpu = auto.cpu_per_page / min(cell.cpu_per_page for cell in candidates)
                wall = max(cell.rate for cell in candidates) / auto.rate
                worse = auto.cer - min(cell.cer for cell in candidates)
                ok = cpu <= 1.25 and worse <= CER_TOLERANCE
                row.append(f"{'yes' if ok else 'NO'}: CPU {cpu:.2f}x (wall {wall:.2f}x), CER {worse * 100:+.1f} pt")
                if not ok:
                    failures.append(f"{set_name} {kind}")
            else:
                clean = cells["auto", set_name, "clean"]
                row.append(f"turned pages: {auto.cpu_per_page / clean.cpu_per_page:.1f}x the CPU of upright ones")
            lines.append("| " + " | ".join(row) + " |")
    figures = figures_of(cells, command)  # the best rates of every run: what auto will choose with from now on
    for set_name, (_, languages) in SETS.items():
        settled = choose_for_request(readable, languages, explicit_languages=True, figures=figures)
        if settled.engine != picks[set_name].engine:
            failures.append(f"{set_name}: with every run counted auto picks {settled.engine}, not the one measured")
        picks[set_name] = settled
    upright_osd = sum(cells["auto", set_name, kind].osd for set_name in SETS for kind in UPRIGHT)
    upright_pages = len(SETS) * len(UPRIGHT) * args.pages
    osd_ms = detector.seconds / max(1, detector.calls) * 1000
    osd_cpu_ms = detector.cpu_seconds / max(1, detector.calls) * 1000
    strict_rows = [
        f"{set_name} {kind}: CER {percent(cells[STRICT, set_name, kind].cer)} with `lang_strict=true` "
        f"({cells[STRICT, set_name, kind].cpu_per_page:.2f} CPU s/page) vs "
        f"{percent(cells['tesseract', set_name, kind].cer)} with English added "
        f"({cells['tesseract', set_name, kind].cpu_per_page:.2f} CPU s/page)"
        for set_name in SETS
        for kind in ("clean", "photo")
        if (STRICT, set_name, kind) in cells
    ]
    lines += [
        "",
        f"`auto` met both goals on every upright kind of page: {'NO: ' + ', '.join(failures) if failures else 'yes'}. "
        f"Why it picks as it does (the reason `/health` and each result show): {picks['English'].reason}.",
        "",
        f"Orientation detection (OSD) took {osd_cpu_ms:.0f} ms of CPU a page on average ({osd_ms:.0f} ms wall; "
        f"{detector.calls} pages, warm-up included). It runs only on pages whose first reading does not look "
        f"upright (confidence below {UPRIGHT_CONFIDENCE:.2f}, or most text not in horizontal lines): it ran on "
        f"{upright_osd} of the {upright_pages} upright pages above, which therefore pay nothing for it; a turned "
        "page costs a wasted first reading, OSD and a second reading.",
        "",
        "Latin words in Russian text, Tesseract (`lang=ru` reads `rus+eng` unless `lang_strict=true`): "
        + "; ".join(strict_rows)
        + ".",
        "",
        f"Command: `{command}` (also rewrites `app/engines/measured.json`, the figures `auto` chooses with).",
    ]
    report = "\n".join(lines)
    print(report)
    print(layout)
    if args.write:
        write_section(args.write, "engines", report)
        write_section(args.write, "layout", layout)
        FIGURES_PATH.write_text(figures.to_json(), encoding="utf-8")


def layout_section(engines: dict[str, OcrEngine], count: int, tessdata: Path | None, command: str) -> str:
    """The layout kinds (:mod:`bench_layout`) on ``engines`` and on Tesseract ordered by the XY-cut."""
    xy_cut = TesseractEngine(tessdata, parallel=1, default_languages=("ru", "en"))
    xy_cut.line_order = "lines"
    xy_cut.load()
    readable = {name: engine.languages for name, engine in engines.items()}
    readable[bench_layout.XY_CUT] = xy_cut.languages

    def reads(name: str, languages: tuple[str, ...]) -> bool:
        known = readable[name]
        return known is None or set(languages) <= known

    began = time.perf_counter()
    table = bench_layout.report({**engines, bench_layout.XY_CUT: xy_cut}, count, reads)
    xy_cut.close()
    cores = len(os.sched_getaffinity(0))
    return "\n".join(
        [
            f"Machine: {cores} cores ({platform.processor() or platform.machine()}), Python {sys.version.split()[0]}; "
            f"one page at a time, engines in-process as the service runs them (tables found and read as cells, "
            f"lines cut at gutters, grouped and ordered, look-alikes put right). {count} generated A4 pages (150 dpi) "
            "per kind, varied in font (DejaVu Sans, Serif), size (18-26 px), column gap and table shape; "
            f"'scanned': blurred, 1 degree askew, JPEG. {time.perf_counter() - began:.0f} s in all, load average "
            f"{os.getloadavg()[0]:.1f} (a shared machine: wall seconds swing, CPU seconds less).",
            "",
            "CER: character error rate of the page text in reading order against the text as drawn (mean over the "
            "pages). Before the layout step: PP-OCR's lines top to bottom, Tesseract's in its own order, no cells. "
            "Table cells exact: the share of drawn cells whose text came back as drawn (spaces aside). CPU s/page "
            "before: the engine alone on the same pages in the same run (what the layout step adds is the difference). "
            f"`{bench_layout.XY_CUT}`: Tesseract's lines ordered by the XY-cut rather than by Tesseract.",
            "",
            table,
            "",
            f"Command: `{command}` (or `--only-layout` for this section alone).",
        ]
    )


def layout_only(count: int, write: Path | None) -> None:
    tessdata = find_tessdata()
    engines: dict[str, OcrEngine] = {
        "pp-ocr": PpOcrEngine(parallel=1, threads=1),  # one thread a page, as the service runs it
        "tesseract": TesseractEngine(tessdata, parallel=1, default_languages=("ru", "en")),
    }
    for engine in engines.values():
        engine.load()
    command = f".venv/bin/python scripts/bench_engines.py --only-layout --layout-pages {count} --write BENCHMARKS.md"
    section = layout_section(engines, count, tessdata, command)
    for engine in engines.values():
        engine.close()
    print(section)
    if write:
        write_section(write, "layout", section)


if __name__ == "__main__":
    main()
