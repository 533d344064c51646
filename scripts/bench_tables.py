#!/usr/bin/env python3
"""Ruled-table detection: this service's OpenCV grid reader (``app/layout/tables.py``) against img2table.

Usage (img2table is no dependency of the service; it is put in a folder of its own for this comparison):
    .venv/bin/pip install --target /tmp/img2table --no-deps img2table xlsxwriter beautifulsoup4 soupsieve
    PYTHONPATH=/tmp/img2table .venv/bin/python scripts/bench_tables.py [--write BENCHMARKS.md]

Pages: generated ruled tables (four invoice shapes of 5 to 11 rows in DejaVu Sans and Serif, 18-22 px, rules
1 or 2 px; one table with cells merged across rows and columns), each clean, scanned (blurred, 1 degree askew,
JPEG) and photographed (perspective, uneven light, noise). A grid is exact when exactly one table is found and
its cells (row, column, row span, column span) are the drawn ones. Only the structure is compared: cell text is
read by the service's engines (BENCHMARKS.md, layout section), img2table runs without OCR.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import write_section  # noqa: E402
from PIL import Image  # noqa: E402

from app.layout.tables import find_tables  # noqa: E402
from tests.support.documents import blurred, image_bytes, jpeg_artefacts, photographed, rotated  # noqa: E402
from tests.support.layout_pages import LayoutPage, invoice_rows, table_page  # noqa: E402

Grid = list[tuple[int, int, int, int]]


def pages() -> Iterator[tuple[str, LayoutPage]]:
    for seed in range(4):
        face = ("DejaVuSans.ttf", "DejaVuSerif.ttf")[seed % 2]
        rows = invoice_rows(4 + seed * 2, seed=seed)
        size = (18, 20, 22, 19)[seed]
        yield f"invoice {seed + 1}", table_page(rows, font_size=size, font_name=face, rule=1 + seed % 2)
    merged: list[list[str | None]] = [
        ["Region", "2023", None, "2024", None],
        [None, "Q1", "Q2", "Q1", "Q2"],
        ["North", "120", "135", "140", "150"],
        ["South", "98", "101", "110", "117"],
    ]
    yield "merged cells", table_page(merged, spans={(0, 0): (2, 1), (0, 1): (1, 2), (0, 3): (1, 2)})


def ours(image: Image.Image) -> Grid | None:
    tables = find_tables(image)
    if len(tables) != 1:
        return None
    return sorted((c.row, c.col, c.row_span, c.col_span) for c in tables[0].cells)


def img2table(image: Image.Image) -> Grid | None:
    from img2table.document import Image as Document

    tables = Document(src=image_bytes(image, "PNG")).extract_tables(
        ocr=None, implicit_rows=False, borderless_tables=False
    )
    if len(tables) != 1:
        return None
    spans: dict[tuple[int, int, int, int], list[int]] = {}  # a merged cell repeats in every position it covers
    for r, row in tables[0].content.items():
        for c, cell in enumerate(row):
            key = (cell.bbox.x1, cell.bbox.y1, cell.bbox.x2, cell.bbox.y2)
            first = spans.setdefault(key, [r, c, r, c])
            first[2], first[3] = max(first[2], r), max(first[3], c)
    return sorted((a, b, c - a + 1, d - b + 1) for a, b, c, d in spans.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", type=Path, help="replace the tables section of this Markdown file")
    args = parser.parse_args()
    readers = {"OpenCV grid (app/layout/tables.py)": ours, "img2table 2.0 (no OCR)": img2table}
    exact = dict.fromkeys(readers, 0)
    seconds = dict.fromkeys(readers, 0.0)
    rows = []
    count = 0
    for name, page in pages():
        want = sorted((c.row, c.col, c.row_span, c.col_span) for c in page.tables[0])
        variants = {
            "clean": page.image,
            "scanned": jpeg_artefacts(rotated(blurred(page.image), 1.0)),
            "photographed": photographed(page.image, seed=3),
        }
        for noise, image in variants.items():
            count += 1
            marks = []
            for reader, read in readers.items():
                began = time.perf_counter()
                found = read(image)
                seconds[reader] += time.perf_counter() - began
                exact[reader] += found == want
                marks.append("exact" if found == want else ("no single table" if found is None else "wrong grid"))
            rows.append(f"| {name} | {noise} | " + " | ".join(marks) + " |")
    summary = " | ".join(f"{exact[r]}/{count} exact, {seconds[r] / count * 1000:.0f} ms/page" for r in readers)
    report = "\n".join(
        [
            "Ruled-table structure on generated pages (the drawn grid is the truth): this service's reader and "
            "img2table's, both OpenCV without model weights. Wall time per page on this shared 2-core machine.",
            "",
            "| Table | Page | " + " | ".join(readers) + " |",
            "|---|---|" + "---|" * len(readers),
            *rows,
            "| **all** | | " + summary + " |",
            "",
            "Command: `.venv/bin/pip install --target /tmp/img2table --no-deps img2table xlsxwriter beautifulsoup4 "
            "soupsieve && PYTHONPATH=/tmp/img2table .venv/bin/python scripts/bench_tables.py --write BENCHMARKS.md`",
        ]
    )
    print(report)
    if args.write:
        write_section(args.write, "tables", report)


if __name__ == "__main__":
    main()
