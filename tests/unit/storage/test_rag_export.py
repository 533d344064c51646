"""The knowledge-base export's names, content and settings (pure functions; no server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.schemas import DocumentResult, PageResult, Timings
from app.settings import Settings
from app.storage.rag_export import (
    EXPORT_NAME_MAX,
    MARK_EVERY_CHARS,
    check_export_name,
    display_name,
    export_file_name,
    page_mark,
    render_export,
    safe_stem,
    strip_images,
)
from app.storage.s3.outbox import Entry, Item, Outbox

JOB = "0123456789abcdef0123456789abcdef"  # pragma: allowlist secret
MARK = re.compile(r"^--- Страница (\d+) / (\d+)( \(продолжение\))? · (.+) ---$")


def page(number: int, markdown: str = "", text: str = "", error: str | None = None) -> PageResult:
    return PageResult(index=number, width=10, height=10, blocks=[], markdown=markdown, text=text, error=error)


def document(pages: list[PageResult], page_count: int | None = None) -> DocumentResult:
    return DocumentResult(
        id=JOB,
        filename="scan.pdf",
        content_type="application/pdf",
        engine="pp-ocr",
        page_count=page_count or len(pages),
        pages=pages,
        markdown="",
        text="",
        timings=Timings(decode_ms=0, ocr_ms=0, total_ms=0),
    )


def marks(text: str) -> list[tuple[int, int, bool, str]]:
    found = [MARK.match(line) for line in text.splitlines()]
    return [(int(m[1]), int(m[2]), bool(m[3]), m[4]) for m in found if m]


# --- names ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "stem"),
    [
        ("Договор поставки №5 (копия)", "Договор_поставки_5_копия"),
        ("invoice 2024-117", "invoice_2024-117"),
        ("../../etc/passwd", "etc_passwd"),
        ("a\nb\tc\x00d", "a_b_c_d"),
        ("  ...hidden.  ", "hidden"),
        ("x__y--z..w", "x_y-z.w"),
        ("Ёлка ёж", "Ёлка_ёж"),
        ("///", ""),
        ("e\u0301te", "éte"),  # NFC: a combining accent joins its letter
    ],
)
def test_safe_stem_keeps_letters_of_any_script_and_nothing_unsafe(text: str, stem: str) -> None:
    assert safe_stem(text) == stem
    assert re.fullmatch(r"[\w.\-]*", stem)


def test_safe_stem_is_bounded() -> None:
    assert len(safe_stem("я" * 500)) == 100
    assert safe_stem("ab." + "c" * 200, limit=3) == "ab"  # no trailing dot after the cut


def test_automatic_names_keep_the_document_name_and_add_the_job_id() -> None:
    assert export_file_name(JOB, "Договор поставки №5.PDF", None, "md") == f"Договор_поставки_5_{JOB}.md"
    assert export_file_name(JOB, "scan.png", None, "txt") == f"scan_{JOB}.txt"
    assert export_file_name(JOB, "report.v2", None, "md") == f"report.v2_{JOB}.md"  # not a document suffix
    assert export_file_name(JOB, "C:\\scans\\March/act.tiff", None, "md") == f"act_{JOB}.md"  # no client folders
    assert export_file_name(JOB, None, None, "md") == f"document_{JOB}.md"
    assert export_file_name(JOB, "№№.pdf", None, "md") == f"document_{JOB}.md"
    assert export_file_name(JOB, ".pdf", None, "md") == f"pdf_{JOB}.md"


def test_a_stable_name_has_no_job_id() -> None:
    assert export_file_name(JOB, "scan.pdf", "contracts/2024/act 5", "md") == "contracts_2024_act_5.md"
    assert export_file_name(JOB, "scan.pdf", "contract-42", "txt") == "contract-42.txt"


def test_export_name_is_checked() -> None:
    assert check_export_name(None) is None and check_export_name("   ") is None
    assert check_export_name("  contract 42 ") == "contract 42"
    assert check_export_name("x" * EXPORT_NAME_MAX) == "x" * EXPORT_NAME_MAX
    with pytest.raises(ValueError, match="at most 200"):
        check_export_name("x" * (EXPORT_NAME_MAX + 1))
    with pytest.raises(ValueError, match="letter or a digit"):
        check_export_name("/// ...")


def test_display_name_is_one_bounded_line() -> None:
    assert display_name(JOB, "a\nfake ---\r\nmark.pdf", None) == "a fake --- mark.pdf"
    assert display_name(JOB, "scan.pdf", "contracts/act 5") == "contracts/act 5"
    assert display_name(JOB, None, None) == "документ 01234567"
    long = display_name(JOB, "д" * 300, None)
    assert len(long) == 80 and long.endswith("…")


# --- content --------------------------------------------------------------------------------------------------
def test_markdown_export_marks_every_page_with_number_total_and_name() -> None:
    pages = [page(1, "# Акт\n\nПервая страница."), page(3, "| a | b |\n|---|---|\n| 1 | 2 |"), page(4, error="x")]
    text = render_export(document(pages, page_count=5), "Акт 5.pdf", "md")
    assert text.startswith("# Акт 5.pdf\n\n")
    assert f"страниц в документе 5, распознано 3; задание {JOB}" in text
    assert marks(text) == [(1, 5, False, "Акт 5.pdf"), (3, 5, False, "Акт 5.pdf"), (4, 5, False, "Акт 5.pdf")]
    first, third, fourth = text.split(page_mark(1, 5, "Акт 5.pdf"))[1].split("--- Страница")[:3]
    assert "# Акт" in first and "Первая страница." in first
    assert "| 1 | 2 |" in third  # the table is kept as Markdown
    assert "(страница не распознана)" in fourth
    assert text.endswith("(страница не распознана)\n")


def test_text_export_uses_the_plain_text_of_each_page() -> None:
    pages = [page(1, markdown="\\# not a heading", text="# not a heading"), page(2, text="line two")]
    text = render_export(document(pages), "scan.pdf", "txt")
    assert text.splitlines()[0] == "scan.pdf" and "\\#" not in text
    assert marks(text) == [(1, 2, False, "scan.pdf"), (2, 2, False, "scan.pdf")]
    assert "# not a heading" in text and "line two" in text


def test_image_references_are_dropped_but_alt_text_stays() -> None:
    markdown = (
        'Before\n\n<div style="text-align: center;"><img src="imgs/page1_x.jpg" alt="Image" width="50%" /></div>'
        "\n\n![Схема склада](imgs/page1_y.jpg) after"
    )
    assert strip_images(markdown) == "Before\n\n\n\nСхема склада after"
    assert "imgs/" not in render_export(document([page(1, markdown)]), "scan.pdf", "md")


def long_page(number: int, lines: int = 120) -> tuple[str, str]:
    """(markdown, text) of a page with numbered lines in paragraphs of four."""
    rows = [f"p{number}-line{k} " + "слово " * 8 for k in range(lines)]
    paragraphs = ["\n".join(rows[k : k + 4]) for k in range(0, lines, 4)]
    return "\n\n".join(paragraphs), "\n".join(rows)


@pytest.mark.parametrize("fmt", ["md", "txt"])
def test_every_chunk_of_a_splitter_can_say_its_document_and_page(fmt: str) -> None:
    """Any stretch of the export as long as a mark interval (plus a line and a mark) holds a mark, and the
    lines after a mark belong to the mark's page: a chunk of that size can name its document and page."""
    pages = []
    for number in (1, 2, 3):
        markdown, text = long_page(number, lines=120 if number != 2 else 3)  # page 2 is short
        pages.append(page(number, markdown, text))
    export = render_export(document(pages, page_count=3), "Отчёт склада", fmt)  # type: ignore[arg-type]
    found = marks(export)
    assert [m[0] for m in found if not m[2]] == [1, 2, 3]
    assert any(m[2] for m in found if m[0] == 1) and not any(m[2] for m in found if m[0] == 2)
    window = MARK_EVERY_CHARS + 200
    for start in range(0, len(export) - window, 37):
        chunk = export[start : start + window]
        chunk_marks = [line for line in chunk.splitlines() if MARK.match(line)]
        assert chunk_marks, f"no mark in chunk at {start}"
        assert all("· Отчёт склада ---" in line for line in chunk_marks)
    current = 0
    for line in export.splitlines():
        mark = MARK.match(line)
        if mark:
            current = int(mark[1])
        elif line.startswith("p"):
            assert line.startswith(f"p{current}-"), (current, line)


