"""``python -m app.client`` (the batch client) as a subprocess against the real service: through the platform
gateway with short-lived IAM tokens, interrupted and resumed, and against a queue that answers 429."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.cloud import IAM_PATH, GatewayState, IamState, gateway_app, iam_app
from tests.support.documents import ENGLISH_LINES, cer, image_bytes, render_page, text_pdf
from tests.support.server import ROOT, ServiceProcess, ThreadServer, wait_for

pytestmark = pytest.mark.integration

KEY_ID = "batch-key-id"
IAM_SECRET = "batch-iam-secret-value"  # pragma: allowlist secret
SERVICE_KEY = "batch-service-key"  # pragma: allowlist secret
CLIENT_VARIABLES = ("CLOUD_RU_", "SERVICE_API_KEY")


@dataclass
class Stack:
    service: ServiceProcess
    iam: IamState
    iam_url: str
    gateway: GatewayState
    gateway_url: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The service (API_KEY on, one document at a time in its queue) behind the IAM and gateway stand-ins.

    Tokens live 2 s, so a batch run outlives several of them.
    """
    env = {"API_KEY": SERVICE_KEY, "MAX_QUEUED_JOBS": "1"}
    with ServiceProcess(tmp_path_factory.mktemp("batch"), env=env) as service:
        service.wait_ready()
        iam = IamState(KEY_ID, IAM_SECRET, ttl_s=2)
        gateway = GatewayState(iam, service.url)
        with ThreadServer(iam_app(iam)) as iam_server, ThreadServer(gateway_app(gateway)) as gateway_server:
            yield Stack(service, iam, iam_server.url + IAM_PATH, gateway, gateway_server.url)


def lines_for(number: int) -> list[str]:
    return [f"Batch document number {number}", *ENGLISH_LINES[number % 4 : number % 4 + 3]]


def make_corpus(root: Path) -> dict[str, str]:
    """Documents of known text: PNG, JPEG, a 2-page PDF, one in a sub-folder; plus files to be ignored."""
    expected = {}
    for number, name in enumerate(["alpha.png", "beta.jpg", "sub/delta.png"], start=1):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = "JPEG" if name.endswith(".jpg") else "PNG"
        path.write_bytes(image_bytes(render_page(lines_for(number), size=(900, 320), top=40), fmt))
        expected[name] = "\n".join(lines_for(number))
    (root / "gamma.pdf").write_bytes(text_pdf(2, lambda page: lines_for(10 + page)))
    expected["gamma.pdf"] = "\n".join(lines_for(11) + lines_for(12))
    (root / "notes.txt").write_text("not a document")
    (root / ".hidden.png").write_bytes(b"ignored")
    return expected


def client_env(**variables: str) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith(CLIENT_VARIABLES)}
    return {**base, "PYTHONPATH": str(ROOT), **variables}


def platform_env(stack: Stack) -> dict[str, str]:
    return client_env(
        CLOUD_RU_INFERENCE_URL=stack.gateway_url,
        CLOUD_RU_IAM_URL=stack.iam_url,
        CLOUD_RU_IAM_KEY_ID=KEY_ID,
        CLOUD_RU_IAM_SECRET=IAM_SECRET,
        SERVICE_API_KEY=SERVICE_KEY,
    )


def batch_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.client", *args, "--dpi", "75", "--poll-interval", "0.2", "--no-progress"]


