"""``atomic_write``: the whole new file or the old one, the folder made, nothing left behind."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.jobs.store import output_fsync
from app.settings import Settings
from app.storage.local import atomic_write, fsync_enabled, set_fsync


@pytest.fixture(autouse=True)
def flushing() -> Iterator[None]:
    """Each test starts with the default (fsync on), whatever an app started earlier in this process set, and
    leaves the setting as it found it (``set_fsync`` is process-wide: an app with S3 turns it off at start)."""
    before = fsync_enabled()
    set_fsync(True)
    yield
    set_fsync(before)


def test_writes_the_whole_file_in_a_folder_it_makes(tmp_path: Path) -> None:
    target = tmp_path / "jobs" / "a" / "job.json"
    data = bytes(range(256)) * 4096  # 1 MiB
    atomic_write(target, data)
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    atomic_write(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert sorted(p.name for p in target.parent.iterdir()) == ["job.json"]  # no temporary file left


def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.mkdir()  # a folder where the file should go: os.replace refuses
    (target / "inside").write_text("old")
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert (target / "inside").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_threads_writing_the_same_file_never_leave_a_part(tmp_path: Path) -> None:
    target = tmp_path / "job.json"
    versions = [bytes([n]) * 200_000 for n in range(8)]
    seen: list[bytes] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            if target.exists():
                seen.append(target.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=lambda v=v: [atomic_write(target, v) for _ in range(5)]) for v in versions]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stop.set()
    reader.join()
    assert target.read_bytes() in versions
    assert seen and all(content in versions for content in seen)
    assert [p.name for p in tmp_path.iterdir()] == ["job.json"]


def test_without_fsync_the_file_is_still_replaced_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``OUTPUT_FSYNC=false`` (or ``auto`` with S3): the same file, and no flush to the disk."""
    flushed: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        flushed.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    target = tmp_path / "job.json"
    atomic_write(target, b"first")
    assert len(flushed) == 1 and fsync_enabled()
    try:
        set_fsync(False)
        atomic_write(target, b"second")
    finally:
        set_fsync(True)
    assert target.read_bytes() == b"second" and len(flushed) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json"]


@pytest.mark.parametrize(
    ("value", "s3", "expected"),
    [("auto", False, True), ("auto", True, False), ("true", True, True), ("false", False, False)],
)
def test_output_fsync_auto_flushes_only_without_s3(value: str, s3: bool, expected: bool) -> None:
    bucket = {
        "cloudru_s3_endpoint": "https://s3.cloud.ru",
        "cloudru_s3_bucket": "results",
        "cloudru_s3_access_key": "<tenant_id>:<key_id>",
        "cloudru_s3_secret_key": "<secret>",
    }
    settings = Settings(_env_file=None, output_fsync=value, **(bucket if s3 else {}))  # type: ignore[call-arg]
    assert output_fsync(settings) is expected
