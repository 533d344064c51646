"""The fields of ``POST /ocr`` and ``POST /jobs`` as one validated model, :class:`DocumentRequest`.

The same model validates a multipart or urlencoded form (every value a string) and a JSON object (strings,
numbers, booleans), and the OpenAPI schema of both bodies is generated from it (:mod:`app.api.intake`). The field
names ``file``, ``image_base64``, ``image_url`` and ``return_content`` are those of the service this one replaces,
with the same meaning.

Every field is read the same way whatever the body: absent, ``null`` and blank mean "the default"; an object or an
array is refused; a number or a boolean where text belongs is read as its text (a form sends nothing else); text
longer than its limit in :data:`FIELD_LIMITS` is refused before it is parsed, and so is text that cannot be written
back as UTF-8 (a lone surrogate). The document sources must be strings; only the URLs have a limit of their own
(the body's limit applies to base64).

Errors are pydantic errors of two custom types, in field order: ``field_too_large`` (``ctx["limit"]``) and
``invalid`` (the message is a sentence for the client). The API turns them into 413 ``field_too_large`` and 422
``invalid_<field>``. Validation takes ``context={"max_dpi": MAX_DPI}``.

That exactly one source is given is checked by the caller, which also knows of a multipart upload (it never enters
the model): see :meth:`DocumentRequest.text_sources`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from app.engines.languages import parse_languages
from app.storage.rag_export import EXPORT_NAME_MAX, check_export_name

Output = Literal["json", "markdown", "text", "pdf", "docx", "xlsx"]
OUTPUTS: tuple[str, ...] = get_args(Output)
#: The fields that carry the document (base64 in ``file`` / ``image_base64``, a URL in ``url`` / ``image_url``).
SOURCE_FIELDS = ("file", "image_base64", "url", "image_url")
#: Longest value, in characters, of each field that has a limit (checked before the value is parsed).
FIELD_LIMITS: dict[str, int] = {
    "pages": 4096,
    "lang": 256,
    "engine": 64,
    "output": 32,
    "dpi": 32,
    "return_content": 16,
    "lang_strict": 16,
    "filename": 1024,
    "export_name": 1024,  # and at most EXPORT_NAME_MAX once stripped (app.storage.rag_export)
    "url": 8192,
    "image_url": 8192,
}
MIN_DPI = 50
DPI_CEILING = 600  # the highest MAX_DPI allows: the limit when no context gives MAX_DPI
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _invalid(reason: str) -> PydanticCustomError:
    """The error for a field with a bad value; ``reason`` is shown to the client after the field's name."""
    return PydanticCustomError("invalid", "{reason}", {"reason": reason})


def _too_long(limit: int) -> PydanticCustomError:
    return PydanticCustomError("field_too_large", "longer than its limit of {limit} characters", {"limit": limit})


