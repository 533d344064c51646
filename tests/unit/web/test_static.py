"""The web page's files: self-contained (the container is offline) and free of HTML-string injection."""

from __future__ import annotations

import re

from app.api.web import STATIC_DIR

FILES = sorted(p for p in STATIC_DIR.iterdir() if p.suffix in (".html", ".css", ".js"))


def test_the_page_files_are_there() -> None:
    names = {p.name for p in FILES}
    assert {"index.html", "style.css", "app.js", "markdown.js"} <= names
    assert (STATIC_DIR / "favicon.svg").is_file()


def test_nothing_is_loaded_from_elsewhere() -> None:
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"""(?:src|href|url\()\s*=?\s*["']?((?:https?:)?//[^"')\s]+)""", text):
            raise AssertionError(f"{path.name} loads {match.group(1)}")
        assert "@import" not in text, path.name


def test_scripts_never_turn_strings_into_html_or_code() -> None:
    forbidden = (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "localStorage",
    )
    for path in STATIC_DIR.glob("*.js"):
        text = path.read_text(encoding="utf-8")
        for word in forbidden:
            assert word not in text, f"{path.name} uses {word}"


I18N = STATIC_DIR / "i18n.js"


def dictionary(lang: str) -> set[str]:
    """The keys of one language in i18n.js (``  en: {`` ... ``  },``)."""
    text = I18N.read_text(encoding="utf-8")
    block = re.search(rf"^  {lang}: {{\n(.*?)^  }},?$", text, re.MULTILINE | re.DOTALL)
    assert block, f"no {lang} dictionary in i18n.js"
    return set(re.findall(r'^    "([\w.]+)":', block.group(1), re.MULTILINE))


def test_both_languages_have_every_text() -> None:
    english, russian = dictionary("en"), dictionary("ru")
    assert len(english) > 100
    assert english - russian == set(), "missing in Russian"
    assert russian - english == set(), "missing in English"


def test_every_key_the_page_uses_is_in_the_dictionaries() -> None:
    keys = dictionary("en")
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n(?:-[a-z-]+)?="([\w.]+)"', html))
    for script in STATIC_DIR.glob("*.js"):
        text = script.read_text(encoding="utf-8")
        used |= set(re.findall(r'\bt\("([\w.]+)"', text))
        used |= {f"n.{noun}" for noun in re.findall(r'\bcount\([^,()]+(?:\([^()]*\))?[^,()]*, "(\w+)"\)', text)}
    # Keys built in the scripts: t(`error.${status}`), t(`health.${status}`), t(`engine.${state}`).
    statuses = (0, 400, 401, 404, 408, 409, 410, 413, 415, 422, 429, 500, 502, 503, 504, 507)
    built = {f"error.{status}" for status in statuses} | {"health.healthy", "health.starting", "health.unhealthy"}
    built |= {"engine.initializing", "engine.failed"}
    assert used - keys == set(), "used but not in the dictionaries"
    assert built - keys == set(), "built by the scripts but not in the dictionaries"
    assert keys - used - built == set(), "in the dictionaries but never used"


def test_no_script_module_is_over_400_lines() -> None:
    for script in STATIC_DIR.glob("*.js"):
        lines = script.read_text(encoding="utf-8").count("\n")
        assert lines <= 400, f"{script.name}: {lines} lines"
