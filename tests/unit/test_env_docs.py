"""ML_INFERENCE_ENV_VARS.md and the Settings class describe the same variables."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "ML_INFERENCE_ENV_VARS.md"
INTERNAL_HEADING = "## Внутренние переменные"


def documented() -> tuple[set[str], set[str]]:
    """(service variables, internal variables) named in the first column of the tables."""
    text = DOC.read_text(encoding="utf-8")
    service, _, internal = text.partition(INTERNAL_HEADING)
    pattern = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|", re.MULTILINE)
    return set(pattern.findall(service)), set(pattern.findall(internal))


def test_every_setting_is_documented_and_nothing_else() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    service, _ = documented()
    assert fields - service == set(), "settings missing from ML_INFERENCE_ENV_VARS.md"
    assert service - fields == set(), "documented variables that Settings does not read"


def test_internal_variables_are_not_settings() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    _, internal = documented()
    assert internal & fields == set()
