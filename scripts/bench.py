#!/usr/bin/env python3
"""Throughput, /health latency and peak memory of the service against the engine called directly.

Usage: .venv/bin/python scripts/bench.py [--requests 24] [--pdf-pages 1,20,100,200] [--write BENCHMARKS.md]

Measures, on this machine:
  1. pages/s of the pp-ocr engine called directly (same pages, same engine settings as the service);
  2. pages/s through HTTP (one page per request) at 1, 2 and 4 concurrent clients, with the CPU the
     server process used (cores busy);
  3. /health latency (p50/p99) while 4 OCR clients are running;
  4. peak RSS of a fresh server processing one PDF of 1, 20, 100 and 200 pages (memory must not grow
     with the page count: pages are rasterised one at a time and written to disk as they finish).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engines.pp_ocr import PpOcrEngine  # noqa: E402
from app.settings import Settings  # noqa: E402
from tests.support.documents import ENGLISH_LINES, image_bytes, render_page, text_pdf  # noqa: E402
from tests.support.server import ServiceProcess  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def bench_pages(count: int) -> list[bytes]:
    """Distinct A4 pages of ~24 lines each, as PNG."""
    pages = []
    for n in range(count):
        lines = [f"Benchmark page {n + 1}"] + [ENGLISH_LINES[(n + i) % len(ENGLISH_LINES)] for i in range(23)]
        pages.append(image_bytes(render_page(lines, font_size=24, top=90, gap=2.6), "PNG"))
    return pages


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (the 3rd field of the file is the first here)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """The running processes below ``pid`` (a service's page processes), from ``/proc/<pid>/task/*/children``."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in children.read_text().split()]
        except OSError:  # the thread or process has just ended
            continue
    return found + [grandchild for child in found for grandchild in descendants(child)]


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """CPU seconds of process ``pid`` and of the processes below it: those running, and those it has waited for
    (``children=False``: its own only)."""
    fields = _stat(pid)
    total = sum(int(value) for value in fields[11 : 15 if children else 13])  # utime, stime, cutime, cstime
    for child in descendants(pid) if children else []:
        try:
            total += sum(int(value) for value in _stat(child)[11:13])
        except OSError:  # ended meanwhile: its time is in cutime once waited for
            continue
    return total / TICKS


def kernel_seconds(pid: int) -> float:
    """CPU seconds process ``pid`` has spent in the kernel so far (its own ``stime``: page faults, file system)."""
    return int(_stat(pid)[12]) / TICKS


def resident_mb(pid: int) -> float:
    """Resident memory of process ``pid`` now, MB."""
    return _status_mb(pid, "VmRSS")


def minor_faults(pid: int) -> int:
    """Minor page faults of process ``pid`` so far (field 10 of ``/proc/<pid>/stat``)."""
    return int(_stat(pid)[7])


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def cpu_pressure_us() -> int:
    """Microseconds since boot in which at least one task was ready to run and waited for a core (the kernel's
    pressure stall information, ``/proc/pressure/cpu``, line ``some``): its growth per second of wall time is the
    share of the time the machine's CPU was saturated. 0 where the kernel does not keep it."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return int(line.rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return 0


def cores_busy(since: tuple[int, int]) -> float:
    """How many of the machine's cores were busy on average since ``since`` (a :func:`machine_busy` reading)."""
    busy, total = (now - then for then, now in zip(since, machine_busy(), strict=True))
    return busy / max(1, total) * (os.cpu_count() or 1)


def peak_rss_mb(pid: int) -> float:
    """The most resident memory process ``pid`` has had, MB."""
    return _status_mb(pid, "VmHWM")


def _status_mb(pid: int, key: str) -> float:
    """A memory figure of ``/proc/<pid>/status`` (given there in kB), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def service_env(cores: int) -> dict[str, str]:
    """The measured service: pp-ocr for every request (the engine also called directly), a page per core."""
    return {"OCR_CONCURRENCY": str(cores), "OCR_ENGINE": "pp-ocr"}


def direct(pages: list[bytes], threads: int) -> float:
    from io import BytesIO

    from PIL import Image

    engine = PpOcrEngine(parallel=1, threads=threads)
    engine.load()
    images = [Image.open(BytesIO(p)).convert("RGB") for p in pages]
    engine.recognize(images[:1], ("en",))
    began = time.perf_counter()
    for image in images:
        engine.recognize([image], ("en",))
    return len(images) / (time.perf_counter() - began)


def http_run(url: str, pages: list[bytes], clients: int, pid: int) -> tuple[float, float]:
    """(pages/s, cores busy in the server) with ``clients`` concurrent clients, one page per request."""
    work = list(enumerate(pages))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            while True:
                with lock:
                    if not work:
                        return
                    _, page = work.pop()
                response = http.post("/ocr", files={"file": ("p.png", page)})
                response.raise_for_status()

    cpu0, began = cpu_seconds(pid), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - began
    return len(pages) / wall, (cpu_seconds(pid) - cpu0) / wall


def health_under_load(url: str, pages: list[bytes], clients: int = 4) -> list[float]:
    done = threading.Event()
    latencies: list[float] = []

    def poll() -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            while not done.is_set():
                began = time.perf_counter()
                http.get("/health").raise_for_status()
                latencies.append((time.perf_counter() - began) * 1000)
                time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        http_run(url, pages, clients, os.getpid())
    finally:
        done.set()
        poller.join()
    return latencies


def peak_rss_for(pages: int, cores: int) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, PDF bytes) of a fresh server process that OCRs one ``pages``-page PDF."""
    document = text_pdf(pages)
    with tempfile.TemporaryDirectory() as tmp, ServiceProcess(Path(tmp), env=service_env(cores)) as server:
        server.wait_ready()
        assert server.process is not None
        with httpx.Client(base_url=server.url, timeout=600) as http:
            began = time.perf_counter()
            job = http.post("/jobs", files={"file": ("big.pdf", document)})
            job.raise_for_status()
            status_url = job.json()["status_url"]
            while http.get(status_url).json()["status"] in ("queued", "running"):
                time.sleep(0.5)
            took = time.perf_counter() - began
            assert http.get(status_url).json()["status"] == "succeeded"
        return peak_rss_mb(server.process.pid), took, len(document)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=24, help="pages sent per client count")
    parser.add_argument(
        "--pdf-pages",
        type=lambda v: [int(n) for n in v.split(",")],
        default=[1, 20, 100, 200],
        help="page counts of the PDFs whose peak RSS is measured, each in a fresh server",
    )
    parser.add_argument("--write", type=Path, help="replace the foundation section of this Markdown file")
    args = parser.parse_args()

    settings = Settings()
    cores = os.cpu_count() or 1
    pages = bench_pages(args.requests)
    lines = [f"Machine: {cores} cores, Python {sys.version.split()[0]}; {args.requests} A4 pages (PNG, ~24 lines).", ""]

    threads = settings.threads_per_worker
    direct_same = direct(pages[:8], threads)
    direct_all_cores = direct(pages[:8], cores)
    lines += [
        "| Measurement | Result |",
        "|---|---|",
        f"| Engine called directly, {threads} thread(s) (the service's per-worker setting) "
        f"| {direct_same:.2f} pages/s |",
        f"| Engine called directly, {cores} threads | {direct_all_cores:.2f} pages/s |",
    ]

    with tempfile.TemporaryDirectory() as tmp, ServiceProcess(Path(tmp), env=service_env(cores)) as server:
        server.wait_ready()
        assert server.process is not None
        pid = server.process.pid
        http_run(server.url, pages[:2], 1, pid)  # warm up
        for clients in (1, 2, 4):
            rate, busy = http_run(server.url, pages, clients, pid)
            note = f" ({rate / direct_same:.2f}x direct)" if clients == 1 else ""
            lines.append(
                f"| HTTP, {clients} client(s), OCR_CONCURRENCY={cores} "
                f"| {rate:.2f} pages/s{note}, {busy:.2f} cores busy |"
            )
        latencies = health_under_load(server.url, pages)
        lines.append(
            f"| `/health` while 4 OCR clients run ({len(latencies)} probes) | "
            f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
            f"max {max(latencies):.1f} ms |"
        )

    for pages in args.pdf_pages:
        rss, took, size = peak_rss_for(pages, cores)
        lines.append(
            f"| Peak RSS of a fresh server that processed one {pages}-page PDF through `/jobs` "
            f"({size / 1e6:.1f} MB, {took:.0f} s) | {rss:.0f} MB |"
        )

    lines += ["", "Command: `make bench` (= `.venv/bin/python scripts/bench.py --write BENCHMARKS.md`)"]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(args.write, "foundation", report)


