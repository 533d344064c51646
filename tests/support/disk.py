"""A real small disk for tests: a tmpfs mounted on a test folder, filled and remounted read-only at will.

Mounting needs CAP_SYS_ADMIN (root on a normal machine or a privileged CI container). Where the kernel
refuses, :func:`mount_unavailable` says why and the tests that need a real full or read-only disk are
skipped with that reason; the threshold tests (``DISK_MIN_FREE_MB`` above the free space of the test
folder's real disk) need no mount and always run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False, timeout=30)


@lru_cache(maxsize=1)
def mount_unavailable() -> str | None:
    """None when this process may mount a tmpfs; else the reason it may not."""
    if shutil.which("mount") is None:
        return "no mount command"
    with tempfile.TemporaryDirectory() as folder:
        done = _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", folder)
        if done.returncode != 0:
            return f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}"
        subprocess.run(["umount", folder], check=False, timeout=30)
    return None


@contextmanager
def small_disk(folder: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` mounted on ``folder`` (created) for the duration."""
    folder.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(folder))
    assert done.returncode == 0, done.stderr
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, timeout=30)


def set_read_only(folder: Path, read_only: bool) -> None:
    """Remount the tmpfs on ``folder`` read-only or read-write (as an operator or a failing disk would)."""
    done = _mount("-o", "remount," + ("ro" if read_only else "rw"), str(folder))
    assert done.returncode == 0, done.stderr


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def fill(folder: Path, leave_bytes: int, name: str = "filler.bin") -> Path:
    """Write a file that leaves about ``leave_bytes`` free on ``folder``'s filesystem; returns it."""
    target = folder / name
    size = max(0, free_bytes(folder) - leave_bytes)
    with target.open("wb") as handle:
        chunk = b"\0" * (1024 * 1024)
        while size > 0:
            handle.write(chunk[: min(size, len(chunk))])
            size -= min(size, len(chunk))
    return target
