#!/usr/bin/env python3
"""This service vs official PaddleX serving, same PaddleOCR-VL pipeline, same VLM stand-in; then this service's
adaptive VLM concurrency against stand-ins of several capacities. One run.

Usage: .venv/bin/python scripts/bench_vs_paddlex.py [--latency 2] [--capacity 16] [--capacities 4,16,64]
       [--seconds 40] [--write BENCHMARKS.md [--title "what changed"]]
       (needs `paddlex[serving]`: `make bench-vs-paddlex` installs it)

--write puts the report in BENCHMARKS.md as the next "### Run N" of the vs-paddlex section, above the runs already
there (kept as written, with the "What it means" paragraphs added to them by hand).

Both servers run the real PaddleOCR-VL pipeline (paddleocr 3.3 / paddlex 3.3, `vllm-server` backend, layout
detection off) against one OpenAI-compatible stand-in that answers each request after --latency seconds and
serves up to --capacity requests at once (a batching VLM server's slots). PaddleX gets its fastest settings
(`use_queues: False`); this service its defaults (`VL_MAX_CONCURRENCY=auto`). Each client sends one A4 page
per request, one request after another: PaddleX through `POST /layout-parsing` (`visualize: false`), this
service through `POST /ocr`. Reported: pages/s, p50/p95 latency, the ratio, and the CPU seconds per page each
server process spent (on this 2-core machine, 2 / CPU-per-page bounds the pages/s a server can reach whatever
the VLM does). Then the fairness check: a 1-page request while a 100-page job runs, against its unloaded latency.

Adaptive concurrency (--capacities): for each capacity a fresh stand-in and a fresh service with default
settings; 1, 4, 16 and 64 clients in turn, each for --seconds (adaptation included: the limit starts where the
previous level left it). The ceiling is min(capacity, clients) / latency; also shown: errors, the limit at the
end of the level (`vlm_concurrency_limit` on /metrics), CPU seconds per page of the service and of this process
(clients and stand-in), and how busy the machine's cores were.

Bursts and replicas (scripts/bench_vlm_bursts.py): bursts on fresh, warm (the same service's second burst) and
restarted services (16 x 4 pages against capacity 16, 64 x 4 against 64, with and without the stand-in's /metrics,
16 x 4 against 4) and, as their yardstick, on a service whose limit is fixed at the capacity; then two and three
replicas on one SeaweedFS bucket and one stand-in (capacity 16 and 64, each replica `capacity` clients x 4 pages;
three replicas against capacity 4). --parts chooses: baseline (PaddleX),
cpu, adaptive, bursts, replicas.

CPU per page (cpu): the baseline's figures come from a few pages each (2 per client) and the CPU clock counts in
10 ms ticks, so this part measures it over more pages: both servers up side by side on one stand-in answering
after --cpu-latency s, --cpu-pages one-page requests from one client, then from 4, to each server in turn, --cpu-rounds
rounds alternating; CPU seconds per page (all of the server's CPU while the client sends, as a deployment pays for
it), of it in the kernel, and minor page faults per page. A third server, this service with --cpu-variant's settings
(by default `OUTPUT_FSYNC=false`: its disk written as with S3 configured, no fsync per file), runs beside them.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.client.api import describe  # noqa: E402
from scripts.bench import (  # noqa: E402
    cores_busy,
    cpu_seconds,
    kernel_seconds,
    machine_busy,
    minor_faults,
    percentile,
    write_section,
)
from scripts.bench_vlm_bursts import fresh_and_restarted, render_bursts, render_replicas, replicas  # noqa: E402
from scripts.bench_vlm_bursts import verdicts as burst_verdicts  # noqa: E402
from tests.support.documents import ENGLISH_LINES, image_bytes, render_page, text_pdf  # noqa: E402
from tests.support.s3server import S3Server  # noqa: E402
from tests.support.server import ServiceProcess, free_port, wait_for  # noqa: E402
from tests.support.vlm_standin import VlmStandin  # noqa: E402

PADDLEX_ENV = {
    "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True",
    "PADDLE_PDX_LOCAL_FONT_FILE_PATH": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
}
PADDLEX_CONFIG = """pipeline_name: PaddleOCR-VL
batch_size: 64
use_queues: False
use_doc_preprocessor: False
use_layout_detection: False
use_chart_recognition: False
format_block_content: False
merge_layout_blocks: True
markdown_ignore_labels: [number, footnote, header, header_image, footer, footer_image, aside_text]
Serving:
  visualize: False
