"""README's "How it is built" map is kept in step with app/: every module and package is named under its parent, and
every file the map names exists where it says."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "app"
SKIPPED = {"__init__.py", "__main__.py"}


def map_entries() -> dict[str, str]:
    """Each top-level entry of the map (``app/`` children, with their continuation lines) -> its text."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## How it is built", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    current = ""
    for line in block.splitlines():
        match = re.match(r"^  (\S+)", line)
        if match:
            current = match.group(1)
            entries[current] = line
        elif current and line.startswith("   "):
            entries[current] += "\n" + line
        else:
            current = ""
    return entries


def entry_of(path: Path, entries: dict[str, str]) -> str:
    """The map's entry that covers ``path`` (its top-level module or package under app/)."""
    relative = path.relative_to(APP)
    for name in (f"{relative.parts[0]}/", relative.parts[0], "/".join(relative.parts[:2]), str(relative)):
        if name in entries:
            return entries[name]
    for name, text in entries.items():  # e.g. "storage/s3/" for app/storage/s3/mirror.py
        if name.endswith("/") and str(relative).startswith(name):
            return text
    return ""


def test_every_module_is_on_the_map() -> None:
    entries = map_entries()
    missing = []
    for path in sorted(APP.rglob("*.py")):
        if path.name in SKIPPED or "web" in path.relative_to(APP).parts[:1]:
            continue
        text = entry_of(path, entries)
        nested = len(path.relative_to(APP).parts) > 1
        if not text or (nested and path.name not in text):
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"not on README's map: {missing}"


def test_every_file_on_the_map_exists() -> None:
    names = {path.name for path in APP.rglob("*") if path.is_file()}
    block = (ROOT / "README.md").read_text().split("## How it is built", 1)[1].split("```", 2)[1]
    named = set(re.findall(r"\b([a-z_0-9]+\.(?:py|js))\b", block))
    others = {path.name for folder in ("scripts", "docker", "tests") for path in (ROOT / folder).rglob("*")}
    stale = sorted(name for name in named if name not in names and name not in others)
    assert not stale, f"README's map names files that do not exist: {stale}"
