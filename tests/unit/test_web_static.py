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