SubModules:
  VLRecognition:
    module_name: vl_recognition
    model_name: PaddleOCR-VL-0.9B
    model_dir: null
    batch_size: 4096
    genai_config:
      backend: vllm-server
      server_url: {url}
"""


def a4_page() -> bytes:
    return image_bytes(render_page(ENGLISH_LINES * 3, font_size=24, gap=2.2), "PNG")


class PaddlexServe:
    """`paddlex --serve` with the PaddleOCR-VL pipeline pointed at the stand-in."""

    def __init__(self, tmp: Path, vlm_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "PaddleOCR-VL.yaml"
        config.write_text(PADDLEX_CONFIG.format(url=vlm_url))
        cli = Path(sys.executable).with_name("paddlex")
        env = {**os.environ, **PADDLEX_ENV, "PADDLE_PDX_CACHE_HOME": str(tmp / "pdx")}
        self.log = (tmp / "paddlex.log").open("wb")
        command = [str(cli), "--serve", "--pipeline", str(config), "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        def healthy() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError("paddlex --serve exited; see paddlex.log")
            try:
                return httpx.get(self.url + "/health", timeout=2).json().get("errorCode") == 0
            except (httpx.HTTPError, ValueError):
                return False

        wait_for(healthy, 180, "paddlex --serve", interval=0.5)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def run_clients(
    send: Callable[[httpx.Client], None], url: str, clients: int, requests: int, pid: int
) -> dict[str, float]:
    """``clients`` threads share ``requests`` requests; latencies, pages/s, and the server's CPU, kernel time and
    minor faults per page."""
    latencies: list[float] = []
    remaining = [requests]
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                began = time.perf_counter()
                send(http)
                with lock:
                    latencies.append(time.perf_counter() - began)

    cpu0, kernel0, faults0, began = cpu_seconds(pid), kernel_seconds(pid), minor_faults(pid), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - began
    return {
        "pages_s": requests / wall,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "cpu_per_page": (cpu_seconds(pid) - cpu0) / requests,
        "kernel_per_page": (kernel_seconds(pid) - kernel0) / requests,
        "faults_per_page": (minor_faults(pid) - faults0) / requests,
    }


def run_for(send: Callable[[httpx.Client], None], url: str, clients: int, seconds: float, pid: int) -> dict[str, Any]:
    """``clients`` closed-loop clients sending for ``seconds`` (each finishes its last request): pages/s of all
    answers over the whole time, latencies, errors (anything but a 200 page), CPU per page of the server ``pid``
    and of this process, cores busy."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    send(http)
                except httpx.HTTPStatusError as exc:
                    with lock:
                        errors[describe(exc.response)[:120]] += 1
                    continue
                except (httpx.HTTPError, AssertionError, ValueError) as exc:
                    with lock:
                        errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                    continue
                with lock:
                    latencies.append(time.perf_counter() - began)

    cpu0, own0, machine0, began = cpu_seconds(pid), cpu_seconds(os.getpid()), machine_busy(), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - began
    busy = cores_busy(machine0)
    pages = max(1, len(latencies))
    return {
        "pages_s": len(latencies) / wall,
        "p50": percentile(latencies, 50) if latencies else float("nan"),
        "p95": percentile(latencies, 95) if latencies else float("nan"),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "cpu_per_page": (cpu_seconds(pid) - cpu0) / pages,
        "own_cpu_per_page": (cpu_seconds(os.getpid()) - own0) / pages,
        "cores_busy": busy,
        "wall": wall,
    }


