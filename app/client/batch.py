"""Batch OCR of a folder through a deployment's jobs API: bounded concurrency, retries, resume.

Every supported document under the input folder becomes one job. Its outputs, ``<name>.md`` and
``<name>.json`` (the service's JSON result plus a ``client`` block naming the source and its SHA-256), are
written beside it or under ``--output-dir`` in the same tree; the JSON is written last, atomically, and
marks the document complete. Submitted job ids are appended to a journal (``.ocr-batch-jobs.jsonl`` in the
output root), so a run that was interrupted is resumed by the next one: complete documents are skipped and
jobs still known to the deployment are picked up where they are instead of being submitted again.

With ``--rag-export`` each document is sent with a stable ``export_name`` (its path under the input folder), so
that the service's knowledge-base export of a document sent again replaces its file, and the summary lists the
files the knowledge base will see.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from tqdm import tqdm

from app.client.api import DeploymentClient, DeploymentError, Interrupted, RetryPolicy, describe
from app.client.auth import AuthError, service_auth
from app.client.files import (
    JOURNAL_NAME,
    Document,
    Journal,
    export_name_of,
    find_documents,
    is_complete,
    now_iso,
    parse_formats,
    plan_outputs,
    recorded_export,
    sha256_of,
    write_atomic,
)
from app.client.settings import ClientSettings, load_settings

ADOPTABLE = frozenset({"queued", "running", "succeeded"})


@dataclass(frozen=True)
class BatchOptions:
    pages: str | None = None
    dpi: int | None = None
    poll_s: float = 2.0
    job_timeout_s: float = 3600.0
    rag_export: bool = False  # send each document's stable export_name (knowledge-base export)
    formats: tuple[str, ...] = ("md", "json")  # --format


@dataclass
class Outcome:
    document: Document
    status: Literal["done", "skipped", "failed", "interrupted"]
    pages: int = 0
    failed_pages: int = 0
    reason: str = ""
    resumed_job: bool = False
    export: dict[str, Any] | None = None  # the result's storage.rag_export block


class BatchRunner:
    """Runs one document end to end: pick up or submit its job, wait, fetch, write the outputs."""

    def __init__(self, client: DeploymentClient, journal: Journal, options: BatchOptions, url: str) -> None:
        self.client = client
        self.journal = journal
        self.options = options
        self.url = url

    def process(self, document: Document, digest: str) -> Outcome:
        """Never raises for a document's own failures: they come back as a ``failed`` outcome."""
        try:
            return self._process(document, digest)
        except Interrupted:
            return Outcome(document, "interrupted")
        except (DeploymentError, AuthError, OSError) as exc:
            return Outcome(document, "failed", reason=str(exc))

    def _process(self, document: Document, digest: str) -> Outcome:
        job_id = self._resumable_job(document, digest)
        resumed = job_id is not None
        if job_id is None:
            name = export_name_of(document) if self.options.rag_export else None
            accepted = self.client.submit_job(
                document.source.name, document.source.read_bytes(), self.options.pages, self.options.dpi, name
            )
            job_id = str(accepted["id"])
            self.journal.record(document.relative, digest, job_id)
        status = self.client.wait_job(job_id, self.options.poll_s, self.options.job_timeout_s)
        if status["status"] != "succeeded":
            error = status.get("error") or {}
            reason = (
                f"job {job_id} {status['status']}: {error.get('message') or error.get('code') or 'no reason given'}"
            )
            return Outcome(document, "failed", reason=reason, resumed_job=resumed)
        result: dict[str, Any] = self.client.job_result(job_id).json()
        self._write(document, digest, job_id, result)
        failed = len(status.get("failed_pages") or [])
        export = (result.get("storage") or {}).get("rag_export")
        pages = len(result.get("pages", []))
        return Outcome(document, "done", pages=pages, failed_pages=failed, resumed_job=resumed, export=export)

    def _resumable_job(self, document: Document, digest: str) -> str | None:
        """The journal's job for this input when the deployment still has it and it has not failed."""
        job_id = self.journal.job_for(document.relative, digest)
        if job_id is None:
            return None
        status = self.client.job_status(job_id)
        return job_id if status is not None and status.get("status") in ADOPTABLE else None

    def _write(self, document: Document, digest: str, job_id: str, result: dict[str, Any]) -> None:
        """The outputs ``--format`` names, the JSON last (it marks the document complete)."""
        formats = self.options.formats
        if "md" in formats:
            write_atomic(document.markdown, str(result.get("markdown", "")).encode("utf-8"))
        no_tables = False
        for name in (f for f in formats if f not in ("md", "json")):
            response = self.client.request("GET", f"/jobs/{job_id}/result", params={"output": name})
            if name == "xlsx" and response.status_code == 422 and _error_code(response) == "no_tables":
                no_tables = True  # a result without tables has no workbook: not a failure
                continue
            write_atomic(document.output(name), self.client.expect(response, 200).content)
        result["client"] = {
            "source": document.relative,
            "sha256": digest,
            "size": document.source.stat().st_size,
            "job_id": job_id,
            "deployment": self.url,
            "finished_at": now_iso(),
            **({"no_tables": True} if no_tables else {}),
        }
        write_atomic(document.json, json.dumps(result, ensure_ascii=False, indent=1).encode("utf-8"))


