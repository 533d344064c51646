"""``atomic_write``: the whole new file or the old one, the folder made, nothing left behind."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from app.storage.local import atomic_write


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
