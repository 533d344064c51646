"""The disk monitor, the output-folder choice and the .incoming sweep, on real folders of this machine
(the integration tests in test_disk_faults.py fill and remount a real tmpfs)."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from pathlib import Path

import pytest

from app.api.errors import http_headers, http_status
from app.storage.disk import DiskMonitor, check_disk, disk_error_kind, is_disk_full_error
from app.storage.local import OutputDirError, resolve_output_dir, sweep_incoming


def os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def test_error_kinds() -> None:
    assert disk_error_kind(os_error(errno.ENOSPC)) == "full"
    assert disk_error_kind(os_error(errno.EDQUOT)) == "full"
    assert disk_error_kind(os_error(errno.EROFS)) == "read_only"
    assert disk_error_kind(os_error(errno.EACCES)) is None
    assert disk_error_kind(ValueError("x")) is None
    try:  # wrapped, as a library that re-raises would
        try:
            raise os_error(errno.ENOSPC)
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        assert is_disk_full_error(outer)
    assert not is_disk_full_error(os_error(errno.ENOENT))


def test_check_disk_reads_free_space_and_writes_a_probe(tmp_path: Path) -> None:
    state = check_disk(tmp_path, 0)
    stats = os.statvfs(tmp_path)
    assert state.ok and state.free_bytes is not None
    assert abs(state.free_bytes - stats.f_bavail * stats.f_frsize) < 64 * 1024 * 1024
    assert list(tmp_path.iterdir()) == []  # the probe is removed
    low = check_disk(tmp_path, state.free_bytes * 2)
    assert low.status == "low_space" and "DISK_MIN_FREE_MB" in (low.reason or "")


def test_check_disk_on_a_missing_folder(tmp_path: Path) -> None:
    state = check_disk(tmp_path / "gone", 0)
    assert state.status == "not_writable" and "gone" in (state.reason or "")


def test_monitor_refuses_then_recovers(tmp_path: Path) -> None:
    async def scenario() -> None:
        monitor = DiskMonitor(tmp_path, min_free_bytes=1 << 60, interval_s=0.05)
        monitor.check_now()
        monitor.start()
        try:
            refusal = monitor.refusal()
            assert refusal is not None and (http_status(refusal), refusal.code) == (507, "disk_full")
            assert http_headers(refusal)["Retry-After"]
            assert monitor.health()["status"] == "low_space"
            assert not await monitor.wait_writable(timeout=0.2)
            monitor.min_free_bytes = 0  # as if space came back
            assert await monitor.wait_writable(timeout=5)
            assert monitor.ok and monitor.refusal() is None and monitor.reason is None
            # A write elsewhere fails (reported from a worker thread): bad at once, then re-checked.
            reported: list[bool] = []
            worker = threading.Thread(target=lambda: reported.append(monitor.report_error(os_error(errno.EROFS))))
            worker.start()
            worker.join()
            assert reported == [True] and not monitor.ok
            refusal = monitor.refusal()
            assert refusal is not None and refusal.code == "disk_unwritable"
            assert await monitor.wait_writable(timeout=5)  # the next check finds the folder writable
            assert monitor.error_for(ValueError("not a disk error")) is None
        finally:
            await monitor.stop()

    asyncio.run(scenario())


def test_an_explicit_unwritable_output_dir_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputDirError, match=r"OUTPUT_DIR=.*is not writable"):
        resolve_output_dir(blocker / "output", explicit=True)


def test_the_default_output_dir_falls_back_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.chdir(tmp_path)
    root, fallback_from = resolve_output_dir(blocker / "output", explicit=False)
    assert root == (tmp_path / "output").resolve() and fallback_from == blocker / "output"
    assert resolve_output_dir(tmp_path / "fine", explicit=True) == ((tmp_path / "fine").resolve(), None)


def test_sweep_removes_only_files_older_than_the_cutoff(tmp_path: Path) -> None:
    old, new = tmp_path / "old.upload", tmp_path / "new.upload"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    (tmp_path / "folder").mkdir()
    assert sweep_incoming(tmp_path, time.time() - 60) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "new.upload"]
    assert sweep_incoming(tmp_path / "missing", time.time()) == 0
