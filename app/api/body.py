"""Reading request bodies without trusting them: size limits per field, JSON structure limits, and no
parsing that takes time on the event loop.

JSON bodies are decoded and parsed in a worker thread, in steps that let the event loop run in between,
after a cheap count of their structure (objects, arrays and commas) has shown that parsing is bounded:
a body of millions of empty lists is refused before it is parsed. Numbers must be finite and at most
:data:`MAX_NUMBER_CHARS` long. Forms are parsed by Starlette with a cap on the number of parts and on the size
of each; every field is then checked against its own limit before its value is parsed (see
:mod:`app.intake.request`).

Errors: 413 ``field_too_large`` (a field over its limit, named in ``details.field``), 413
``too_many_fields`` (too many form parts or JSON elements), 422 ``invalid_json`` (not JSON, not an
object, nested deeper than :data:`MAX_JSON_DEPTH`, a number out of range, a duplicate key), 400
``several_sources`` (a document source sent twice), 400 ``invalid_multipart``.
"""

from __future__ import annotations

import codecs
import json
import math
from typing import Any

import anyio
from fastapi import Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from app.errors import ServiceError, TooLarge, bad_request, unprocessable
from app.intake.request import SOURCE_FIELDS

MAX_FORM_FIELDS = 32
MAX_FORM_FILES = 2  # a second file is answered with several_sources; a third ends parsing at once
MAX_JSON_CONTAINERS = 64
MAX_JSON_COMMAS = 16384
MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 40
_CHUNK = 4 * 1024 * 1024


def base64_body_limit(max_upload_bytes: int) -> int:
    """Largest body carrying a base64 document of ``max_upload_bytes`` (4/3 of it) plus options."""
    return -(-max_upload_bytes // 3) * 4 + 1024 * 1024


def several_sources() -> ServiceError:
    return bad_request("several_sources", "send one document: a file, base64 or a URL, not several")


def field_too_large(name: str, limit: int) -> ServiceError:
    return TooLarge(
        "field_too_large",
        f"{name}: longer than its limit of {limit} characters",
        details={"field": name, "limit": limit},
    )


def too_many_fields(message: str) -> ServiceError:
    return TooLarge("too_many_fields", message)


def invalid_json(message: str) -> ServiceError:
    return unprocessable("invalid_json", message)


# --- JSON -------------------------------------------------------------------------------------------


def _count_structure(body: bytes) -> None:
    """Refuse before parsing when the body has more objects/arrays or commas than any request needs.

    The counts include brackets and commas inside strings, so they bound the parse from above; the
    limits are far above what the options (with :data:`FIELD_LIMITS`) can hold.
    """
    containers = commas = 0
    for start in range(0, len(body), _CHUNK):
        piece = body[start : start + _CHUNK]
        containers += piece.count(b"[") + piece.count(b"{")
        commas += piece.count(b",")
        if containers > MAX_JSON_CONTAINERS:
            raise invalid_json(f"the JSON body has more than {MAX_JSON_CONTAINERS} objects and arrays")
        if commas > MAX_JSON_COMMAS:
            raise too_many_fields(f"the JSON body has more than {MAX_JSON_COMMAS} elements")


def _decode(body: bytes) -> str:
    """UTF-8 (a BOM is dropped), decoded a piece at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        parts = [decoder.decode(body[start : start + _CHUNK]) for start in range(0, len(body), _CHUNK)]
        parts.append(decoder.decode(b"", final=True))
    except UnicodeDecodeError:
        raise invalid_json("the JSON body is not UTF-8") from None
    text = "".join(parts)
    return text[1:] if text.startswith("\ufeff") else text


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise invalid_json(f"a number in the JSON body is longer than {MAX_NUMBER_CHARS} digits")
    return int(literal)


def _parse_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise invalid_json(f"a number in the JSON body is longer than {MAX_NUMBER_CHARS} characters")
    value = float(literal)
    if not math.isfinite(value):
        raise invalid_json(f"the number {literal} in the JSON body is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise invalid_json(f"{name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            if key in SOURCE_FIELDS:
                raise several_sources()
            raise invalid_json(f"the key {key[:64]!r} appears more than once")
        result[key] = value
    return result


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``, within the structure limits (blocking: run it in a worker thread)."""
    _count_structure(body)
    text = _decode(body)
    try:
        value = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
            object_pairs_hook=_object,
        )
    except ValueError:  # JSONDecodeError and int() of an odd literal
        raise invalid_json("the body is not valid JSON") from None
    except RecursionError:  # unreachable within MAX_JSON_CONTAINERS; kept as a last guard
        raise invalid_json(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise invalid_json("the JSON body must be an object")
    if _depth(value) > MAX_JSON_DEPTH:
        raise invalid_json(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object, parsed off the event loop (see :func:`parse_json_object`)."""
    body = await request.body()
    return await anyio.to_thread.run_sync(parse_json_object, body)


# --- forms ------------------------------------------------------------------------------------------


async def read_form(request: Request, max_field_bytes: int) -> FormData:
    """The multipart or urlencoded form, at most :data:`MAX_FORM_FIELDS` fields and :data:`MAX_FORM_FILES`
    files; a text field may be ``max_field_bytes`` long (a base64 document can ride in one)."""
    try:
        return await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS, max_part_size=max_field_bytes)
    except HTTPException as exc:  # Starlette reports the form's problems as a 400 with a sentence
        if exc.status_code != 400:
            raise
        detail = str(exc.detail)
        if detail.startswith("Too many files"):
            raise several_sources() from None
        if detail.startswith("Too many fields"):
            raise too_many_fields(f"the form has more than {MAX_FORM_FIELDS} fields") from None
        if "exceeded maximum size" in detail:
            raise TooLarge("field_too_large", "a form field is larger than the upload limit") from None
        raise bad_request("invalid_multipart", f"the form cannot be read: {detail}") from None
