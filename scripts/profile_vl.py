#!/usr/bin/env python3
"""Where the service's CPU goes per page on the VL path: py-spy samples the service's threads while clients send
one-page requests to it, against the VLM stand-in (fixed reply, no OCR); prints CPU s/page and the samples by part.

Usage: .venv/bin/python scripts/profile_vl.py [--clients 16] [--seconds 30] [--latency 0.5] [--raw profile.txt]
       [--env NAME=VALUE ...]   (e.g. --env MALLOC_ARENA_MAX=16: glibc's default arenas on 2 cores, for comparison)
       [--no-spy]               (CPU, page faults and memory only, without py-spy's sampling in the way)
       [--gil]                  (only samples of the thread holding the interpreter lock: what bounds one process)
       [--service-only]         (py-spy samples the service process only, not its page processes)
       .venv/bin/python scripts/profile_vl.py --encode   (one A4 page, single-threaded CPU ms: its BGR array by
                                                          Pillow's packing and from its exported memory; its request
                                                          image by paddlex's encoding and by the engine's)

py-spy (requirements-dev.txt) needs ptrace rights over the service (root, or CAP_SYS_PTRACE). Samples are of
threads on a CPU or ready to run, so on a busy machine they lean toward wall time; the CPU s/page line is the
process's own CPU time.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench import (  # noqa: E402
    cores_busy,
    cpu_seconds,
    kernel_seconds,
    machine_busy,
    minor_faults,
    resident_mb,
)
from scripts.bench_vs_paddlex import a4_page, ours_env  # noqa: E402
from tests.support.server import ServiceProcess  # noqa: E402
from tests.support.vlm_standin import VlmStandin  # noqa: E402

WAITING = ("Condition.wait", "EpollSelector.select", "Queue.get", "_wait_for_tstate_lock", "Event.wait")
#: (part, any frame containing one of these), first match wins.
PARTS = [
    ("decoding the page (PIL) and its RGB copy", ("ImageDocument.render",)),
    ("page -> BGR array for paddlex", ("bgr_array",)),
    ("paddlex pipeline: crops, JPEG, base64, openai client", ("paddlex/", "openai/", "_AsyncThreadManager")),
    ("VLM transport (slots, httpx)", ("VlmTransport", "httpcore")),
    ("job records and results on disk (fsync)", ("atomic_write", "local_store", "assembly", "app/jobs")),
    ("upload (multipart to disk)", ("multipart", "uploads.py", "api/body", "api/inputs")),
    ("HTTP stack (uvicorn, starlette, fastapi)", ("uvicorn", "starlette", "fastapi", "h11")),
    ("page scheduler", ("scheduler.py",)),
    ("logging", ("logging/",)),
    ("limit keeper, queue watcher", ("fleet.py", "server_queue.py", "memory.py")),
]


def breakdown(raw: Path) -> list[tuple[str, float]]:
    """Busy samples by part (waiting threads left out), as shares."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        frames = stack.split(";")
        if any(wait in frames[-1] for wait in WAITING):
            continue
        part = next((name for name, keys in PARTS if any(k in f for f in frames for k in keys)), "other")
        counts[part] += int(number)
    total = sum(counts.values()) or 1
    return [(name, count / total) for name, count in counts.most_common()]


def gc_pauses(url: str) -> dict[str, dict[str, float]]:
    """The service's garbage collections so far, by generation (``/metrics``): count, total seconds, and the
    histogram's cumulative buckets (``le`` bound -> count); plus the frozen objects under ``"frozen"``."""
    found: dict[str, dict[str, float]] = collections.defaultdict(dict)
    text = httpx.get(url + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        if family.name == "python_gc_frozen_objects":
            found["frozen"]["objects"] = family.samples[0].value
        elif family.name == "python_gc_pause_seconds":
            for sample in family.samples:
                kind = sample.name.removeprefix("python_gc_pause_seconds_")
                key = sample.labels["le"] if kind == "bucket" else kind
                found[sample.labels["generation"]][key] = sample.value
    return found


def render_gc(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], pages: int) -> list[str]:
    """One line per generation: collections while the clients sent, their total and mean ms, and the bucket bound
    the longest of them stayed within."""
    lines = [f"garbage collections while the clients sent ({after['frozen'].get('objects', 0):,.0f} objects frozen):"]
    for generation in ("0", "1", "2"):
        now, then = after.get(generation, {}), before.get(generation, {})
        count = now.get("count", 0) - then.get("count", 0)
        total = now.get("sum", 0) - then.get("sum", 0)
        within = sorted(
            float(bound)
            for bound in now
            if bound not in ("count", "sum", "+Inf") and now[bound] - then.get(bound, 0) >= count
        )
        longest = "-" if not count else f"at most {within[0] * 1000:g} ms" if within else "above 1 s"
        lines.append(
            f"  generation {generation}: {count:.0f} ({count / max(1, pages):.2f} per page), {total * 1000:.0f} ms in "
            f"all, {total / count * 1000 if count else 0:.1f} ms on average, the longest {longest}"
        )
    return lines


def cpu_ms(function: Callable[[], object], rounds: int) -> float:
    """CPU ms of one call of ``function`` (this process, all threads), averaged over ``rounds`` after a first call."""
    function()
    began = time.process_time()
    for _ in range(rounds):
        function()
    return (time.process_time() - began) / rounds * 1000


