"""The request model of POST /ocr and /jobs: every field read the same from a form's text and from JSON values, each
error one of the two the API maps (field_too_large, invalid) with a message an answer can carry."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.intake.request import FIELD_LIMITS, OUTPUTS, SOURCE_FIELDS, DocumentRequest

CONTEXT = {"max_dpi": 300}


def read(**fields: Any) -> DocumentRequest:
    return DocumentRequest.model_validate(fields, context=CONTEXT)


def first_error(**fields: Any) -> tuple[str, str, str]:
    """(field, error type, message) of the first error."""
    with pytest.raises(ValidationError) as info:
        read(**fields)
    error = info.value.errors()[0]
    return str(error["loc"][0]), error["type"], error["msg"]


def test_absent_and_blank_mean_the_defaults() -> None:
    empty = read()
    blank = read(**{name: "  " for name in DocumentRequest.model_fields})
    nulls = read(**dict.fromkeys(DocumentRequest.model_fields))
    for request in (empty, blank, nulls):
        assert request.pages is request.dpi is request.lang is request.engine is None
        assert (request.lang_strict, request.output, request.return_content) == (False, "json", True)
        assert request.text_sources() == [] and request.languages is None


def test_form_text_and_json_values_read_alike() -> None:
    form = read(dpi="200", lang_strict="yes", return_content="off", pages="2", output=" Markdown ")
    json = read(dpi=200.0, lang_strict=True, return_content=False, pages=2, output="markdown")
    assert form == json
    assert (json.dpi, json.lang_strict, json.return_content) == (200, True, False)
    assert (json.pages, json.output) == ("2", "markdown")


def test_options_are_parsed_once_here() -> None:
    request = read(lang="rus+eng", engine=" AUTO ", export_name="  Contract 7 ", url=" https://a.example/x.pdf ")
    assert request.lang == "ru,en" and request.languages == ("ru", "en")
    assert request.engine is None  # auto
    assert request.export_name == "Contract 7"
    assert request.text_sources() == [("url", "https://a.example/x.pdf")]
    assert read(engine="PP-OCR").engine == "pp-ocr"
    assert read(file="QUJD", image_url="https://x").text_sources() == [("file", "QUJD"), ("image_url", "https://x")]


@pytest.mark.parametrize(
    "fields,field,message",
    [
        ({"dpi": "high"}, "dpi", "must be a whole number"),
        ({"dpi": 150.5}, "dpi", "must be a whole number"),
        ({"dpi": True}, "dpi", "must be a whole number"),
        ({"dpi": [150]}, "dpi", "must be a whole number"),
        ({"dpi": "10"}, "dpi", "must be between 50 and 300"),
        ({"dpi": 301}, "dpi", "must be between 50 and 300"),
        ({"lang_strict": "maybe"}, "lang_strict", "must be true or false"),
        ({"return_content": 2}, "return_content", "must be true or false"),
        ({"output": "xml"}, "output", "must be one of " + ", ".join(OUTPUTS)),
        ({"pages": ["1"]}, "pages", "must be a string"),
        ({"lang": {"a": 1}}, "lang", "must be a string"),
        ({"lang": "r!"}, "lang", "'r!' is not a language code; use ISO 639-1 codes such as 'ru,en'"),
        ({"export_name": "x" * 201}, "export_name", "at most 200 characters"),
        ({"export_name": "!!!"}, "export_name", "needs a letter or a digit"),
        ({"file": 12}, "file", "must be a string"),
        ({"url": ["https://x"]}, "url", "must be a string"),
        ({"engine": "x\ud800"}, "engine", "must be text: it holds a lone UTF-16 surrogate"),
    ],
)
def test_bad_values_name_their_field(fields: dict[str, Any], field: str, message: str) -> None:
    assert first_error(**fields) == (field, "invalid", message)


@pytest.mark.parametrize("name", sorted(FIELD_LIMITS))
def test_every_limit_is_checked_before_the_value_is_parsed(name: str) -> None:
    limit = FIELD_LIMITS[name]
    with pytest.raises(ValidationError) as info:
        read(**{name: "9" * (limit + 1)})
    (error,) = info.value.errors()
    assert error["type"] == "field_too_large" and error["ctx"] == {"limit": limit} and error["loc"] == (name,)


def test_dpi_range_follows_max_dpi() -> None:
    assert DocumentRequest.model_validate({"dpi": 600}, context={"max_dpi": 600}).dpi == 600
    assert first_error(dpi=600)[2] == "must be between 50 and 300"


def test_the_first_error_is_the_first_field_in_order() -> None:
    assert first_error(url=[1], dpi="x", pages=["1"])[0] == "pages"


text_values = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
json_values = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats() | text_values
any_values = json_values | st.lists(json_values, max_size=2) | st.dictionaries(st.text(max_size=3), json_values)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(DocumentRequest.model_fields)), any_values))
def test_any_values_are_a_request_or_an_error_the_api_maps(fields: dict[str, Any]) -> None:
    try:
        request = read(**fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        assert error["type"] in ("invalid", "field_too_large"), error
        assert error["loc"][0] in DocumentRequest.model_fields
        error["msg"].encode("utf-8")  # the JSON answer can carry it
    else:
        assert request.dpi is None or 50 <= request.dpi <= 300
        assert all(isinstance(value, str) and value for _, value in request.text_sources())
        for name in ("pages", "lang", "engine", "filename", "export_name"):
            value = getattr(request, name)
            assert value is None or (value == value.strip() and value.encode("utf-8"))


@given(st.integers(-1000, 1000))
def test_a_json_number_and_its_text_give_the_same_dpi(dpi: int) -> None:
    def outcome(value: Any) -> object:
        try:
            return read(dpi=value).dpi
        except ValidationError as exc:
            return exc.errors()[0]["msg"]

    assert outcome(dpi) == outcome(str(dpi)) == outcome(float(dpi)) == outcome(f" {dpi} ")


def test_sources_are_the_four_fields() -> None:
    assert SOURCE_FIELDS == ("file", "image_base64", "url", "image_url")
    assert set(SOURCE_FIELDS) < set(DocumentRequest.model_fields)
