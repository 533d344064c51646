"""The benchmarks' sections of BENCHMARKS.md: a section rewritten whole, or one that keeps its earlier runs."""

from __future__ import annotations

from pathlib import Path

from scripts.bench import with_history, write_section

OLD_RUNS = """### Run 2: faster pages (current code, 2026-12-01 10:00, main at abc1234)

| table | 2 |

What it means: read by hand.

### Run 1: the first (2026-11-30 09:00, main at 0123abc)

| table | 1 |"""


def document(section: str) -> str:
    other = "<!-- bench:other -->\nx\n<!-- /bench:other -->\n"
    return f"# Benchmarks\n\nintro\n\n<!-- bench:demo -->\n{section}\n<!-- /bench:demo -->\n\n{other}"


def test_a_section_without_a_title_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(document(OLD_RUNS))
    write_section(path, "demo", "| table | new |")
    assert path.read_text() == document("| table | new |")


def test_a_titled_run_goes_above_the_earlier_runs_which_stay_as_written(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(document("preamble of an older format\n\n" + OLD_RUNS))
    write_section(path, "demo", "| table | 3 |\n", title="cheaper arrays")
    text = path.read_text()
    section = text[text.index("<!-- bench:demo -->") : text.index("<!-- /bench:demo -->")]
    assert section.startswith("<!-- bench:demo -->\n### Run 3: cheaper arrays (current code, ")
    assert "\n\n| table | 3 |\n\n### Run 2: faster pages (2026-12-01 10:00, main at abc1234)" in section
    assert "What it means: read by hand." in section and "### Run 1: the first (2026-11-30 09:00" in section
    assert "preamble of an older format" not in section
    assert text.count("current code") == 1
    assert text.endswith("<!-- bench:other -->\nx\n<!-- /bench:other -->\n")  # other sections untouched


def test_the_first_run_of_a_section_is_run_1() -> None:
    assert with_history("body", "", "start", when="2026-12-07 00:00", commit="f00d") == (
        "### Run 1: start (current code, 2026-12-07 00:00, main at f00d)\n\nbody"
    )


def test_a_missing_section_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n")
    write_section(path, "demo", "rows", title="first")
    text = path.read_text()
    assert "<!-- bench:demo -->\n### Run 1: first (current code, " in text and text.endswith(
        "rows\n<!-- /bench:demo -->\n"
    )