def encodings(page: bytes, rounds: int = 50) -> None:
    """CPU ms per A4 page of the BGR array (Pillow's packing against :func:`app.engines.pixels.bgr_array`), and of
    paddlex's JPEG data URI (BGR->RGB copy, PIL copy, PIL encode) and of the engine's
    (``block_images.jpeg_data_uri``), single-threaded, and the largest pixel difference after decoding."""
    import base64
    import io

    import cv2
    import numpy as np
    from PIL import Image

    from app.engines.paddleocr_vl.block_images import jpeg_data_uri
    from app.engines.pixels import bgr_array

    decoded = Image.open(io.BytesIO(page)).convert("RGB")
    block = bgr_array(decoded)

    conversions = (
        # what the engines did before app.engines.pixels: Pillow packs its pixels, under the interpreter lock
        ("page -> BGR, Pillow packing", lambda: cv2.cvtColor(np.asarray(decoded), cv2.COLOR_RGB2BGR)),
        ("page -> BGR, exported memory", lambda: bgr_array(decoded)),
    )
    for name, convert in conversions:
        print(f"{name}: {cpu_ms(convert, rounds):.1f} CPU ms per page")

    def paddlex_way() -> str:
        buffer = io.BytesIO()
        Image.fromarray(cv2.cvtColor(block, cv2.COLOR_BGR2RGB)).save(buffer, format="JPEG")
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    def engine_way() -> str:
        return jpeg_data_uri(block)

    def pixels(uri: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.partition(",")[2]))), np.int16)

    for name, encode in (("paddlex (cvtColor, PIL copy, PIL JPEG)", paddlex_way), ("engine (OpenCV JPEG)", engine_way)):
        print(f"{name}: {cpu_ms(encode, rounds):.1f} CPU ms per page")
    difference = int(np.abs(pixels(paddlex_way()) - pixels(engine_way())).max())
    print(f"{block.shape[1]}x{block.shape[0]} page; largest pixel difference after decoding: {difference}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--latency", type=float, default=0.5, help="stand-in seconds per request")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw samples here")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the service's environment")
    parser.add_argument("--no-spy", action="store_true", help="no py-spy: CPU, page faults and memory only")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the interpreter lock")
    parser.add_argument("--service-only", action="store_true", help="sample the service process, not page processes")
    parser.add_argument(
        "--encode", action="store_true", help="time the BGR array and the request image two ways each, then stop"
    )
    args = parser.parse_args()
    page = a4_page()
    if args.encode:
        encodings(page)
        return
    spy_bin = Path(sys.executable).with_name("py-spy")
    with tempfile.TemporaryDirectory() as tmp_name, VlmStandin(reply="stand-in text", capacity=256) as vlm:
        tmp = Path(tmp_name)
        raw = args.raw or tmp / "profile.txt"
        vlm.delay_s = args.latency
        extra = dict(item.split("=", 1) for item in args.env)
        with ServiceProcess(tmp, env={**ours_env(vlm.url, tmp), **extra}) as service:
            service.wait_ready(timeout=600)
            assert service.process is not None
            pid = service.process.pid
            httpx.post(service.url + "/ocr", files={"file": ("page.png", page)}, timeout=120).raise_for_status()
            command = [str(spy_bin), "record", "--pid", str(pid), "--duration", str(int(args.seconds))]
            command += ["--rate", "200", "--format", "raw", "--output", str(raw), "--nonblocking"]
            command += [] if args.service_only else ["--subprocesses"]
            command += ["--gil"] if args.gil else []
            spy = (
                None if args.no_spy else subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            )
            deadline = time.monotonic() + args.seconds
            done = [0]
            lock = threading.Lock()

            def client() -> None:
                with httpx.Client(base_url=service.url, timeout=120) as http:
                    while time.monotonic() < deadline:
                        http.post("/ocr", files={"file": ("page.png", page)}).raise_for_status()
                        with lock:
                            done[0] += 1

            collections_before = gc_pauses(service.url)
            cpu0, faults0, kernel0, began = cpu_seconds(pid), minor_faults(pid), kernel_seconds(pid), time.monotonic()
            own0, machine0 = cpu_seconds(pid, children=False), machine_busy()
            mine0 = cpu_seconds(os.getpid(), children=False)  # the clients and the stand-in; the service is a child
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(lambda _: client(), range(args.clients)))
            wall = time.monotonic() - began
            cpu = (cpu_seconds(pid) - cpu0) / max(1, done[0])
            own = (cpu_seconds(pid, children=False) - own0) / max(1, done[0])
            busy = cores_busy(machine0)
            mine = (cpu_seconds(os.getpid(), children=False) - mine0) / wall
            faults = (minor_faults(pid) - faults0) / max(1, done[0])
            kernel = (kernel_seconds(pid) - kernel0) / max(1, done[0])
            resident = resident_mb(pid)
            collections_after = gc_pauses(service.url)
            if spy is not None:
                spy.wait(args.seconds + 120)
        print(
            f"{done[0]} pages in {wall:.1f} s ({done[0] / wall:.1f} pages/s), {cpu:.3f} CPU s/page "
            f"({own:.3f} in the service process, {own * done[0] / wall:.2f} of its cores, {kernel:.3f} of it in the "
            f"kernel), {faults:,.0f} minor page faults/page, service process resident {resident:,.0f} MB at the end"
            f"{' with ' + ' '.join(args.env) if args.env else ''}, "
            f"machine's cores busy {busy:.2f} of {os.cpu_count()} (this script's clients and stand-in: {mine:.2f})"
        )
        print("\n".join(render_gc(collections_before, collections_after, done[0])))
        for name, share in [] if spy is None else breakdown(raw):
            print(f"{share:6.1%}  {name}")


if __name__ == "__main__":
    main()
