"""Local disk helpers: server-made ids, atomic writes, the output folder, a result folder's files.

Paths are built from server-generated ids only; a client's filename is stored as data, never used
in a path.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import uuid
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


RESULT_FILE_RANK = {"result.md": 1, "result.json": 2}


def result_files(folder: Path) -> list[str]:
    """A result folder's files, relative to it, in upload order: images, ``result.md``, ``result.json`` last."""
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    names = [n for n in names if not Path(n).name.startswith(".")]  # temp files of atomic writes
    return sorted(names, key=lambda n: RESULT_FILE_RANK.get(n, 0))
