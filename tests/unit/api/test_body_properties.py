"""Property tests for the JSON body reader: any JSON object within the limits comes back unchanged, and
any bytes at all are an object or a clean 4xx — never another exception, however deep or large."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.api.body import MAX_JSON_CONTAINERS, MAX_JSON_DEPTH, parse_json_object
from app.api.errors import http_status
from app.errors import ServiceError

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def outcome(body: bytes) -> dict[str, Any] | ServiceError:
    try:
        return parse_json_object(body)
    except ServiceError as exc:
        assert 400 <= http_status(exc) < 500, exc
        return exc


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=10), values, max_size=6))
def test_objects_within_the_limits_round_trip(document: dict[str, Any]) -> None:
    encoded = json.dumps(document).encode()
    result = outcome(encoded)
    if encoded.count(b"[") + encoded.count(b"{") <= MAX_JSON_CONTAINERS:  # brackets in strings count too
        assert result == document
    else:
        assert isinstance(result, ServiceError) and result.code == "invalid_json"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_are_an_object_or_a_4xx(body: bytes) -> None:
    result = outcome(body)
    assert isinstance(result, (dict, ServiceError))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='{}[]",:0123456789.eE+-tfnulrsaIiNy \\', max_size=300))
def test_json_like_text_is_an_object_or_a_4xx(text: str) -> None:
    assert isinstance(outcome(text.encode()), (dict, ServiceError))


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, MAX_JSON_CONTAINERS + 1, 10_000, 1_000_000])
def test_deep_nesting_is_422(depth: int) -> None:
    result = outcome(b'{"a": ' + b"[" * depth + b"]" * depth + b"}")
    assert isinstance(result, ServiceError) and result.code == "invalid_json"


def test_nesting_at_the_depth_limit_is_accepted() -> None:
    depth = MAX_JSON_DEPTH - 1  # plus the outer object
    assert outcome(b'{"a": ' + b"[" * depth + b"]" * depth + b"}") == {"a": json.loads("[" * depth + "]" * depth)}


@pytest.mark.parametrize("literal", ["1e400", "-1e999", "NaN", "Infinity", "-Infinity", "9" * 4301, "0." + "1" * 50])
def test_numbers_out_of_range_are_422(literal: str) -> None:
    result = outcome(f'{{"n": {literal}}}'.encode())
    assert isinstance(result, ServiceError) and result.code == "invalid_json", result


def test_large_numbers_within_the_limit_parse_exactly() -> None:
    result = outcome(b'{"n": 1234567890123456789012345678901234567890, "f": 1.5e300}')
    assert result == {"n": 1234567890123456789012345678901234567890, "f": 1.5e300}
    assert isinstance(result, dict) and math.isfinite(result["f"])


def test_a_bom_and_a_large_string_are_fine() -> None:
    big = "A" * (9 * 1024 * 1024)  # spans several decode pieces
    assert outcome(("\ufeff" + json.dumps({"file": big, "s": "é€𝄞"})).encode()) == {"file": big, "s": "é€𝄞"}


def test_duplicate_keys() -> None:
    source = outcome(b'{"file": "a", "file": "b"}')
    assert isinstance(source, ServiceError) and (http_status(source), source.code) == (400, "several_sources")
    option = outcome(b'{"file": "a", "pages": "1", "pages": "2"}')
    assert isinstance(option, ServiceError) and option.code == "invalid_json" and "pages" in option.message
