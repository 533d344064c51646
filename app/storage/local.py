"""Local disk helpers: server-made ids, atomic writes, the output folder, a result folder's files.

Paths are built from server-generated ids only; a client's filename is stored as data, never used
in a path.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import re
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

_ID = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    return uuid.uuid4().hex


def is_valid_id(value: str) -> bool:
    return bool(_ID.match(value))


#: Temporary names of :func:`atomic_write`: this process's mark and a counter (``tempfile``'s random names cost a
#: few percent of the interpreter lock at a few hundred writes a second); a clash is still refused by ``O_EXCL``.
_TMP_MARK = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
_tmp_numbers = itertools.count()
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class _Writes:
    fsync = True  # see set_fsync


_writes = _Writes()


def set_fsync(on: bool) -> None:
    """Whether :func:`atomic_write` flushes each file to the disk before it replaces the old one (``OUTPUT_FSYNC``).

    Off, a write still replaces the file whole (readers see the old file or the new one) and survives the process
    being killed (the kernel holds it); only a crash of the host itself may then leave a file empty or cut short."""
    _writes.fsync = on


def fsync_enabled() -> bool:
    return _writes.fsync


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part; the folder is
    made if missing. The new file is on disk (fsync, unless :func:`set_fsync` turned it off) before it replaces the
    old one."""
    fd, tmp = _new_temporary(path)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if _writes.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _new_temporary(path: Path) -> tuple[int, str]:
    """A new file beside ``path`` (readable by this user only, as ``tempfile.mkstemp`` makes them), open for writing."""
    folder = os.fspath(path.parent)
    for _ in range(100):
        tmp = os.path.join(folder, f".{path.name}.{_TMP_MARK}-{next(_tmp_numbers)}.tmp")
        try:
            return os.open(tmp, _TMP_FLAGS, 0o600), tmp
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", os.fspath(path))


class OutputDirError(RuntimeError):
    """``OUTPUT_DIR`` cannot be used: the service does not start (the message says why and what to do)."""


def _writable(path: Path) -> OSError | None:
    """None when files can be created in ``path`` (made if missing); else the error. A full disk counts as
    writable here: the service starts, reports the disk in ``/health`` and refuses work until space returns."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return None
        return exc
    return None


def resolve_output_dir(preferred: Path, explicit: bool = True) -> tuple[Path, Path | None]:
    """The result folder to use and, when it is a fallback, the folder it replaces.

    An ``OUTPUT_DIR`` that was set (``explicit``) and cannot be written raises :class:`OutputDirError`:
    results written elsewhere would be lost with the container, so the start fails with the reason.
    Only the built-in default (``/app/output``, absent outside the image) falls back to ``./output``;
    ``/health`` (``disk.fallback_from``) says so.
    """
    problem = _writable(preferred)
    if problem is None:
        return preferred.resolve(), None
    reason = problem.strerror or str(problem)
    if explicit:
        raise OutputDirError(
            f"OUTPUT_DIR={preferred} is not writable ({reason}); mount a writable volume there "
            "or set OUTPUT_DIR to a writable folder"
        )
    fallback = Path.cwd() / "output"
    if _writable(fallback) is not None:
        raise OutputDirError(f"neither the default OUTPUT_DIR {preferred} ({reason}) nor {fallback} is writable")
    log.warning("OUTPUT_DIR %s (the default) is not writable (%s); using %s", preferred, reason, fallback)
    return fallback.resolve(), preferred


def sweep_incoming(folder: Path, before: float) -> int:
    """Remove files in ``folder`` last modified before ``before`` (epoch seconds): uploads left by a process
    that stopped while receiving them. Files of uploads in progress are newer. Returns how many."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < before:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


RESULT_FILE_RANK = {"result.md": 1, "result.json": 2}


def result_files(folder: Path) -> list[str]:
    """A result folder's files, relative to it, in upload order: images, ``result.md``, ``result.json`` last."""
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    names = [n for n in names if not Path(n).name.startswith(".")]  # temp files of atomic writes
    return sorted(names, key=lambda n: RESULT_FILE_RANK.get(n, 0))