def _error_code(response: Any) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class Summary:
    total: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    deferred: int = 0  # left for a later run by --limit
    seconds: float = 0.0
    interrupted: bool = False
    retries: dict[str, int] = field(default_factory=dict)
    rag_export: bool = False  # --rag-export: report the knowledge-base files

    def of(self, status: str) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.status == status]

    def render(self) -> str:
        done, failed = self.of("done"), self.of("failed")
        pages = sum(outcome.pages for outcome in done)
        page_failures = sum(outcome.failed_pages for outcome in done)
        resumed = sum(1 for outcome in done if outcome.resumed_job)
        lines = [
            f"documents: {self.total}",
            f"  done:    {len(done)} ({pages} page(s)"
            + (f", {page_failures} page(s) failed" if page_failures else "")
            + (f", {resumed} picked up from an earlier run" if resumed else "")
            + ")",
            f"  skipped: {len(self.of('skipped'))} (outputs already complete)",
            f"  failed:  {len(failed)}",
        ]
        lines += [f"    {outcome.document.relative}: {outcome.reason}" for outcome in failed]
        unfinished = self.total - self.deferred - len(self.outcomes) + len(self.of("interrupted"))
        if unfinished:
            lines.append(f"  not finished: {unfinished} (interrupted; run again to resume)")
        if self.deferred:
            lines.append(f"  left for a later run: {self.deferred} (--limit)")
        if self.retries:
            lines.append(
                "  retries: " + ", ".join(f"{reason} x{count}" for reason, count in sorted(self.retries.items()))
            )
        rate = f", {pages / self.seconds:.2f} pages/s" if self.seconds > 0 and pages else ""
        lines.append(f"  time: {self.seconds:.1f} s{rate}")
        if self.rag_export:
            lines += export_report(self.of("done") + self.of("skipped"))[0]
        return "\n".join(lines)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        missing = self.rag_export and not export_report(self.of("done") + self.of("skipped"))[1]
        return 1 if self.of("failed") or missing else 0


def export_report(outcomes: Sequence[Outcome]) -> tuple[list[str], bool]:
    """Lines naming the files the knowledge base will see (one per document, from ``storage.rag_export``),
    and whether every document has one."""
    found = [(o.document.relative, o.export or {}) for o in sorted(outcomes, key=lambda o: o.document.relative)]
    exported = [(source, block) for source, block in found if block.get("status") in ("uploaded", "pending")]
    folders = sorted({f"s3://{b.get('bucket')}/{str(b.get('key', '')).rpartition('/')[0]}/" for _, b in exported})
    keys = [str(block["key"]) for _, block in exported]
    lines = [f"knowledge base: {len(set(keys))} file(s) in {', '.join(folders) or 'no folder'}"]
    for source, block in exported:
        key = str(block["key"])
        shared = " (shared with another document: the later one replaces it)" if keys.count(key) > 1 else ""
        pending = ", the service uploads it shortly" if block["status"] == "pending" else ""
        lines.append(f"  {source} -> {key.rpartition('/')[2]} ({block['status']}{pending}){shared}")
    why = {
        "disabled": "the deployment does not export (RAG_EXPORT_PREFIX is not set, or S3 is off)",
        "not_exported": "the service could not write its export (see its log)",
    }
    missing = [(source, block) for source, block in found if (source, block) not in exported]
    for source, block in missing:
        reason = why.get(str(block.get("status")), "no export recorded (an earlier run without it: use --force)")
        lines.append(f"  not in the knowledge base: {source}: {reason}")
    if exported:
        lines.append("  Managed RAG indexes new and replaced files in a new version of the knowledge base.")
    return lines, not missing


