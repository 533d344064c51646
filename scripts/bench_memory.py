#!/usr/bin/env python3
"""Memory of the service per CPU engine: RSS when ready and idle, peak under load, idle after the load.

Usage: .venv/bin/python scripts/bench_memory.py [--workers 1,2,4] [--requests 2] [--write BENCHMARKS.md]

For each engine (pp-ocr alone, tesseract alone, and both as ``OCR_CPU_ENGINES=auto`` loads them) and each
``OCR_CONCURRENCY`` in ``--workers``, a fresh server (``python -m app``) is started and measured:

  1. RSS once the engines are ready, before any request;
  2. peak RSS (``VmHWM``) while ``2 x OCR_CONCURRENCY`` clients each send ``--requests`` sync ``POST /ocr`` of
     a 2-page scanned A4 PDF at ``dpi=300`` (the default ``MAX_DPI``: the largest pages a request can ask for);
  3. RSS 5 s after the load, when the server is idle again.

The recommendation for the container's memory is derived from the largest peak per engine set: the per-worker
increment is fitted from the measured concurrencies, and a margin is added (see the report).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench import write_section  # noqa: E402
from tests.support.documents import ENGLISH_LINES, pdf_bytes, render_page  # noqa: E402
from tests.support.server import ServiceProcess  # noqa: E402

ENGINES = {
    "pp-ocr": {"OCR_CPU_ENGINES": "pp-ocr", "OCR_LANGUAGES": "en"},
    "tesseract": {"OCR_CPU_ENGINES": "tesseract", "OCR_LANGUAGES": "en"},
    "both (auto), requests to pp-ocr": {"OCR_CPU_ENGINES": "auto", "OCR_LANGUAGES": "en"},
}


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def document() -> bytes:
    """A 2-page scanned-style PDF with ~24 lines a page."""
    pages = []
    for n in range(2):
        lines = [f"Memory benchmark page {n + 1}"] + [ENGLISH_LINES[(n + i) % len(ENGLISH_LINES)] for i in range(23)]
        pages.append(render_page(lines, font_size=24, top=90, gap=2.6))
    return pdf_bytes(pages)


def measure(env: dict[str, str], workers: int, requests: int, pdf: bytes) -> tuple[float, float, float, float]:
    """(ready MB, peak MB under load, idle-after MB, seconds of load) for one fresh server."""
    clients = 2 * workers
    with tempfile.TemporaryDirectory() as tmp:
        server_env = {**env, "OCR_CONCURRENCY": str(workers)}
        with ServiceProcess(Path(tmp), env=server_env) as server:
            server.wait_ready(300)
            assert server.process is not None
            pid = server.process.pid
            time.sleep(2)
            ready = status_kb(pid, "VmRSS") / 1024

            def client() -> None:
                with httpx.Client(base_url=server.url, timeout=600) as http:
                    for _ in range(requests):
                        answer = http.post("/ocr", files={"file": ("scan.pdf", pdf)}, data={"dpi": "300"})
                        answer.raise_for_status()

            began = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                for future in [pool.submit(client) for _ in range(clients)]:
                    future.result()
            took = time.perf_counter() - began
            peak = status_kb(pid, "VmHWM") / 1024
            time.sleep(5)
            idle = status_kb(pid, "VmRSS") / 1024
    return ready, peak, idle, took


def recommend(peaks: dict[int, float]) -> tuple[float, float]:
    """(base MB, MB per worker) fitted through the smallest and largest measured concurrency."""
    low, high = min(peaks), max(peaks)
    per_worker = (peaks[high] - peaks[low]) / (high - low) if high > low else 0.0
    return peaks[low] - per_worker * low, max(per_worker, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=lambda v: [int(n) for n in v.split(",")], default=[1, 2, 4])
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--write", type=Path, help="replace the memory section of this Markdown file")
    args = parser.parse_args()

    pdf = document()
    load_before = os.getloadavg()[0]
    rows = [
        "| Engines | OCR_CONCURRENCY | clients | RSS ready, idle | peak RSS under load | RSS idle after load "
        "| load took |",
        "|---|---|---|---|---|---|---|",
    ]
    fits: list[str] = []
    for name, env in ENGINES.items():
        peaks: dict[int, float] = {}
        for workers in args.workers:
            ready, peak, idle, took = measure(env, workers, args.requests, pdf)
            peaks[workers] = peak
            rows.append(
                f"| {name} | {workers} | {2 * workers} | {ready:.0f} MB | {peak:.0f} MB | {idle:.0f} MB "
                f"| {took:.0f} s |"
            )
            print(rows[-1], flush=True)
        base, per_worker = recommend(peaks)
        fits.append(f"| {name} | {base:.0f} MB | {per_worker:.0f} MB |")
    load_after = os.getloadavg()[0]

    lines = [
        f"Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; load average {load_before:.1f} before and "
        f"{load_after:.1f} after (the machine is **shared with other sessions' work**: times are noisy; memory is "
        "the process's own). One fresh server per row; each client sends "
        f"{args.requests} sync `POST /ocr` of a 2-page scanned A4 PDF at `dpi=300`; RSS from `/proc/<pid>/status` "
        "(`VmRSS`; the peak is `VmHWM`).",
        "",
        *rows,
        "",
        "Fitted peak = base + per worker x `OCR_CONCURRENCY` (through the smallest and largest concurrency measured):",
        "",
        "| Engines | base | per worker |",
        "|---|---|---|",
        *fits,
        "",
        "Command: `.venv/bin/python scripts/bench_memory.py --write BENCHMARKS.md`",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(args.write, "memory", report)


if __name__ == "__main__":
    main()
