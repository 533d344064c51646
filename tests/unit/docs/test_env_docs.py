"""ML_INFERENCE_ENV_VARS.md and the Settings class describe the same variables, with the same defaults,
types and ranges; and what the reference says about empty values holds."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from app.settings import EMPTY_IS_A_VALUE, Settings

DOC = Path(__file__).resolve().parents[3] / "ML_INFERENCE_ENV_VARS.md"
INTERNAL_HEADING = "## Внутренние переменные"
ROW = re.compile(r"^\|\s*`([A-Z][A-Za-z0-9_]+)`\s*\|(.*)$", re.MULTILINE)
#: Defaults written in words rather than as a value.
WORDED_DEFAULTS = {"пусто": "", "не задан": None, "число ядер": "cpu count"}


@dataclass
class Row:
    """One row of a service-variable table: | `NAME` | default | type | meaning | example |."""

    name: str
    default: str
    type: str
    meaning: str


def documented() -> tuple[dict[str, Row], set[str]]:
    """(service variables by name, internal variables) from the first column of the tables."""
    text = DOC.read_text(encoding="utf-8")
    service, _, internal = text.partition(INTERNAL_HEADING)
    rows: dict[str, Row] = {}
    for name, rest in ROW.findall(service):
        cells = [cell.strip() for cell in rest.rstrip().rstrip("|").split("|")]
        assert len(cells) == 4, f"{name}: expected default | type | meaning | example, got {cells}"
        assert name not in rows, f"{name} is documented twice"
        rows[name] = Row(name, cells[0], cells[1], cells[2])
    return rows, {name for name, _ in ROW.findall(internal)}


ROWS, INTERNAL = documented()
FIELDS = {name.upper(): info for name, info in Settings.model_fields.items()}


def test_every_setting_is_documented_and_nothing_else() -> None:
    assert set(FIELDS) - set(ROWS) == set(), "settings missing from ML_INFERENCE_ENV_VARS.md"
    assert set(ROWS) - set(FIELDS) == set(), "documented variables that Settings does not read"


def test_internal_variables_are_not_settings() -> None:
    assert INTERNAL & set(FIELDS) == set()


def doc_type(info: FieldInfo) -> set[str]:
    """The type names the reference may use for a field."""
    annotation = info.annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # X | None
        options = [arg for arg in args if arg is not type(None)]
        if len(options) > 1:  # a number or a word (VL_MAX_CONCURRENCY: 8 or auto): text to the user
            return {"str"}
        annotation = options[0]
    if annotation is SecretStr:
        return {"secret"}
    if annotation is Path:
        return {"path"}
    if annotation is str:
        return {"str", "path"}  # a path given as text (TESSDATA_DIR, CLOUDRU_S3_CA_BUNDLE) is a path to users
    if typing.get_origin(annotation) is typing.Literal:
        return {"str"}
    assert annotation in (int, float, bool), f"unexpected annotation {annotation}"
    return {annotation.__name__}


def written(value: Any) -> str:
    """A value as the reference writes it in backticks."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_type_and_default_match_settings(name: str) -> None:
    info, row = FIELDS[name], ROWS[name]
    assert row.type in doc_type(info), f"{name}: documented as {row.type}, Settings has {info.annotation}"
    if info.default_factory is not None:
        assert WORDED_DEFAULTS.get(row.default) == "cpu count", f"{name}: default {row.default!r}"
        return
    default = info.default
    if row.default in WORDED_DEFAULTS:
        expected = WORDED_DEFAULTS[row.default]
        actual = None if default is None else written(default)
        assert actual == expected, f"{name}: documented {row.default!r}, Settings default {default!r}"
    else:
        match = re.fullmatch(r"`([^`]*)`", row.default)
        assert match, f"{name}: write the default in backticks, or as one of {sorted(WORDED_DEFAULTS)}"
        assert match.group(1) == written(default), f"{name}: documented {row.default}, Settings default {default!r}"


def bounds(info: FieldInfo) -> tuple[Any, Any, Any]:
    """(ge, gt, le) of a field."""
    ge = gt = le = None
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            ge = item.ge
        elif isinstance(item, annotated_types.Gt):
            gt = item.gt
        elif isinstance(item, annotated_types.Le):
            le = item.le
    return ge, gt, le


def range_phrase(ge: Any, gt: Any, le: Any) -> str:
    """The reference's wording of a range: "1–64", "Больше 0, до 60", "Больше 0", "Не меньше 1"."""
    if ge is not None and le is not None:
        return f"{written(ge)}–{written(le)}"
    if gt is not None and le is not None:
        return f"Больше {written(gt)}, до {written(le)}"
    if gt is not None:
        return f"Больше {written(gt)}"
    assert ge is not None and le is None, "a range with only an upper bound: add its wording here"
    return f"Не меньше {written(ge)}"


CONSTRAINED = sorted(name for name, info in FIELDS.items() if any(b is not None for b in bounds(info)))


def test_the_ranges_are_found() -> None:
    assert {"OCR_CONCURRENCY", "ENGINE_THREADS", "PORT", "VL_BATCH_PAGES"} <= set(CONSTRAINED)


@pytest.mark.parametrize("name", CONSTRAINED)
def test_every_range_is_stated(name: str) -> None:
    phrase = range_phrase(*bounds(FIELDS[name]))
    assert ROWS[name].meaning.startswith(phrase), f"{name}: the meaning should start with {phrase!r}"


CHOICES = sorted(name for name, info in FIELDS.items() if typing.get_origin(info.annotation) is typing.Literal)


@pytest.mark.parametrize("name", CHOICES)
def test_every_choice_is_listed(name: str) -> None:
    for choice in typing.get_args(FIELDS[name].annotation):
        assert f"`{choice}`" in ROWS[name].meaning, f"{name}: `{choice}` is not listed"


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_an_empty_value_means_the_default(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the reference says: an empty row in the console is the default (not a failed start), except
    where an empty value means something of its own."""
    monkeypatch.setenv(name, "")
    value = getattr(Settings(_env_file=None), name.lower())  # type: ignore[call-arg]
    info = FIELDS[name]
    if name.lower() in EMPTY_IS_A_VALUE:
        assert value == ""
        assert "Пустое значение" in ROWS[name].meaning, f"{name}: say what an empty value means"
    else:
        assert written(value) == written(info.get_default(call_default_factory=True))


def test_the_reference_states_the_empty_value_rule() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "означает значение по умолчанию" in text
    for name in EMPTY_IS_A_VALUE:
        assert f"`{name.upper()}`" in text.split(INTERNAL_HEADING)[0].split("## ")[0]