def write_section(path: Path, name: str, body: str, *, title: str | None = None) -> None:
    """Replace the text between ``<!-- bench:name -->`` markers (append the section when missing).

    ``title``: the section keeps its runs. ``body`` goes in as ``### Run N: <title> (current code, <date>, main at
    <commit>)`` above the runs already there (``### Run ...`` headings), which stay as they are, the last one's
    "current code" mark removed."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    present = start in text and end in text
    if title is not None:
        old = text[text.index(start) + len(start) : text.index(end)] if present else ""
        body = with_history(body, old, title)
    block = f"{start}\n{body}\n{end}"
    if present:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


RUN_HEADING = re.compile(r"^### Run (\d+)", re.MULTILINE)


def with_history(body: str, old: str, title: str, when: str | None = None, commit: str | None = None) -> str:
    """``body`` headed as the next run, followed by the runs of ``old`` (its text from its first run heading on)."""
    numbers = [int(n) for n in RUN_HEADING.findall(old)]
    first = RUN_HEADING.search(old)
    earlier = old[first.start() :].strip() if first else ""
    earlier = earlier.replace("(current code, ", "(", 1)
    when = when or time.strftime("%Y-%m-%d %H:%M")
    commit = commit or git_commit()
    heading = f"### Run {max(numbers, default=0) + 1}: {title} (current code, {when}, main at {commit})"
    return "\n\n".join(part for part in (heading, body.strip(), earlier) if part)


def git_commit() -> str:
    """The short commit of the working tree (``+`` when it has changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+" if dirty else "")


if __name__ == "__main__":
    main()
