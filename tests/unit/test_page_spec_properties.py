"""Property tests for the page-range parser: it selects exactly what the ranges say, or refuses with 422."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.api.errors import http_status
from app.documents import parse_page_spec
from app.errors import ServiceError

ranges = st.lists(st.tuples(st.integers(1, 60), st.integers(0, 10)), min_size=1, max_size=6)


@given(ranges, st.integers(1, 80))
def test_ranges_select_their_pages(parts: list[tuple[int, int]], count: int) -> None:
    spec = ",".join(f"{start}-{start + length}" if length else str(start) for start, length in parts)
    expected = sorted({n for start, length in parts for n in range(start, start + length + 1)})
    if expected[-1] > count:
        with pytest.raises(ServiceError) as info:
            parse_page_spec(spec, count)
        assert http_status(info.value) == 422
    else:
        assert parse_page_spec(spec, count) == expected


@given(st.text(max_size=40), st.integers(1, 500))
def test_any_text_is_a_selection_or_a_422(spec: str, count: int) -> None:
    try:
        pages = parse_page_spec(spec, count)
    except ServiceError as exc:
        assert http_status(exc) == 422 and exc.details["field"] == "pages"
    else:
        assert pages == sorted(set(pages)) and all(1 <= n <= count for n in pages)
        assert pages  # a selection is never empty


@given(st.integers(1, 500), st.integers(1, 500))
def test_open_ranges(start: int, count: int) -> None:
    if start <= count:
        assert parse_page_spec(f"{start}-", count) == list(range(start, count + 1))
        assert parse_page_spec(f"-{start}", count) == list(range(1, start + 1))
