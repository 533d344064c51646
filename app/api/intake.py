"""The body of ``POST /ocr`` and ``POST /jobs``: one document and its options, as a form or as JSON.

One document per request, from exactly one source: a multipart upload in ``file``; base64 text in ``file`` or
``image_base64`` (form or JSON); a URL in ``url`` or ``image_url``. The options and the text sources are validated
by :class:`~app.intake.request.DocumentRequest` whatever the body (its OpenAPI schema is generated from that model,
:data:`REQUEST_BODY`); the body itself is read within the limits of :mod:`app.api.body`.

The dependency :data:`Submission` answers, in this order: 415 ``unsupported_body``; the body's own errors
(:mod:`app.api.body`); 413 ``field_too_large`` and 422 ``invalid_<field>`` for an option (422 ``invalid_lang`` /
``invalid_engine`` when no loaded engine fits: the engine is chosen here, once, and carried into the job); 400
``no_file`` / ``several_sources``; 400 ``url_input_disabled``. The document is received later, by
:func:`submit_document` (400/413/415/422 for its bytes, see :mod:`app.intake.sources`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import ValidationError
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema
from starlette.datastructures import FormData, UploadFile

from app.api.body import base64_body_limit, field_too_large, read_form, read_json_object, several_sources
from app.api.deps import AppSettings, Receiver, Service
from app.api.errors import arrived_at
from app.engines.select import Choice
from app.errors import Invalid, Unsupported, bad_request, invalid_field
from app.intake.request import FIELD_LIMITS, SOURCE_FIELDS, DocumentRequest, Output, parse_output
from app.intake.sources import DocumentSource, name_from_url
from app.jobs.models import JobRecord, OcrOptions


@dataclass(frozen=True)
class DocumentSubmission:
    """A request's document source (not received yet), the job's options and engine, and how to answer."""

    source: DocumentSource
    options: OcrOptions
    engine: Choice
    output: Output = "json"
    return_content: bool = True


def validated(fields: dict[str, Any], max_dpi: int) -> DocumentRequest:
    """``fields`` as a :class:`DocumentRequest`; its first error as 413 ``field_too_large`` or 422
    ``invalid_<field>`` (the message names the field)."""
    try:
        return DocumentRequest.model_validate(fields, context={"max_dpi": max_dpi})
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = str(error["loc"][0]) if error["loc"] else "body"
        if error["type"] == "field_too_large":
            raise field_too_large(field, int(error["ctx"]["limit"])) from None
        raise invalid_field(field, error["msg"]) from None


def output_format(value: str | None) -> Output:
    """The ``output`` query parameter of ``GET /jobs/{id}/result``; 422 ``invalid_output``."""
    try:
        return parse_output(value)
    except ValueError as exc:
        raise invalid_field("output", str(exc)) from None


def _form_fields(form: FormData) -> tuple[dict[str, Any], UploadFile | None]:
    """The form's values of the model's fields, and the uploaded file. 400 ``several_sources`` for a source sent
    twice, 422 ``invalid_<name>`` for another field sent twice or a file where text belongs."""
    fields: dict[str, Any] = {}
    upload = None
    for name in DocumentRequest.model_fields:
        values = form.getlist(name)
        if len(values) > 1:
            if name in SOURCE_FIELDS:
                raise several_sources()
            raise Invalid(f"invalid_{name}", f"{name}: sent more than once", details={"field": name})
        if not values:
            continue
        if isinstance(values[0], UploadFile):
            if name != "file":
                message = f"{name}: must be a text field, not a file"
                raise Invalid(f"invalid_{name}", message, details={"field": name})
            upload = values[0]
        else:
            fields[name] = values[0]
    return fields, upload


async def read_fields(request: Request, max_upload_bytes: int) -> tuple[dict[str, Any], UploadFile | None]:
    """The request's fields (the JSON object, or the multipart/urlencoded form) and its uploaded file, if any."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return await read_json_object(request), None
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        # A base64 document may ride in a plain form field: allow fields as large as the body may be.
        return _form_fields(await read_form(request, base64_body_limit(max_upload_bytes)))
    if content_type:
        raise Unsupported("unsupported_body", "send multipart/form-data or application/json")
    return {}, None


def document_source(document: DocumentRequest, upload: UploadFile | None) -> DocumentSource:
    """The one source of the document. 400 ``no_file`` without one, ``several_sources`` with more."""
    sources = document.text_sources()
    if upload is None and not sources:
        raise bad_request("no_file", "send the document as a file in 'file', as base64 in 'file', or a 'url'")
    if len(sources) + (upload is not None) > 1:
        raise several_sources()
    if upload is not None:
        return DocumentSource(upload=upload.file, filename=(upload.filename or "")[: FIELD_LIMITS["filename"]] or None)
    name, value = sources[0]
    if name in ("file", "image_base64"):
        return DocumentSource(base64=value, filename=document.filename)
    return DocumentSource(url=value, filename=document.filename or name_from_url(value, FIELD_LIMITS["filename"]))


async def read_submission(request: Request, receiver: Receiver, settings: AppSettings) -> DocumentSubmission:
    """The request's document and options, checked before anything is received (see the module's docstring)."""
    fields, upload = await read_fields(request, settings.max_upload_bytes)
    document = validated(fields, settings.max_dpi)
    engine = receiver.choose_engine(document.languages, document.engine, strict=document.lang_strict)
    source = document_source(document, upload)
    receiver.check_source(source)  # 400 before anything is fetched when URL input is off
    options = OcrOptions(pages=document.pages, dpi=document.dpi or settings.pdf_dpi, export_name=document.export_name)
    return DocumentSubmission(source, options, engine, document.output, document.return_content)


Submission = Annotated[DocumentSubmission, Depends(read_submission)]
"""The checked request of ``POST /ocr`` and ``POST /jobs`` (its document not received yet)."""


async def submit_document(
    request: Request, service: Service, receiver: Receiver, submission: DocumentSubmission
) -> JobRecord:
    """Receive the document, submit it as a job with its engine and note it for the request log."""
    async with receiver.received(submission.source) as received:
        record = await service.submit(
            received, submission.options, submission.engine, arrived=arrived_at(request.scope)
        )
    request.state.log = {"job": record.id, "pages": len(record.pages), "engine": record.engine}
    return record


# --- OpenAPI ---------------------------------------------------------------------------------------


class _AbsentIsDefault(GenerateJsonSchema):
    """Optional fields shown with their own type only: absent (or blank) means the default, and a form has no null."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])


def _request_body() -> dict[str, Any]:
    json_body = DocumentRequest.model_json_schema(schema_generator=_AbsentIsDefault)
    form = {**json_body, "title": "DocumentRequestForm", "properties": dict(json_body["properties"])}
    form["properties"]["file"] = {
        "type": "string",
        "format": "binary",
        "description": "the document: PDF, PNG, JPEG, TIFF, WebP or BMP (its type is read from its bytes); "
        "or the document as base64 text",
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": form}, "application/json": {"schema": json_body}},
        }
    }


REQUEST_BODY = _request_body()
"""``openapi_extra`` of ``POST /ocr`` and ``POST /jobs``: the form and the JSON body, from :class:`DocumentRequest`."""
