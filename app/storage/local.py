"""Local result storage: ``OUTPUT_DIR/YYYY-MM-DD/<id>/result.json`` + ``result.md``, written atomically.

Paths are built from server-generated ids only; a client's filename is stored as data, never used
in a path.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

_ID = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    return uuid.uuid4().hex


def is_valid_id(value: str) -> bool:
    return bool(_ID.match(value))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resolve_output_dir(preferred: Path) -> Path:
    """``preferred`` when it is writable, else ``./output`` (e.g. outside the container)."""
    for candidate in (preferred, Path.cwd() / "output"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            probe = candidate / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError:
            continue
        if candidate != preferred:
            log.warning("OUTPUT_DIR %s is not writable; using %s", preferred, candidate)
        return candidate.resolve()
    raise RuntimeError(f"neither {preferred} nor ./output is writable")


class LocalStore:
    """Result folders under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / ".incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)

    def result_dir(self, result_id: str, created: datetime | None = None) -> Path:
        day = (created or datetime.now(timezone.utc)).strftime("%Y-%m-%d")
        return self.root / day / result_id

    def save_images(self, folder: Path, images: dict[str, bytes]) -> None:
        """Write images referenced from a page's Markdown, by their relative names, inside ``folder``."""
        for name, data in images.items():
            target = (folder / name).resolve()
            if folder.resolve() not in target.parents:
                raise ValueError(f"image path {name!r} leaves the result folder")
            atomic_write(target, data)

    def save_result(self, folder: Path, result_json: bytes, markdown: str, images: dict[str, bytes]) -> None:
        """Write images and Markdown first and ``result.json`` last: its presence marks a complete result."""
        self.save_images(folder, images)
        atomic_write(folder / "result.md", markdown.encode("utf-8"))
        atomic_write(folder / "result.json", result_json)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()
