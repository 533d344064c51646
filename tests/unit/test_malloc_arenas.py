"""The malloc arena cap (app.malloc_arenas), in fresh interpreters: glibc's own report (malloc_info) counts the
arenas after eight threads have each allocated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import ctypes, sys, tempfile, threading
from app.malloc_arenas import limit_malloc_arenas
print(limit_malloc_arenas() if sys.argv[1] == "cap" else "-")
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
kept, ready = [], threading.Barrier(8)
def allocate():
    ready.wait()  # all eight at once: each new thread asks for an arena
    kept.append(libc.malloc(1 << 20))
threads = [threading.Thread(target=allocate) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
with tempfile.NamedTemporaryFile() as report:
    libc.fopen.restype = ctypes.c_void_p
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream)); libc.fclose(ctypes.c_void_p(stream))
    print(open(report.name).read().count("<heap nr="))
"""


def arenas(mode: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    said, count = run.stdout.split()
    return said, int(count)


def test_threads_share_two_arenas_once_capped() -> None:
    assert arenas("cap") == ("True", 2)
    _, uncapped = arenas("none")
    assert uncapped > 2  # without the cap each thread got its own (glibc allows eight per core)


def test_malloc_arena_max_in_the_environment_wins() -> None:
    assert arenas("cap", MALLOC_ARENA_MAX="3") == ("False", 3)