def vlm_limit(url: str) -> float:
    """The service's current VLM request limit, from /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    match = re.search(r'^vlm_concurrency_limit\{engine="paddleocr-vl"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def ours_env(vlm_url: str, tmp: Path) -> dict[str, str]:
    """This service with its defaults for the VLM (VL_MAX_CONCURRENCY=auto, VL_MODEL_NAME from the server)."""
    return {
        "OCR_ENGINE": "paddleocr-vl",
        "VL_BACKEND": "vllm-server",
        "VL_SERVER_URL": vlm_url,
        "VL_USE_LAYOUT_DETECTION": "false",
        "PADDLE_PDX_CACHE_HOME": str(tmp / "pdx-ours"),
        **PADDLEX_ENV,
    }


def adaptive(args: argparse.Namespace, page: bytes, tmp: Path) -> dict[int, dict[int, dict[str, Any]]]:
    """For each capacity: a fresh stand-in and service, the client levels in turn (see the module docstring)."""

    def send(http: httpx.Client) -> None:
        response = http.post("/ocr", files={"file": ("page.png", page)})
        response.raise_for_status()

    table: dict[int, dict[int, dict[str, Any]]] = {}
    for capacity in args.capacities:
        table[capacity] = {}
        folder = tmp / f"adaptive-{capacity}"
        folder.mkdir()
        with VlmStandin(reply="stand-in text", capacity=capacity) as vlm:
            vlm.delay_s = args.latency
            with ServiceProcess(folder, env=ours_env(vlm.url, folder)) as ours:
                ours.wait_ready(timeout=600)
                assert ours.process is not None
                send(httpx.Client(base_url=ours.url, timeout=600))  # warm up
                for clients in args.adaptive_clients:
                    row = run_for(send, ours.url, clients, args.seconds, ours.process.pid)
                    row["limit"] = vlm_limit(ours.url)
                    row["load"] = os.getloadavg()[0]
                    table[capacity][clients] = row
                    print("adaptive", capacity, clients, row, flush=True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=2.0, help="stand-in seconds per request")
    parser.add_argument("--capacity", type=int, default=16, help="stand-in requests served at once")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--per-client", type=int, default=2, help="requests per client at each level")
    parser.add_argument("--job-pages", type=int, default=100)
    parser.add_argument("--capacities", type=_ints, default=[4, 16, 64], help="stand-in capacities, adaptive part")
    parser.add_argument("--adaptive-clients", type=_ints, default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=40.0, help="seconds per client level, adaptive part")
    parser.add_argument("--skip-paddlex", action="store_true", help="no PaddleX baseline (as --parts without it)")
    parser.add_argument("--parts", default="baseline,cpu,adaptive,bursts,replicas", help="what to run, comma-separated")
    parser.add_argument("--cpu-latency", type=float, default=0.5, help="stand-in seconds per request, cpu part")
    parser.add_argument("--cpu-pages", type=int, default=40, help="pages per measurement, cpu part")
    parser.add_argument("--cpu-rounds", type=int, default=2, help="rounds alternating the servers, cpu part")
    parser.add_argument(
        "--cpu-variant",
        default="OUTPUT_FSYNC=false",
        help="cpu part: a third server, this service with these settings (NAME=VALUE ...; '' for none); the default "
        "writes its disk as with S3 configured",
    )
    parser.add_argument("--write", type=Path)
    parser.add_argument(
        "--title",
        default="a run of this bench",
        help="what changed since the last run: with --write the section keeps its earlier runs under this one",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(",")) - ({"baseline"} if args.skip_paddlex else set())
    levels = [int(c) for c in args.clients.split(",")]
    page = a4_page()
    b64 = base64.b64encode(page).decode()

    def paddlex_send(http: httpx.Client) -> None:
        response = http.post("/layout-parsing", json={"file": b64, "fileType": 1, "visualize": False})
        response.raise_for_status()
        assert response.json()["errorCode"] == 0

    def ours_send(http: httpx.Client) -> None:
        response = http.post("/ocr", files={"file": ("page.png", page)})
        response.raise_for_status()

    rows: dict[str, dict[int, dict[str, float]]] = {"paddlex": {}, "ours": {}}
    fairness: dict[str, float] = {}
    bursts: list[dict[str, Any]] = []
    fleets: list[dict[str, Any]] = []
    table: dict[int, dict[int, dict[str, Any]]] = {}
    cpu_rows: list[dict[str, Any]] = []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "baseline" in parts:
            fairness = baseline(args, levels, rows, paddlex_send, ours_send, tmp)
        if "cpu" in parts:
            cpu_rows = cpu_per_page(args, paddlex_send, ours_send, tmp)
        if "adaptive" in parts:
            table = adaptive(args, page, tmp)
        if "bursts" in parts:
            cases = [(16, 16, 4, False), (64, 64, 4, False), (64, 64, 4, True), (4, 16, 4, False)]
            bursts = fresh_and_restarted(ours_env, page, tmp, args.latency, cases)
        if "replicas" in parts:
            with S3Server(tmp / "s3") as s3:
                cases_r = [(16, 2, 16, 4), (16, 3, 16, 4), (64, 2, 64, 4), (64, 3, 64, 4), (4, 3, 16, 2)]
                fleets = replicas(ours_env, page, tmp, args.latency, s3, cases_r)

    sections = []
    if "baseline" in parts:
        sections.append(render(args, levels, rows, fairness))
    if cpu_rows:
        sections.append(render_cpu(args, cpu_rows))
    if table:
        sections.append(render_adaptive(args, table))
    if bursts or fleets:
        lines = render_bursts(bursts, args.latency) if bursts else []
        lines += ["", *render_replicas(fleets, args.latency)] if fleets else []
        lines += ["", *burst_verdicts(bursts, fleets)]
        sections.append("\n".join(lines))
    minutes = (time.time() - started) / 60
    sections.append(
        f"Run: {time.strftime('%Y-%m-%d %H:%M')}, {minutes:.0f} min, parts {','.join(sorted(parts))}; 1-minute load "
        f"average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared with other work).\n\n"
        "Command: `make bench-vs-paddlex` (installs `paddlex[serving]==3.3.13`, then runs "
        "`.venv/bin/python scripts/bench_vs_paddlex.py --write BENCHMARKS.md`)"
    )
    report = "\n\n".join(sections)
    print(report)
    if args.write:
        write_section(args.write, "vs-paddlex", report, title=args.title)


def cpu_per_page(
    args: argparse.Namespace,
    paddlex_send: Callable[[httpx.Client], None],
    ours_send: Callable[[httpx.Client], None],
    tmp: Path,
) -> list[dict[str, Any]]:
    """PaddleX, this service and (``--cpu-variant``) this service with other settings, on one stand-in; per round, 1
    and then 4 clients to each in turn (see the module docstring)."""
    found = []
    variant = dict(item.split("=", 1) for item in args.cpu_variant.split()) if args.cpu_variant else {}
    with VlmStandin(reply="stand-in text", capacity=64) as vlm, contextlib.ExitStack() as stack:
        vlm.delay_s = args.cpu_latency
        (tmp / "cpu-paddlex").mkdir()
        paddlex = PaddlexServe(tmp / "cpu-paddlex", vlm.url)
        stack.callback(paddlex.stop)
        paddlex.wait_ready()
        servers = [("PaddleX", paddlex.url, paddlex.process.pid, paddlex_send)]
        ours_envs: list[tuple[str, str, dict[str, str]]] = [("ours", "cpu-ours", {})]
        if variant:
            ours_envs.append(("ours " + args.cpu_variant, "cpu-variant", variant))
        for name, folder, extra in ours_envs:
            (tmp / folder).mkdir()
            ours = stack.enter_context(ServiceProcess(tmp / folder, env={**ours_env(vlm.url, tmp / folder), **extra}))
            ours.wait_ready(timeout=300)
            assert ours.process is not None
            servers.append((name, ours.url, ours.process.pid, ours_send))
        for _, url, _, send in servers:  # warm up: the first pages load lazily imported code
            with httpx.Client(base_url=url, timeout=600) as http:
                for _ in range(4):
                    send(http)
        for round_ in range(1, args.cpu_rounds + 1):
            for clients in (1, 4):
                for name, url, pid, send in servers:
                    row: dict[str, Any] = dict(run_clients(send, url, clients, args.cpu_pages, pid))
                    row.update(server=name, clients=clients, round=round_)
                    found.append(row)
                    print("cpu", row, flush=True)
    return found


def render_cpu(args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    names = list(dict.fromkeys(r["server"] for r in rows))
    lines = [
        f"CPU per page: the servers side by side on one stand-in answering after {args.cpu_latency:g} s; "
        f"{args.cpu_pages} one-page requests per measurement from 1 and from 4 clients, to each server in turn, "
        f"{args.cpu_rounds} rounds; all of the server process's CPU while its client sent (idle moments included).",
        "",
        "| Clients | round | "
        + " | ".join(f"{name} CPU s/page (kernel)" for name in names)
        + " | minor faults per page, "
        + " / ".join(names)
        + " |",
        "|---|---|" + "---|" * (len(names) + 1),
    ]
    by_key = {(r["server"], r["clients"], r["round"]): r for r in rows}
    for clients in (1, 4):
        for round_ in range(1, args.cpu_rounds + 1):
            found = [by_key[(name, clients, round_)] for name in names]
            lines.append(
                f"| {clients} | {round_} | "
                + " | ".join(f"{r['cpu_per_page']:.4f} ({r['kernel_per_page']:.4f})" for r in found)
                + " | "
                + " / ".join(f"{r['faults_per_page']:,.0f}" for r in found)
                + " |"
            )
    lines.append("")
    for clients in (1, 4):
        mean = {
            name: statistics.mean(r["cpu_per_page"] for r in rows if r["server"] == name and r["clients"] == clients)
            for name in names
        }
        p = mean["PaddleX"]
        for name in names[1:]:
            o = mean[name]
            lines.append(
                f"- {clients} client(s): PaddleX {p:.4f}, {name} {o:.4f} CPU s/page on average ({o / p - 1:+.0%}); "
                f"target: PaddleX's figure or below: {'met' if o <= p else 'missed'}."
            )
    return "\n".join(lines)


def baseline(
    args: argparse.Namespace,
    levels: list[int],
    rows: dict[str, dict[int, dict[str, float]]],
    paddlex_send: Callable[[httpx.Client], None],
    ours_send: Callable[[httpx.Client], None],
    tmp: Path,
) -> dict[str, float]:
    """PaddleX serving and this service on one stand-in of --capacity; then the fairness check."""
    with VlmStandin(reply="stand-in text", capacity=args.capacity) as vlm:
        vlm.delay_s = args.latency

        paddlex = PaddlexServe(tmp, vlm.url)
        try:
            paddlex.wait_ready()
            paddlex_send(httpx.Client(base_url=paddlex.url, timeout=600))  # warm up
            for clients in levels:
                rows["paddlex"][clients] = run_clients(
                    paddlex_send, paddlex.url, clients, clients * args.per_client, paddlex.process.pid
                )
                print("paddlex", clients, rows["paddlex"][clients], flush=True)
        finally:
            paddlex.stop()

        (tmp / "ours").mkdir()
        with ServiceProcess(tmp / "ours", env=ours_env(vlm.url, tmp)) as ours:
            ours.wait_ready(timeout=300)
            assert ours.process is not None
            pid = ours.process.pid
            ours_send(httpx.Client(base_url=ours.url, timeout=600))  # warm up
            for clients in levels:
                rows["ours"][clients] = run_clients(ours_send, ours.url, clients, clients * args.per_client, pid)
                print("ours", clients, rows["ours"][clients], flush=True)

            with httpx.Client(base_url=ours.url, timeout=600) as http:
                unloaded = []
                for _ in range(3):
                    began = time.perf_counter()
                    ours_send(http)
                    unloaded.append(time.perf_counter() - began)
                job = http.post("/jobs", files={"file": ("book.pdf", text_pdf(args.job_pages))}, data={"dpi": "100"})
                job.raise_for_status()
                status_url = job.json()["status_url"]
                wait_for(lambda: http.get(status_url).json()["pages_done"] >= 5, 300, "the big job to run")
                loaded = []
                for _ in range(3):
                    began = time.perf_counter()
                    ours_send(http)
                    loaded.append(time.perf_counter() - began)
                progress = http.get(status_url).json()
                http.delete(status_url)
            fairness = {
                "unloaded": statistics.median(unloaded),
                "loaded": max(loaded),
                "job_done": progress["pages_done"],
            }
            print("fairness", fairness, flush=True)
            return fairness


def render(
    args: argparse.Namespace,
    levels: list[int],
    rows: dict[str, dict[int, dict[str, float]]],
    fairness: dict[str, float],
) -> str:
    lines = [
        f"Stand-in VLM: {args.latency:g} s per request, {args.capacity} at once. Both servers: PaddleOCR-VL pipeline "
        "(paddlex 3.3.13, `vllm-server`, layout detection off), one A4 PNG page per request; this service with its "
        "defaults (`VL_MAX_CONCURRENCY=auto`, starting at 16 requests at once with no history: these short runs "
        "include the ramp-up).",
        "",
        "| Clients | PaddleX pages/s | ours pages/s | ratio | PaddleX p50 / p95 s | ours p50 / p95 s | "
        "CPU s/page PaddleX / ours |",
        "|---|---|---|---|---|---|---|",
    ]
    for clients in levels:
        p, o = rows["paddlex"][clients], rows["ours"][clients]
        lines.append(
            f"| {clients} | {p['pages_s']:.2f} | {o['pages_s']:.2f} | {o['pages_s'] / p['pages_s']:.1f}x | "
            f"{p['p50']:.2f} / {p['p95']:.2f} | {o['p50']:.2f} / {o['p95']:.2f} | "
            f"{p['cpu_per_page']:.3f} / {o['cpu_per_page']:.3f} |"
        )
    top = max(levels)
    cpu = rows["ours"][top]["cpu_per_page"]
    lines += [
        "",
        f"CPU bound: at {cpu:.3f} CPU s per page this service cannot exceed about {2 / cpu:.0f} pages/s on 2 cores, "
        f"whatever the VLM server does; the stand-in's own ceiling here is {args.capacity / args.latency:.0f} pages/s.",
        f"Fairness: a 1-page request took {fairness['unloaded']:.2f} s unloaded and at most {fairness['loaded']:.2f} s "
        f"while a {args.job_pages}-page job was running ({fairness['loaded'] / fairness['unloaded']:.1f}x; "
        f"the job had {fairness['job_done']:.0f} pages done when the check ended).",
    ]
    return "\n".join(lines)


def render_adaptive(args: argparse.Namespace, table: dict[int, dict[int, dict[str, Any]]]) -> str:
    lines = [
        f"Adaptive VLM concurrency (`VL_MAX_CONCURRENCY=auto`, the default; no other VL setting but the server): "
        f"stand-ins answering after {args.latency:g} s with 4, 16 or 64 requests at once; each client level runs "
        f"{args.seconds:g} s on the same service, adaptation included. Ceiling = min(capacity, clients) / "
        f"{args.latency:g} s.",
        "",
        "| Capacity | Clients | pages/s | of ceiling | p50 / p95 s | errors | limit after | CPU s/page service / "
        "bench | cores busy | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for capacity, rows in table.items():
        for clients, r in rows.items():
            ceiling = min(capacity, clients) / args.latency
            lines.append(
                f"| {capacity} | {clients} | {r['pages_s']:.2f} | {r['pages_s'] / ceiling:.0%} | "
                f"{r['p50']:.2f} / {r['p95']:.2f} | {r['errors']:.0f} | {r['limit']:.0f} | "
                f"{r['cpu_per_page']:.3f} / {r['own_cpu_per_page']:.3f} | {r['cores_busy']:.2f} | {r['load']:.1f} |"
            )
    lines += ["", *verdicts(args, table)]
    lines += [
        "",
        "`bench` is this process: the clients and the stand-in (decoding every page it receives). `cores busy`: the "
        "whole machine, 2 cores; `load avg`: 1-minute load average at the end of the level.",
    ]
    return "\n".join(lines)


def verdicts(args: argparse.Namespace, table: dict[int, dict[int, dict[str, Any]]]) -> list[str]:
    """The targets, read from the table: share of the ceiling once clients >= capacity, errors, the single
    client's latency over the stand-in's, and for a level short of its ceiling whether the CPU explains it."""
    found = []
    for capacity, rows in table.items():
        loaded = {
            clients: r["pages_s"] / (capacity / args.latency) for clients, r in rows.items() if clients >= capacity
        }
        if loaded:
            shares = ", ".join(f"{share:.1%} at {clients} clients" for clients, share in loaded.items())
            found.append(f"- Capacity {capacity}, clients >= capacity: {shares} of the ceiling (target 85 %).")
        for clients, r in rows.items():
            ceiling = min(capacity, clients) / args.latency
            needed = ceiling * (r["cpu_per_page"] + r["own_cpu_per_page"])
            if r["pages_s"] >= 0.85 * ceiling:
                continue
            service, own = r["cpu_per_page"], r["own_cpu_per_page"]
            spent = f"{service:.3f} CPU s/page in the service + {own:.3f} in clients and stand-in"
            busy = f"the 2 cores were {r['cores_busy']:.2f} busy, load average {r['load']:.1f}"
            if needed >= 1.6:
                reason = (
                    f"CPU-bound: the ceiling needs {needed:.1f} CPU s per second ({spent}); {busy}; the service, "
                    f"one Python process, used {r['pages_s'] * service:.2f} CPU s per second"
                )
            elif r["cores_busy"] >= 1.9:
                reason = (
                    f"short while the machine was busy with other work: the ceiling needs {needed:.1f} CPU s per "
                    f"second ({spent}); {busy}"
                )
            else:
                reason = (
                    f"not the CPU ({busy}): each client also waits for the service's own work (p50 {r['p50']:.2f} s "
                    f"against the stand-in's {args.latency:g} s), and the limit grows from the previous level's in "
                    "the first rounds"
                )
            found.append(f"  - {clients} clients, {r['pages_s'] / ceiling:.1%} of {ceiling:g} pages/s: {reason}.")
    singles = [rows[1]["p50"] for rows in table.values() if 1 in rows]
    if singles:
        extra = max(singles) / args.latency - 1
        found.append(
            f"- A single client: p50 {min(singles):.2f}–{max(singles):.2f} s against the stand-in's {args.latency:g} s "
            f"(at most {extra:+.0%}; target +5 %)."
        )
    kinds: Counter[str] = Counter()
    for rows in table.values():
        for r in rows.values():
            kinds.update(r["error_kinds"])
    errors = "; ".join(f"{count} x {kind}" for kind, count in kinds.most_common())
    found.append(f"- Errors: {errors or 'none'}.")
    return found


def _ints(value: str) -> list[int]:
    return [int(part) for part in value.split(",")]


if __name__ == "__main__":
    main()