def run_client(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def jobs_posted(service: ServiceProcess, status: int) -> float:
    """``POST /jobs`` requests answered with ``status`` so far, from the service's /metrics."""
    metrics = httpx.get(service.url + "/metrics").text
    pattern = rf'^http_requests_total{{method="POST",route="/jobs",status="{status}"}} (\S+)$'
    found = re.search(pattern, metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def completed(out: Path) -> set[str]:
    """Sources whose JSON output carries the client's completion block."""
    done = set()
    for path in out.rglob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        done.add(data["client"]["source"])
    return done


def assert_outputs(out: Path, expected: dict[str, str]) -> None:
    for name, text in expected.items():
        stem = str(Path(name).with_suffix(""))
        markdown = (out / f"{stem}.md").read_text(encoding="utf-8")
        result = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        assert cer(text, markdown) <= 0.05, (name, markdown)
        assert cer(text, result["text"]) <= 0.05
        assert result["client"]["source"] == name
        assert len(result["client"]["sha256"]) == 64
        assert result["page_count"] == (2 if name.endswith(".pdf") else 1)


def test_interrupted_batch_resumes_without_redoing_finished_work(stack: Stack, tmp_path: Path) -> None:
    docs, out = tmp_path / "docs", tmp_path / "out"
    expected = make_corpus(docs)
    journal = out / ".ocr-batch-jobs.jsonl"
    command = batch_command(
        str(docs), "--output-dir", str(out), "--recursive", "--concurrency", "1", "--max-retry-wait", "0.5"
    )

    # First run: stopped (SIGTERM) once the second document's job has been submitted.
    process = subprocess.Popen(
        command, cwd=tmp_path, env=platform_env(stack), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for(lambda: journal.exists() and len(journal.read_text().splitlines()) >= 2, 120, "two submitted jobs")
    finally:
        process.send_signal(signal.SIGTERM)
        first_output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, first_output
    assert "interrupted" in first_output
    submitted = {json.loads(line)["source"] for line in journal.read_text().splitlines()}
    finished = completed(out)
    assert finished and finished <= submitted < set(expected)
    times = {path: path.stat().st_mtime_ns for path in out.rglob("*.*")}

    # Second run: skips the finished, picks up the submitted job, submits only the rest.
    posted = jobs_posted(stack.service, 202)
    issued = stack.iam.issued
    result = run_client(command, tmp_path, platform_env(stack), 300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert jobs_posted(stack.service, 202) - posted == len(expected) - len(submitted)
    assert f"skipped: {len(finished)} " in result.stdout
    if submitted - finished:
        assert f"{len(submitted - finished)} picked up from an earlier run" in result.stdout
    for path, mtime in times.items():  # finished outputs were not written again
        if path.suffix in (".md", ".json"):
            assert path.stat().st_mtime_ns == mtime, path
    assert_outputs(out, expected)
    assert not (docs / "alpha.md").exists()  # outputs went to --output-dir only
    assert stack.iam.issued > issued
    # A third run has nothing left to do.
    again = run_client(command, tmp_path, platform_env(stack), 120)
    assert again.returncode == 0 and f"skipped: {len(expected)} " in again.stdout
    assert IAM_SECRET not in result.stdout + result.stderr + first_output


def test_a_full_queue_is_waited_out(stack: Stack, tmp_path: Path) -> None:
    """A long job fills the queue (MAX_QUEUED_JOBS=1): the client's submissions get 429 and are retried;
    once the long job is cancelled, everything is done."""
    docs = tmp_path / "docs"
    expected = {name: text for name, text in make_corpus(docs).items() if "/" not in name}
    with httpx.Client(base_url=stack.service.url, headers={"X-API-Key": SERVICE_KEY}, timeout=60) as http:
        # pp-ocr: slower than tesseract (auto's pick for English), so the blocker outlasts three refusals
        blocker = http.post("/jobs", files={"file": ("long.pdf", text_pdf(40))}, data={"dpi": "75", "engine": "pp-ocr"})
        assert blocker.status_code == 202, blocker.text
        refused = jobs_posted(stack.service, 429)
        env = client_env(CLOUD_RU_INFERENCE_URL=stack.service.url, SERVICE_API_KEY=SERVICE_KEY)
        command = batch_command(str(docs), "--concurrency", "3", "--max-retry-wait", "0.3", "--retries", "100")
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_for(lambda: jobs_posted(stack.service, 429) >= refused + 3, 60, "three refusals")
        finally:
            assert http.delete(blocker.json()["status_url"]).status_code == 200
            stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stdout + stderr
    assert re.search(r"retries: .*429 x\d+", stdout), stdout
    assert f"done:    {len(expected)} " in stdout
    assert_outputs(docs, expected)  # written beside the inputs
    assert not (docs / "sub" / "delta.md").exists()  # not recursive


def test_refused_credentials_stop_before_any_upload(stack: Stack, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    make_corpus(docs)
    env = {**platform_env(stack), "CLOUD_RU_IAM_SECRET": "wrong-secret"}  # pragma: allowlist secret
    result = run_client(batch_command(str(docs)), tmp_path, env, 60)
    assert result.returncode == 1
    assert "IAM refused the key pair (HTTP 401)" in result.stderr
    env = {**platform_env(stack), "SERVICE_API_KEY": "wrong-key"}  # pragma: allowlist secret
    result = run_client(batch_command(str(docs)), tmp_path, env, 60)
    assert result.returncode == 1
    assert "refused the credentials" in result.stderr
    assert not list(docs.rglob("*.md"))


def test_a_bad_document_fails_alone(stack: Stack, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    (docs / "good.png").write_bytes(image_bytes(render_page(lines_for(7), size=(900, 320), top=40), "PNG"))
    env = client_env(CLOUD_RU_INFERENCE_URL=stack.service.url, SERVICE_API_KEY=SERVICE_KEY)
    result = run_client(batch_command(str(docs)), tmp_path, env, 120)
    assert result.returncode == 1
    assert "broken.pdf: POST /jobs: HTTP 422 corrupt_document" in result.stdout
    assert "failed:  1" in result.stdout and "done:    1 " in result.stdout
    assert_outputs(docs, {"good.png": "\n".join(lines_for(7))})


def test_format_fetches_the_files_people_keep(stack: Stack, tmp_path: Path) -> None:
    """--format pdf,docx,xlsx: a searchable PDF (``.ocr.pdf``, never read as an input) and a Word file beside each
    JSON; no workbook for a document without tables (recorded, not a failure); a second run finds it complete."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "letter.png").write_bytes(image_bytes(render_page(lines_for(3), size=(900, 320), top=40), "PNG"))
    env = client_env(CLOUD_RU_INFERENCE_URL=stack.service.url, SERVICE_API_KEY=SERVICE_KEY)
    result = run_client(batch_command(str(docs), "--format", "json,pdf,docx,xlsx"), tmp_path, env, 120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (docs / "letter.ocr.pdf").read_bytes().startswith(b"%PDF-")
    assert (docs / "letter.docx").read_bytes().startswith(b"PK")
    assert not (docs / "letter.xlsx").exists() and not (docs / "letter.md").exists()
    assert json.loads((docs / "letter.json").read_text(encoding="utf-8"))["client"]["no_tables"] is True
    again = run_client(batch_command(str(docs), "--format", "pdf,docx,xlsx"), tmp_path, env, 120)
    assert again.returncode == 0 and "skipped: 1" in again.stdout, again.stdout
    wrong = run_client(batch_command(str(docs), "--format", "pdf,odt"), tmp_path, env, 60)
    assert wrong.returncode == 2 and "unknown format(s) odt" in wrong.stderr