def field_text(name: str, value: Any) -> str | None:
    """An option's value as stripped text (None when absent or blank), checked against its limit first."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise _invalid("must be a string")
    text = value if isinstance(value, str) else str(value)
    limit = FIELD_LIMITS.get(name)
    if limit is not None and len(text) > limit:
        raise _too_long(limit)
    if not text.isascii() and not _encodable(text):  # JSON's "\ud800": no answer could quote it
        raise _invalid("must be text: it holds a lone UTF-16 surrogate")
    return text.strip() or None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_bool(text: str | None, default: bool) -> bool:
    if text is None:
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise _invalid("must be true or false")


def parse_output(text: str | None) -> Output:
    """``json`` when absent; ``ValueError`` naming the choices for anything but one of :data:`OUTPUTS`."""
    name = (text or "json").strip().lower()
    if name in OUTPUTS:
        return cast(Output, name)
    raise ValueError(f"must be one of {', '.join(OUTPUTS)}")


def parse_dpi(value: Any) -> int | None:
    """A whole number from a form's text or a JSON number (``150.0`` too); None when absent or blank."""
    if isinstance(value, (bool, dict, list)):
        raise _invalid("must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise _invalid("must be a whole number")
        return int(value)
    if isinstance(value, int):
        return value
    text = field_text("dpi", value)
    try:
        return None if text is None else int(text)
    except ValueError:
        raise _invalid("must be a whole number") from None


class DocumentRequest(BaseModel):
    """One document and how to read it: the body of POST /ocr and POST /jobs, as a form or as JSON."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    pages: str | None = Field(
        None, max_length=FIELD_LIMITS["pages"], description="pages to recognise, e.g. '1-3,5' or '4-' (all by default)"
    )
    dpi: Annotated[int, Field(ge=MIN_DPI)] | None = Field(
        None, description="PDF rasterising resolution, from 50 to MAX_DPI (300 unless set); default PDF_DPI (150)"
    )
    lang: str | None = Field(
        None,
        max_length=FIELD_LIMITS["lang"],
        description="languages, ISO 639-1, e.g. 'ru,en' (default OCR_LANGUAGES); a language not written in Latin "
        "script (ru, uk, el, ar, ...) is read together with English, for the Latin words in it",
    )
    engine: str | None = Field(
        None,
        max_length=FIELD_LIMITS["engine"],
        description="an engine among those loaded (see /health), or 'auto' (the default): chosen by the languages",
    )
    lang_strict: bool = Field(False, description="true: read only the languages in lang (no English added)")
    export_name: str | None = Field(
        None,
        max_length=EXPORT_NAME_MAX,
        description="stable name of the knowledge-base export (RAG_EXPORT_PREFIX): the same name replaces the file "
        "instead of adding one; default: the file's name plus the job id",
    )
    output: Output = Field(
        "json",
        description="POST /ocr only: the response format (pdf: searchable PDF, docx, xlsx: a file to keep)",
    )
    return_content: bool = Field(True, description="POST /ocr only: false leaves the pages out of the JSON answer")
    filename: str | None = Field(
        None,
        max_length=FIELD_LIMITS["filename"],
        description="the document's name, for base64 and URL sources (an upload's own name is used otherwise)",
    )
    file: str | None = Field(None, description="the document as base64 (a data: URI is fine)")
    image_base64: str | None = Field(None, description="the document as base64 (earlier name)")
    url: str | None = Field(
        None,
        max_length=FIELD_LIMITS["url"],
        description="an http(s) URL the server fetches (guarded: no private addresses)",
    )
    image_url: str | None = Field(
        None, max_length=FIELD_LIMITS["image_url"], description="the same as url (earlier name)"
    )

    @field_validator("pages", "filename", mode="before")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> str | None:
        return field_text(str(info.field_name), value)

    @field_validator("dpi", mode="before")
    @classmethod
    def _dpi(cls, value: Any, info: ValidationInfo) -> int | None:
        dpi = parse_dpi(value)
        maximum = int((info.context or {}).get("max_dpi", DPI_CEILING))
        if dpi is not None and not MIN_DPI <= dpi <= maximum:
            raise _invalid(f"must be between {MIN_DPI} and {maximum}")
        return dpi

    @field_validator("lang", mode="before")
    @classmethod
    def _lang(cls, value: Any) -> str | None:
        text = field_text("lang", value)
        if text is None:
            return None
        try:
            return ",".join(parse_languages(text))
        except ValueError as exc:
            raise _invalid(str(exc)) from None

    @field_validator("engine", mode="before")
    @classmethod
    def _engine(cls, value: Any) -> str | None:
        name = (field_text("engine", value) or "").lower()
        return None if name in ("", "auto") else name

    @field_validator("lang_strict", "return_content", mode="before")
    @classmethod
    def _flag(cls, value: Any, info: ValidationInfo) -> bool:
        name = str(info.field_name)
        return parse_bool(field_text(name, value), default=cls.model_fields[name].default)

    @field_validator("export_name", mode="before")
    @classmethod
    def _export_name(cls, value: Any) -> str | None:
        text = field_text("export_name", value)
        try:
            return check_export_name(text)
        except ValueError as exc:
            raise _invalid(str(exc)) from None

    @field_validator("output", mode="before")
    @classmethod
    def _output(cls, value: Any) -> str:
        text = field_text("output", value)
        try:
            return parse_output(text)
        except ValueError as exc:
            raise _invalid(str(exc)) from None

    @field_validator(*SOURCE_FIELDS, mode="before")
    @classmethod
    def _source(cls, value: Any, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise _invalid("must be a string")
        limit = FIELD_LIMITS.get(str(info.field_name))
        if limit is not None and len(value) > limit:
            raise _too_long(limit)
        return value.strip() or None

    @property
    def languages(self) -> tuple[str, ...] | None:
        """``lang`` as canonical codes; None when absent (``OCR_LANGUAGES`` applies)."""
        return tuple(self.lang.split(",")) if self.lang else None

    def text_sources(self) -> list[tuple[str, str]]:
        """The document sources given as text, ``(field, value)`` in :data:`SOURCE_FIELDS` order."""
        return [(name, value) for name in SOURCE_FIELDS if (value := getattr(self, name)) is not None]
