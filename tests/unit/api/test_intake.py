"""The HTTP side of the intake: errors mapped to their statuses and codes, form parts sorted into fields and the
upload, one source per request, and the OpenAPI request body generated from the model."""

from __future__ import annotations

import io
from typing import Any

import pytest
from starlette.datastructures import FormData, Headers, UploadFile

from app.api.errors import http_status
from app.api.intake import REQUEST_BODY, _form_fields, document_source, validated
from app.errors import ServiceError
from app.intake.request import FIELD_LIMITS, OUTPUTS, SOURCE_FIELDS, DocumentRequest


def refused(call: Any, *args: Any) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        call(*args)
    return info.value


def upload(name: str = "scan.pdf") -> UploadFile:
    return UploadFile(io.BytesIO(b"%PDF-1.7"), filename=name, headers=Headers({}))


def test_errors_become_413_and_422_naming_the_field() -> None:
    too_long = refused(validated, {"pages": "1" * 5000}, 300)
    assert (http_status(too_long), too_long.code) == (413, "field_too_large")
    assert too_long.details == {"field": "pages", "limit": FIELD_LIMITS["pages"]}
    bad = refused(validated, {"dpi": "10"}, 300)
    assert (http_status(bad), bad.code, bad.message) == (422, "invalid_dpi", "dpi: must be between 50 and 300")
    assert bad.details == {"field": "dpi"}


def test_form_parts_become_fields_and_the_upload() -> None:
    scan = upload()
    fields, found = _form_fields(FormData([("file", scan), ("dpi", "200"), ("unknown", "x")]))
    assert fields == {"dpi": "200"} and found is scan
    fields, found = _form_fields(FormData([("file", "QUJD")]))  # base64 text in `file`
    assert fields == {"file": "QUJD"} and found is None


@pytest.mark.parametrize(
    "parts,status,code",
    [
        ([("pages", "1"), ("pages", "2")], 422, "invalid_pages"),
        ([("url", "https://a"), ("url", "https://b")], 400, "several_sources"),
        ([("file", upload()), ("file", upload())], 400, "several_sources"),
        ([("lang", upload())], 422, "invalid_lang"),
        ([("image_base64", upload())], 422, "invalid_image_base64"),
    ],
)
def test_form_parts_sent_twice_or_misplaced(parts: list[tuple[str, Any]], status: int, code: str) -> None:
    error = refused(_form_fields, FormData(parts))
    assert (http_status(error), error.code) == (status, code)


def test_one_source_per_request() -> None:
    assert refused(document_source, DocumentRequest(), None).code == "no_file"
    assert refused(document_source, DocumentRequest(file="QUJD"), upload()).code == "several_sources"
    assert refused(document_source, DocumentRequest(file="QUJD", url="https://a"), None).code == "several_sources"
    from_upload = document_source(DocumentRequest(filename="ignored.pdf"), upload("n" * 2000))
    assert from_upload.upload is not None and from_upload.filename == "n" * FIELD_LIMITS["filename"]
    assert document_source(DocumentRequest(image_base64="QUJD", filename="a.png"), None).filename == "a.png"
    from_url = document_source(DocumentRequest(image_url="https://h.example/dir/scan.pdf?sig=1"), None)
    assert (from_url.url, from_url.filename) == ("https://h.example/dir/scan.pdf?sig=1", "scan.pdf")


def test_the_openapi_body_is_the_model() -> None:
    content = REQUEST_BODY["requestBody"]["content"]
    form = content["multipart/form-data"]["schema"]["properties"]
    body = content["application/json"]["schema"]["properties"]
    assert list(form) == list(body) == list(DocumentRequest.model_fields)
    assert form["file"]["format"] == "binary" and body["file"]["type"] == "string"
    assert body["output"]["enum"] == list(OUTPUTS)
    assert body["dpi"] == {**body["dpi"], "type": "integer", "minimum": 50}
    assert body["lang_strict"]["type"] == body["return_content"]["type"] == "boolean"
    for name, field in body.items():
        assert field["description"], name
        assert "anyOf" not in field, name  # absent means the default: no null to send
        if name in FIELD_LIMITS and field["type"] == "string" and "enum" not in field and name != "export_name":
            assert field["maxLength"] == FIELD_LIMITS[name], name
    assert body["export_name"]["maxLength"] == 200
    assert set(SOURCE_FIELDS) <= set(body)