def run_batch(
    documents: Sequence[Document],
    runner: BatchRunner,
    concurrency: int,
    *,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> Summary:
    """Skip complete documents, run at most ``limit`` of the rest, ``concurrency`` at a time.

    Ctrl-C (``KeyboardInterrupt``) stops submitting and waiting; what finished is kept and summarised.
    """
    started = time.monotonic()
    summary = Summary(total=len(documents), rag_export=runner.options.rag_export)
    pending: list[tuple[Document, str]] = []
    for document in documents:
        digest = sha256_of(document.source)
        if not force and is_complete(document, digest, runner.options.formats):
            summary.outcomes.append(Outcome(document, "skipped", export=recorded_export(document)))
        else:
            pending.append((document, digest))
    if limit is not None and len(pending) > limit:
        summary.deferred = len(pending) - limit
        pending = pending[:limit]
    bar = tqdm(total=len(pending), unit="doc", desc="OCR", disable=not progress, file=sys.stderr)
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="ocr-batch")
    futures: list[Future[Outcome]] = [pool.submit(runner.process, doc, digest) for doc, digest in pending]
    finished: dict[Future[Outcome], Outcome] = {}
    try:
        for future in as_completed(futures):
            outcome = finished[future] = future.result()
            if outcome.status == "failed":
                bar.write(f"failed: {outcome.document.relative}: {outcome.reason}")
            bar.update(1)
            bar.set_postfix(pages=sum(o.pages for o in finished.values()))
    except KeyboardInterrupt:
        summary.interrupted = True
        runner.client.stop.set()
        bar.write("interrupted: stopping; jobs already on the server are picked up by the next run")
        pool.shutdown(wait=True, cancel_futures=True)
        finished.update({f: f.result() for f in futures if f.done() and not f.cancelled() and f not in finished})
    finally:
        pool.shutdown(wait=True)
        bar.close()
    summary.outcomes += finished.values()
    summary.seconds = time.monotonic() - started
    summary.retries = dict(runner.client.retries.by_reason)
    return summary


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app.client",
        description="OCR every document in a folder through a deployment's jobs API (resumable).",
        epilog="Deployment and credentials come from the environment or .env: CLOUD_RU_INFERENCE_URL; "
        "CLOUD_RU_IAM_KEY_ID + CLOUD_RU_IAM_SECRET (or CLOUD_RU_TOKEN); SERVICE_API_KEY; CLOUD_RU_IAM_URL.",
    )
    parser.add_argument("input", type=Path, help="folder with PDF, PNG, JPEG, TIFF, WebP or BMP documents")
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        help="write outputs here, mirroring the input tree (default: beside each input)",
    )
    parser.add_argument("-r", "--recursive", action="store_true", help="include sub-folders")
    parser.add_argument("-c", "--concurrency", type=int, default=4, help="documents in flight at once (default 4)")
    parser.add_argument("--pages", help="pages of each document, e.g. '1-3,5' (default all)")
    parser.add_argument("--dpi", type=int, help="PDF rasterising resolution (default: the service's)")
    parser.add_argument("--url", help="deployment URL (overrides CLOUD_RU_INFERENCE_URL)")
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="dotenv file (default ./.env)")
    parser.add_argument("--limit", type=int, help="process at most this many documents in this run")
    parser.add_argument("--force", action="store_true", help="redo documents whose outputs are complete")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between job polls (default 2)")
    parser.add_argument("--job-timeout", type=float, default=3600.0, help="give up on one job after this (s)")
    parser.add_argument("--timeout", type=float, default=300.0, help="HTTP timeout per request (s, default 300)")
    parser.add_argument("--retries", type=int, default=8, help="attempts per request on 429/5xx/errors")
    parser.add_argument(
        "--max-retry-wait",
        type=float,
        default=60.0,
        help="longest wait between attempts, Retry-After included (s, default 60)",
    )
    parser.add_argument(
        "--rag-export",
        action="store_true",
        help="name each document's knowledge-base export after its path (export_name), so a new run replaces "
        "it, and list the files the knowledge base will see (needs RAG_EXPORT_PREFIX on the service)",
    )
    parser.add_argument(
        "--format",
        default="md,json",
        help="outputs per document, comma-separated: md, json (always), pdf (searchable), docx, xlsx (the tables; "
        "none for a document without tables); default md,json",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.retries < 1 or (args.limit is not None and args.limit < 0):
        parser.error("--concurrency and --retries must be at least 1, --limit at least 0")
    return args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """The batch client's command line; exit code 0 all done, 1 some failed, 2 unusable setup, 130 stopped."""
    args = parse_args(argv)
    settings = load_settings(args.env_file, args.url)
    problems = settings.problems()
    if not args.input.is_dir():
        problems.append(f"{args.input} is not a folder")
    try:
        parse_formats(args.format)
    except ValueError as exc:
        problems.append(f"--format: {exc}")
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return _run(args, settings)
    except KeyboardInterrupt:  # before the documents were handed out (while hashing, say)
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, settings: ClientSettings) -> int:
    root = args.input
    documents = plan_outputs(root, find_documents(root, args.recursive, args.output_dir), args.output_dir)
    journal = Journal((args.output_dir or root) / JOURNAL_NAME)
    policy = RetryPolicy(attempts=args.retries, max_wait_s=args.max_retry_wait)
    url = settings.cloud_ru_inference_url
    with DeploymentClient(
        url, service_auth(settings), policy=policy, timeout=args.timeout, connections=args.concurrency + 2
    ) as client:
        try:
            check = client.request("GET", "/version")
        except (DeploymentError, AuthError) as exc:
            print(f"error: {url}: {exc}", file=sys.stderr)
            return 1
        if check.status_code in (401, 403):
            print(f"error: {url} refused the credentials: {describe(check)}", file=sys.stderr)
            return 1
        options = BatchOptions(
            args.pages, args.dpi, args.poll_interval, args.job_timeout, args.rag_export, parse_formats(args.format)
        )
        runner = BatchRunner(client, journal, options, url)
        print(f"{len(documents)} documents in {root} -> {args.output_dir or 'beside the inputs'}", file=sys.stderr)
        summary = run_batch(
            documents, runner, args.concurrency, limit=args.limit, force=args.force, progress=not args.no_progress
        )
    print(summary.render())
    return summary.exit_code
