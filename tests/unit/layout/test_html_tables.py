"""HTML tables (as PaddleOCR-VL writes them) -> rows and cells."""

from __future__ import annotations

from app.layout.html_tables import MAX_GRID, parse_html_table, parse_html_tables, strip_tags, table_rows


def test_simple_table() -> None:
    table = parse_html_table("<table><tr><td>Name</td><td>Qty</td></tr><tr><td>Apple</td><td>3</td></tr></table>")
    assert table is not None
    assert (table.rows, table.cols) == (2, 2)
    assert table_rows(table) == [["Name", "Qty"], ["Apple", "3"]]


def test_merged_cells_take_their_places() -> None:
    html = (
        "<table><thead><tr><th rowspan='2'>Region</th><th colspan=\"2\">Sales<br/>2024</th></tr>"
        "<tr><th>Q1</th><th>Q2</th></tr></thead>"
        "<tbody><tr><td>North</td><td>1 200</td><td>1 350</td></tr></tbody></table>"
    )
    table = parse_html_table(html)
    assert table is not None
    assert (table.rows, table.cols) == (3, 3)
    cells = {(c.row, c.col): c for c in table.cells}
    assert (cells[0, 0].row_span, cells[0, 0].text) == (2, "Region")
    assert (cells[0, 1].col_span, cells[0, 1].text) == (2, "Sales\n2024")
    assert cells[1, 1].text == "Q1" and cells[1, 2].text == "Q2"  # right of the merged cell above
    assert [cells[2, c].text for c in range(3)] == ["North", "1 200", "1 350"]


def test_unclosed_tags_entities_and_nested_tables() -> None:
    html = "<table><tr><td>a &amp; b<td>x<table><tr><td>in</td><td>ner</td></tr></table></tr><tr><td>c</table>"
    table = parse_html_table(html)
    assert table is not None
    assert table_rows(table) == [["a & b", "x in ner"], ["c", ""]]


def test_several_tables_and_none() -> None:
    assert parse_html_tables("no table here") == []
    assert parse_html_table("<table></table>") is None
    assert len(parse_html_tables("<table><tr><td>1</td></tr></table> text <TABLE><TR><TD>2</TD></TR></TABLE>")) == 2


def test_hostile_spans_build_no_huge_grid() -> None:
    cells = "".join(f"<td colspan=100000 rowspan=100000>{n}</td>" for n in range(200))
    table = parse_html_table(f"<table><tr>{cells}</tr>" + "<tr><td>x</td></tr>" * 50 + "</table>")
    assert table is not None
    assert table.rows * table.cols <= MAX_GRID * 2
    assert len(table.cells) == 250


def test_strip_tags() -> None:
    assert strip_tags("<table><tr><td>A</td><td>B</td></tr><tr><td>C</td></tr></table>") == "A B\nC"
    assert strip_tags("plain < text") == "plain < text"
