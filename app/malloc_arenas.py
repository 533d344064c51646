"""How many malloc arenas the service's threads share: two, set first thing in ``python -m app``.

glibc gives each new thread its own arena, up to eight per core. A page's buffers (decoded page, BGR array, crops,
encoded request: several MB each) are freed in one thread's arena and asked for again in another's, so each arena
holds its own idle copy and hands fresh memory to the next page: every 4 KB of it a page fault the process pays
for in CPU time. Measured on the VL path (BENCHMARKS.md, "vl-cpu"): with two arenas instead of glibc's default,
half the minor page faults per page and ~12 % less CPU per page at one client. ``MALLOC_ARENA_MAX`` in the
environment (glibc's own variable, read by glibc at start) wins: then nothing is changed here. :func:`mallopt` is
the one way to glibc's ``mallopt`` (the VL engine's page buffers use it too).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

#: Arenas the threads share.
ARENAS = 2
_M_ARENA_MAX = -8


def mallopt(option: int, value: int) -> bool:
    """glibc's ``mallopt(option, value)``; whether it took. False where the C library is not glibc."""
    try:
        function = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    return bool(function(option, value) == 1)


def limit_malloc_arenas(environ: Mapping[str, str] = os.environ, arenas: int = ARENAS) -> bool:
    """Cap the arenas at ``arenas`` (before threads start: a thread keeps the arena it first got); whether it was
    set here. Not where ``MALLOC_ARENA_MAX`` is set already, nor where the C library is not glibc."""
    if "MALLOC_ARENA_MAX" in environ:
        return False
    return mallopt(_M_ARENA_MAX, arenas)
