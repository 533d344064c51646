#!/usr/bin/env python3
"""What the S3 mirror adds to a synchronous OCR request, with S3 up and with S3 down, and /health meanwhile.

Usage: .venv/bin/python scripts/bench_s3.py [--requests 30] [--write BENCHMARKS.md]

Two service processes run side by side on this machine: one without S3, one mirroring to a real S3 server
(SeaweedFS over HTTPS with SigV4, tests/support/s3server.py). Requests (a 1-page PDF, ``dpi=75``) alternate
between them, one at a time, so that both see the same machine load. Two measures:

- after OCR: from the server's log line "job ... succeeded" to its access-log line for that request, i.e.
  reading the result, the wait for the S3 upload and the answer. This is where the mirror adds latency;
- end to end: the request's wall time on each service. OCR dominates it and varies by hundreds of ms on a
  busy machine, so the difference of percentiles is mostly noise; it is shown for completeness.

Then S3 hangs (the server is SIGSTOPped: connections open, nothing answers) and then is killed (connections
refused), and the same is measured again: the answer must come within ``S3_UPLOAD_WAIT_S``. Finally S3 is
started again and the time until every pending upload is done is measured. A thread polls ``/health`` of the
mirroring service throughout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench import percentile, write_section  # noqa: E402
from tests.support.documents import text_pdf  # noqa: E402
from tests.support.s3server import S3Server  # noqa: E402
from tests.support.server import ServiceProcess, after_job_ms, wait_for  # noqa: E402

UPLOAD_WAIT_S = 5.0


class HealthProbe:
    """Polls /health every 20 ms in a thread; ``take()`` returns and resets the latencies (ms)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self.done.is_set():
                began = time.perf_counter()
                http.get("/health").raise_for_status()
                self.latencies.append((time.perf_counter() - began) * 1000)
                time.sleep(0.02)

    def take(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken


def timed_ocr(http: httpx.Client, document: bytes) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    response = http.post("/ocr", files={"file": ("one.pdf", document)}, data={"dpi": "75"})
    response.raise_for_status()
    return (time.perf_counter() - began) * 1000, response.json()


def alternate(
    plain: ServiceProcess, mirrored: ServiceProcess, document: bytes, count: int, probe: HealthProbe
) -> dict[str, Any]:
    """``count`` requests to each service, alternating: wall and after-OCR times (ms), S3 statuses, /health."""
    plain_ms, mirrored_ms, statuses = [], [], []
    logs = (len(plain.log()), len(mirrored.log()))
    probe.take()
    with (
        httpx.Client(base_url=plain.url, timeout=120) as plain_http,
        httpx.Client(base_url=mirrored.url, timeout=120) as mirrored_http,
    ):
        for _ in range(count):
            plain_ms.append(timed_ocr(plain_http, document)[0])
            took, body = timed_ocr(mirrored_http, document)
            mirrored_ms.append(took)
            statuses.append(body["storage"]["s3"]["status"])
    time.sleep(0.2)  # the last access-log lines
    return {
        "plain": plain_ms,
        "mirrored": mirrored_ms,
        "plain_after": after_job_ms(plain.log()[logs[0] :]),
        "mirrored_after": after_job_ms(mirrored.log()[logs[1] :]),
        "statuses": statuses,
        "health": probe.take(),
    }


def signed(value: float) -> str:
    return f"{round(value):+d}"


def pair(values: list[float]) -> str:
    return f"{percentile(values, 50):.0f} / {percentile(values, 95):.0f}"


def rows(label: str, run: dict[str, Any]) -> list[str]:
    statuses = ", ".join(f"{run['statuses'].count(s)} {s}" for s in sorted(set(run["statuses"])))
    health = run["health"]
    health_text = f"{percentile(health, 50):.1f} / {percentile(health, 99):.1f} / max {max(health):.1f} ({len(health)})"
    added = [percentile(run["mirrored_after"], q) - percentile(run["plain_after"], q) for q in (50, 95)]
    added_wall = [percentile(run["mirrored"], q) - percentile(run["plain"], q) for q in (50, 95)]
    return [
        f"| {label} | after OCR | {pair(run['plain_after'])} | {pair(run['mirrored_after'])}, "
        f"max {max(run['mirrored_after']):.0f} | **{signed(added[0])} / {signed(added[1])}** "
        f"| {statuses} | {health_text} |",
        f"| | end to end | {pair(run['plain'])} | {pair(run['mirrored'])}, max {max(run['mirrored']):.0f} "
        f"| {signed(added_wall[0])} / {signed(added_wall[1])} (OCR noise) | | |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30, help="requests per service and phase")
    parser.add_argument("--write", type=Path, help="replace the s3 section of this Markdown file")
    args = parser.parse_args()
    document = text_pdf(1)
    env = {"OCR_CONCURRENCY": "1", "S3_UPLOAD_WAIT_S": str(UPLOAD_WAIT_S), "S3_RETRY_MAX_S": "2"}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("plain", "mirrored"):
            (root / name).mkdir()
        s3 = S3Server(root / "s3").start()
        s3.client().create_bucket(Bucket="bench")
        plain = ServiceProcess(root / "plain", env=env).start()
        mirrored = ServiceProcess(root / "mirrored", env={**env, **s3.service_env("bench")}).start()
        probe = HealthProbe(mirrored.url)
        try:
            plain.wait_ready()
            mirrored.wait_ready()
            probe.thread.start()
            alternate(plain, mirrored, document, 3, probe)  # warm up
            up = alternate(plain, mirrored, document, args.requests, probe)
            s3.pause()
            hung = alternate(plain, mirrored, document, max(3, args.requests // 3), probe)
            s3.kill()
            down = alternate(plain, mirrored, document, args.requests, probe)
            pending = mirrored.health()["s3"]["pending_results"]  # type: ignore[index]
            began = time.perf_counter()
            s3.start()
            wait_for(lambda: mirrored.health()["s3"]["pending"] == 0, 120, "the outbox to drain")  # type: ignore[index]
            drained_s = time.perf_counter() - began
        finally:
            probe.done.set()
            mirrored.stop()
            plain.stop()
            s3.kill()

    lines = [
        f"Machine: 2 cores, **shared with other sessions' work while this ran**, so absolute numbers are noisy; "
        f"Python {sys.version.split()[0]}. Two service processes side by side (`OCR_CONCURRENCY=1`), one without S3 "
        f"and one mirroring to SeaweedFS on 127.0.0.1 over HTTPS with SigV4; {args.requests} sync `POST /ocr` of a "
        "1-page PDF (`dpi=75`) to each per phase, alternating. *After OCR* is the server's time from the job's end "
        "to its answer (reading the result, waiting for the S3 upload of `result.md` and `result.json`, "
        "answering); a real Cloud.ru endpoint adds two network round trips to it.",
        "",
        "| Phase | Measure | no S3: p50 / p95 ms | S3 mirror: p50 / p95 ms | added by S3: p50 / p95 ms "
        "| `storage.s3.status` | `/health` of the S3 service: p50 / p99 / max ms (probes) |",
        "|---|---|---|---|---|---|---|",
        *rows("S3 up", up),
        *rows("S3 hangs (SIGSTOP)", hung),
        *rows("S3 down (killed)", down),
        "",
        f"Slowest after-OCR time with S3 hanging: {max(hung['mirrored_after']):.0f} ms "
        f"({sum(1 for t in hung['mirrored_after'] if t > 1000)} of {len(hung['mirrored_after'])} requests waited "
        f"over 1 s); with S3 down: "
        f"{max(down['mirrored_after']):.0f} ms (bound: `S3_UPLOAD_WAIT_S` = {UPLOAD_WAIT_S:.0f} s). Only a request "
        "that meets the trouble first waits (up to the bound, or until the failure is detected); while an upload "
        "hangs longer than the bound or S3 is failing, requests do not wait. After S3 came back, the "
        f"{pending} pending results (and their job files) were uploaded within {drained_s:.1f} s "
        "(`S3_RETRY_MAX_S=2`).",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        command = "`.venv/bin/python scripts/bench_s3.py --write BENCHMARKS.md`"
        write_section(args.write, "s3", f"{report}\n\nCommand: {command}")


if __name__ == "__main__":
    main()