def test_marks_never_split_tables_or_code() -> None:
    rows = "\n".join(f"| {k} | {'значение ' * 10} |" for k in range(60))
    html = "<table>" + "".join(f"<tr><td>{k}</td><td>{'ячейка ' * 10}</td></tr>\n" for k in range(60)) + "</table>"
    code = "```\n" + "\n".join("x = 1  # " + "c" * 60 for _ in range(60)) + "\n```"
    for body in (rows, html, code):
        assert len(body) > 2 * MARK_EVERY_CHARS
        export = render_export(document([page(1, body + "\n\nпосле")]), "t", "md")
        start = export.index(body.splitlines()[0])
        end = start + len(body)
        assert export[start:end] == body  # nothing put in
        assert page_mark(1, 1, "t", continued=True) in export[end : export.index("после")]  # but right after it


# --- settings -------------------------------------------------------------------------------------------------
def settings(**values: str) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_export_settings_defaults_and_folder_checks() -> None:
    default = settings()
    assert default.rag_export_prefix == "" and default.rag_export_format == "md" and not default.rag_export_keep
    assert settings(rag_export_prefix=" /kb/docs/ ").rag_export_prefix == "kb/docs"
    assert settings(rag_export_prefix="ocr-results/kb").rag_export_prefix == "ocr-results/kb"
    assert settings(rag_export_prefix="База_знаний").rag_export_prefix == "База_знаний"
    for bad in ("a/../b", "a b", "kb//docs", "./kb"):
        with pytest.raises(ValidationError, match="folder path"):
            settings(rag_export_prefix=bad)
    with pytest.raises(ValidationError, match="rag_export_format"):
        settings(rag_export_format="pdf")


