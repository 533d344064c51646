"""Hostile input against the real server: every field has a size limit checked before it is parsed, JSON
structure and numbers are bounded, two document sources are refused, and /health stays fast while a
large request is handled. Each answer is a JSON error with the right status and code, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.api.body import MAX_FORM_FIELDS, MAX_JSON_DEPTH
from app.intake.request import FIELD_LIMITS
from tests.support.documents import text_pdf
from tests.support.faults import HealthProbe
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.integration

PDF = text_pdf(1)
PDF_B64 = base64.b64encode(PDF).decode()
JSON = {"content-type": "application/json"}


@pytest.fixture(autouse=True)
def still_ready(client: httpx.Client) -> Iterator[None]:
    yield
    assert client.get("/ready").status_code == 200


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    body = response.json()["error"]
    assert body["code"] == code, body
    return dict(body)


def paddlex_error(response: httpx.Response, status: int, text: str = "") -> None:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["errorCode"] == status and text in body["errorMsg"], body


def raw_json(client: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return client.post(path, content=body, headers=JSON)


def test_a_60_mb_pages_field_is_refused_without_stalling_health(client: httpx.Client, service: ServiceProcess) -> None:
    """The field that froze /health for 17.5 s: refused by its length, never parsed."""
    with HealthProbe(service.url) as probe:
        answer = client.post("/ocr", files={"file": ("d.pdf", PDF)}, data={"pages": "1," * 30_000_000})
    details = error(answer, 413, "field_too_large")["details"]
    assert details == {"field": "pages", "limit": FIELD_LIMITS["pages"]}
    assert probe.slowest_s < 1.0, sorted(probe.times)[-5:]


def test_a_large_json_pages_value_is_refused_without_stalling_health(
    client: httpx.Client, service: ServiceProcess
) -> None:
    body = json.dumps({"file": PDF_B64, "pages": "1-" + "9" * 40_000_000}).encode()
    with HealthProbe(service.url) as probe:
        answer = raw_json(client, "/ocr", body)
    assert error(answer, 413, "field_too_large")["details"]["field"] == "pages"
    assert probe.slowest_s < 1.0, sorted(probe.times)[-5:]


def test_a_json_body_of_millions_of_empty_lists_is_refused_before_parsing(
    client: httpx.Client, service: ServiceProcess
) -> None:
    body = b'{"file": "' + PDF_B64.encode() + b'", "x": [' + b"[]," * 7_000_000 + b"[]]}"  # 21 MB
    with HealthProbe(service.url) as probe:
        answer = raw_json(client, "/ocr", body)
    error(answer, 422, "invalid_json")
    assert probe.slowest_s < 1.0, sorted(probe.times)[-5:]


def test_a_json_body_of_millions_of_numbers_is_refused_before_parsing(client: httpx.Client) -> None:
    body = b'{"file": "' + PDF_B64.encode() + b'", "x": [' + b"1," * 7_000_000 + b"1]}"
    error(raw_json(client, "/ocr", body), 413, "too_many_fields")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 50, 100_000])
def test_deep_json_is_422(client: httpx.Client, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    message = error(raw_json(client, "/ocr", f'{{"file": "{PDF_B64}", "x": {nested}}}'.encode()), 422, "invalid_json")
    assert "nested" in message["message"] or "objects and arrays" in message["message"]


@pytest.mark.parametrize(
    "literal",
    ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "9" * 5000, "1" + "0" * 41, "1." + "0" * 100],
)
def test_numbers_out_of_range_are_422(client: httpx.Client, literal: str) -> None:
    body = f'{{"file": "{PDF_B64}", "dpi": {literal}}}'.encode()
    error(raw_json(client, "/ocr", body), 422, "invalid_json")


@pytest.mark.parametrize("value", ["1e400", "150.5", "nan", "-5", "9" * 20, " "])
def test_dpi_from_a_form_never_fails_the_server(client: httpx.Client, value: str) -> None:
    answer = client.post("/ocr", files={"file": ("d.pdf", PDF)}, data={"dpi": value})
    if value.strip():
        error(answer, 422, "invalid_dpi")
    else:
        assert answer.status_code == 200  # blank = the default


@pytest.mark.parametrize("value", [150.5, True, [150], {"v": 150}, 1e300])
def test_dpi_of_the_wrong_json_type_is_422(client: httpx.Client, value: Any) -> None:
    error(client.post("/ocr", json={"file": PDF_B64, "dpi": value}), 422, "invalid_dpi")


@pytest.mark.parametrize("spec", ["1-" + "9" * 4000, "9" * 4096, "0" * 4000 + "2"])
def test_page_numbers_of_any_length_are_422(client: httpx.Client, spec: str) -> None:
    error(client.post("/ocr", files={"file": ("d.pdf", PDF)}, data={"pages": spec}), 422, "invalid_pages")


@pytest.mark.parametrize("name", sorted(set(FIELD_LIMITS) - {"filename"}))
def test_every_form_field_has_a_limit(client: httpx.Client, name: str) -> None:
    value = "a" * (FIELD_LIMITS[name] + 1)
    files = {} if name in ("url", "image_url") else {"file": ("d.pdf", PDF)}
    answer = client.post("/ocr", files=files or None, data={name: value})
    assert error(answer, 413, "field_too_large")["details"] == {"field": name, "limit": FIELD_LIMITS[name]}


@pytest.mark.parametrize("name", sorted(FIELD_LIMITS))
def test_every_json_field_has_a_limit(client: httpx.Client, name: str) -> None:
    body: dict[str, Any] = {} if name in ("url", "image_url") else {"file": PDF_B64}
    body[name] = "a" * (FIELD_LIMITS[name] + 1)
    assert error(client.post("/jobs", json=body), 413, "field_too_large")["details"]["field"] == name


def test_too_many_form_fields_is_413(client: httpx.Client) -> None:
    data = {f"extra{i}": "x" for i in range(MAX_FORM_FIELDS + 1)}
    error(client.post("/ocr", files={"file": ("d.pdf", PDF)}, data=data), 413, "too_many_fields")


def test_a_long_upload_filename_is_cut_not_refused(client: httpx.Client) -> None:
    answer = client.post("/ocr", files={"file": ("n" * 3000 + ".pdf", PDF)})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["filename"]) == FIELD_LIMITS["filename"]


URL_A, URL_B = "https://a.example/x.pdf", "https://a.example/y.pdf"
TWO_SOURCES: dict[str, Any] = {
    "2-files": lambda c: c.post("/ocr", files=[("file", ("a.pdf", PDF)), ("file", ("b.pdf", PDF))]),
    "3-files": lambda c: c.post("/ocr", files=[("file", ("a.pdf", PDF))] * 3),
    "file+b64": lambda c: c.post("/ocr", files={"file": ("a.pdf", PDF)}, data={"image_base64": PDF_B64}),
    "b64-form-twice": lambda c: c.post("/ocr", data={"file": PDF_B64, "image_base64": PDF_B64}),
    "b64-json-twice": lambda c: c.post("/ocr", json={"file": PDF_B64, "image_base64": PDF_B64}),
    "2-urls": lambda c: c.post("/ocr", json={"url": URL_A, "image_url": URL_B}),
    "b64+url": lambda c: c.post("/jobs", data={"file": PDF_B64, "url": URL_A}),
    "json-dup-key": lambda c: raw_json(c, "/ocr", f'{{"file": "{PDF_B64}", "file": "{PDF_B64}"}}'.encode()),
}


@pytest.mark.parametrize("send", TWO_SOURCES.values(), ids=TWO_SOURCES.keys())
def test_more_than_one_source_is_several_sources(client: httpx.Client, send: Any) -> None:
    error(send(client), 400, "several_sources")


def test_an_option_sent_twice_is_422(client: httpx.Client) -> None:
    answer = client.post("/ocr", files={"file": ("d.pdf", PDF)}, data={"pages": ["1", "1"]})
    error(answer, 422, "invalid_pages")


@pytest.mark.parametrize("name", ["pages", "lang", "engine", "output"])
def test_options_that_are_not_strings_are_422(client: httpx.Client, name: str) -> None:
    error(client.post("/ocr", json={"file": PDF_B64, name: ["1"]}), 422, f"invalid_{name}")


# --- the PaddleX-compatible /layout-parsing takes the same JSON limits --------------------------------


@pytest.mark.parametrize(
    "body,text",
    [
        (b'{"file": "x", "temperature": 1e400}', "out of range"),
        (b'{"file": "x", "topP": NaN}', "NaN"),
        (b'{"file": "x", "maxNewTokens": ' + b"9" * 5000 + b"}", "longer than"),
        (b'{"file": "x", "layoutThreshold": ' + b"{" * 50 + b"}" * 50 + b"}", ""),
        (b'{"file": "x", "minPixels": 100000000000000000000}', "minPixels"),
        (b'{"file": "x", "promptLabel": "' + b"p" * 500 + b'"}', "promptLabel"),
        (json.dumps({"file": "x", "markdownIgnoreLabels": ["a"] * 100}).encode(), "markdownIgnoreLabels"),
        (b'{"file": "x", "x": [' + b"[]," * 7_000_000 + b"[]]}", "objects and arrays"),
        (b'["file"]', "object"),
        (b"", "JSON"),
    ],
)
def test_layout_parsing_bounds_its_json(client: httpx.Client, body: bytes, text: str) -> None:
    paddlex_error(raw_json(client, "/layout-parsing", body), 422, text)


def test_layout_parsing_large_body_does_not_stall_health(client: httpx.Client, service: ServiceProcess) -> None:
    body = b'{"file": "' + b"A" * 60_000_000 + b'", "fileType": 1}'  # 60 MB of base64 that is no document
    with HealthProbe(service.url) as probe:
        answer = raw_json(client, "/layout-parsing", body)
    paddlex_error(answer, 415)
    assert probe.slowest_s < 1.0, sorted(probe.times)[-5:]