@pytest.mark.parametrize(
    ("export", "results"),
    [("ocr-results", "ocr-results"), ("ocr", "ocr/results"), ("ocr-results/jobs", "ocr-results"),
     ("ocr-results/2026-01-02", "ocr-results"), ("jobs", ""), ("2026-01-02/kb", "")],
)  # fmt: skip
def test_the_export_folder_holds_nothing_of_the_s3_mirror(export: str, results: str) -> None:
    with pytest.raises(ValidationError, match="RAG_EXPORT_PREFIX"):
        settings(rag_export_prefix=export, cloudru_s3_prefix=results)
    assert settings(rag_export_prefix="kb", cloudru_s3_prefix=results).rag_export_prefix == "kb"


# --- outbox ---------------------------------------------------------------------------------------------------
def test_a_delete_replaces_a_pending_upload_of_its_key_and_survives_a_restart(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / ".outbox", tmp_path)
    outbox.load()
    put = Item(".rag-export/x.md", "kb/x.md", "text/markdown", owner=JOB, version="v1")
    outbox.add(JOB, [Item("a/result.json", "r/result.json", "application/json", True), put])
    assert outbox.upload_pending(JOB, "kb/x.md") and not outbox.upload_pending(JOB, "kb/y.md")
    outbox.add(JOB, [Item("", "kb/x.md", "", delete=True, owner=JOB)])
    assert not outbox.upload_pending(JOB, "kb/x.md")
    again = Outbox(tmp_path / ".outbox", tmp_path)
    assert again.load() == 1
    items = again.entries[JOB].items
    assert [(i.key, i.delete, i.owner) for i in items] == [("r/result.json", False, ""), ("kb/x.md", True, JOB)]
    old = Entry.from_json(b'{"job_id": "%s", "created_at": 1, "items": [{"file": "f", "key": "k", '
                          b'"content_type": "t", "completes_result": false}]}' % JOB.encode())  # fmt: skip
    assert old.items[0] == Item("f", "k", "t")  # entries written before these fields still load
