"""Pure parts of the client: retry timing, settings and masking, document discovery, output paths, resume."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.client.api import RetryPolicy, parse_retry_after
from app.client.batch import Outcome, Summary, export_report
from app.client.files import (
    Document,
    Journal,
    export_name_of,
    find_documents,
    is_complete,
    plan_outputs,
    recorded_export,
    sha256_of,
)
from app.client.settings import ClientSettings, load_settings, mask
from app.iam import refresh_margin

CLIENT_VARIABLES = (
    "CLOUD_RU_INFERENCE_URL",
    "CLOUD_RU_IAM_KEY_ID",
    "CLOUD_RU_IAM_SECRET",
    "CLOUD_RU_TOKEN",
    "CLOUD_RU_IAM_URL",
    "SERVICE_API_KEY",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray ./.env


# --- retries -------------------------------------------------------------------------------------
def test_retry_after_in_seconds_and_as_a_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 0 ") == 0.0
    later = format_datetime(now + timedelta(seconds=45), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(45)
    earlier = format_datetime(now - timedelta(seconds=45), usegmt=True)
    assert parse_retry_after(earlier, now=now.timestamp()) == 0.0
    for unusable in (None, "", "soon", "-5", "1.5e3"):
        assert parse_retry_after(unusable) is None


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(attempts=8, base_s=1.0, max_wait_s=10.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.delay(3, jitter=0.5) == 2.0
    # Retry-After wins over the backoff, within the cap.
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert policy.delay(5, retry_after=0.0) == 0.0
    assert policy.delay(1, retry_after=30.0) == 10.0


def test_tokens_are_replaced_before_they_expire() -> None:
    assert refresh_margin(3600) == 300
    assert refresh_margin(600) == 60
    assert refresh_margin(2) == pytest.approx(0.2)


# --- settings ------------------------------------------------------------------------------------
def test_auth_mode_and_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ClientSettings().auth_mode == "none"
    assert ClientSettings(cloud_ru_token="t").auth_mode == "token"
    both = ClientSettings(cloud_ru_iam_key_id="k", cloud_ru_iam_secret="s", cloud_ru_token="t")
    assert both.auth_mode == "iam"  # the key pair wins: it can be refreshed
    assert ClientSettings(cloud_ru_token="  ").auth_mode == "none"  # empty values are unset
    assert "CLOUD_RU_INFERENCE_URL is not set" in ClientSettings().problems()[0]
    half = ClientSettings(cloud_ru_inference_url="https://x", cloud_ru_iam_key_id="k")
    assert half.problems() == ["set both CLOUD_RU_IAM_KEY_ID and CLOUD_RU_IAM_SECRET, or neither"]
    assert ClientSettings(cloud_ru_inference_url="https://x").problems() == []


def test_environment_wins_over_dotenv_and_the_url_option_over_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("CLOUD_RU_INFERENCE_URL=https://from-file\nSERVICE_API_KEY=file-key\nAPI_KEY=x\n")
    assert load_settings().cloud_ru_inference_url == "https://from-file"
    monkeypatch.setenv("CLOUD_RU_INFERENCE_URL", "https://from-env")
    settings = load_settings()
    assert settings.cloud_ru_inference_url == "https://from-env"
    assert settings.service_api_key is not None and settings.service_api_key.get_secret_value() == "file-key"
    assert load_settings(url=" https://option ").cloud_ru_inference_url == "https://option"
    assert "file-key" not in repr(settings)


def test_masking_never_shows_a_secret() -> None:
    assert mask(None) == mask("") == "(not set)"
    assert mask(SecretStr("hunter2-long-secret")) == "***(19 chars)"
    assert mask("abcdefghijklmnop", keep=4) == "abcd***(16 chars)"
    assert mask("short", keep=4) == "***(5 chars)"  # a prefix only when it is a small part of the value


# --- documents and outputs -----------------------------------------------------------------------
def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_find_documents(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for name in ("a.pdf", "b.PNG", "c.jpeg", "notes.txt", ".hidden.png", "sub/d.tiff", "sub/.git/e.png", "out/f.md"):
        touch(root / name)
    touch(root / "out" / "g.png")
    (root / "folder.pdf").mkdir()
    assert [p.name for p in find_documents(root)] == ["a.pdf", "b.PNG", "c.jpeg"]
    found = find_documents(root, recursive=True, exclude=root / "out")
    assert [p.relative_to(root).as_posix() for p in found] == ["a.pdf", "b.PNG", "c.jpeg", "sub/d.tiff"]


def test_outputs_beside_inputs_and_mirrored(tmp_path: Path) -> None:
    root = tmp_path / "in"
    sources = [root / "report.pdf", root / "scan.pdf", root / "scan.png", root / "x" / "scan.png"]
    beside = {d.relative: (d.markdown, d.json) for d in plan_outputs(root, sources)}
    assert beside["report.pdf"] == (root / "report.md", root / "report.json")
    assert beside["scan.pdf"][0] == root / "scan.pdf.md"  # two inputs share a stem: full names
    assert beside["scan.png"][1] == root / "scan.png.json"
    assert beside["x/scan.png"][0] == root / "x" / "scan.md"  # another folder: no clash
    out = tmp_path / "out"
    mirrored = {d.relative: d.markdown for d in plan_outputs(root, sources, out)}
    assert mirrored["report.pdf"] == out / "report.md"
    assert mirrored["x/scan.png"] == out / "x" / "scan.md"


def test_a_document_is_complete_only_with_both_outputs_of_this_input(tmp_path: Path) -> None:
    source = touch(tmp_path / "doc.png", b"first version")
    (document,) = plan_outputs(tmp_path, [source])
    digest = sha256_of(source)
    assert not is_complete(document, digest)
    document.json.write_text(json.dumps({"pages": [], "client": {"sha256": digest}}))
    assert not is_complete(document, digest)  # Markdown missing
    document.markdown.write_text("text")
    assert is_complete(document, digest)
    source.write_bytes(b"second version")
    assert not is_complete(document, sha256_of(source))  # the input changed
    document.json.write_text('{"pages": [], "client": {"sha256": "' + digest)  # torn
    assert not is_complete(document, digest)


def test_journal_survives_a_torn_line_and_keeps_the_last_job(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.record("a.pdf", "d1", "job-1")
    journal.record("a.pdf", "d1", "job-2")
    journal.record("b.png", "d2", "job-3")
    with path.open("a") as handle:
        handle.write('{"source": "c.png", "sha256": "d3", "job_')
    reloaded = Journal(path)
    assert reloaded.job_for("a.pdf", "d1") == "job-2"
    assert reloaded.job_for("a.pdf", "changed") is None  # a job for another version of the file
    assert reloaded.job_for("b.png", "d2") == "job-3"
    assert reloaded.job_for("c.png", "d3") is None


def test_export_names_follow_the_outputs(tmp_path: Path) -> None:
    for name in ("a.pdf", "sub/b.png", "sub/c.pdf", "sub/c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    documents = plan_outputs(tmp_path, find_documents(tmp_path, recursive=True))
    assert [export_name_of(d) for d in documents] == ["a", "sub/b", "sub/c.pdf", "sub/c.png"]
    assert recorded_export(documents[0]) is None  # no output yet
    documents[0].json.write_text(json.dumps({"storage": {"rag_export": {"status": "uploaded", "key": "kb/a.md"}}}))
    assert recorded_export(documents[0]) == {"status": "uploaded", "key": "kb/a.md"}


def test_the_export_report_names_every_file_and_every_document_without_one(tmp_path: Path) -> None:
    def outcome(source: str, export: dict[str, str] | None, status: str = "done") -> Outcome:
        document = Document(tmp_path / source, source, tmp_path / "x.md", tmp_path / "x.json")
        return Outcome(document, status, export=export)  # type: ignore[arg-type]

    def block(key: str, status: str = "uploaded") -> dict[str, str]:
        return {"status": status, "bucket": "docs", "key": key}

    fine = [outcome("b.pdf", block("kb/b.md", "pending")), outcome("a.pdf", block("kb/a.md"), "skipped")]
    lines, complete = export_report(fine)
    assert complete and lines[:3] == [
        "knowledge base: 2 file(s) in s3://docs/kb/",
        "  a.pdf -> a.md (uploaded)",
        "  b.pdf -> b.md (pending, the service uploads it shortly)",
    ]
    problems = [
        outcome("c.pdf", {"status": "disabled"}),
        outcome("d.pdf", {"status": "not_exported"}),
        outcome("e.pdf", None, "skipped"),
        outcome("f.pdf", block("kb/b.md")),
    ]
    lines, complete = export_report(fine + problems)
    assert not complete
    assert lines[0] == "knowledge base: 2 file(s) in s3://docs/kb/"  # f.pdf's file is b.pdf's
    disabled = "the deployment does not export (RAG_EXPORT_PREFIX is not set, or S3 is off)"
    assert f"  not in the knowledge base: c.pdf: {disabled}" in lines
    assert "  not in the knowledge base: d.pdf: the service could not write its export (see its log)" in lines
    assert any(line.startswith("  not in the knowledge base: e.pdf: no export recorded") for line in lines)
    assert "  f.pdf -> b.md (uploaded) (shared with another document: the later one replaces it)" in lines
    assert Summary(total=6, outcomes=fine + problems, rag_export=True).exit_code == 1
    assert Summary(total=2, outcomes=fine, rag_export=True).exit_code == 0
    assert Summary(total=6, outcomes=fine + problems).exit_code == 0  # without --rag-export nothing is asked


def test_the_client_imports_nothing_of_the_server() -> None:
    """``python -m app.client`` must run where only httpx, tqdm and pydantic-settings are installed (of the service:
    ``app/__init__.py`` and the neutral ``app/iam.py``)."""
    import subprocess
    import sys

    from tests.support.server import ROOT

    server_side = ("fastapi", "starlette", "uvicorn", "rapidocr", "onnxruntime", "numpy", "PIL", "pypdfium2")
    code = (
        "import sys, app.client.batch, app.client.__main__, app.client.api, app.client.auth\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {server_side!r}"
        " or (m.startswith('app.') and not m.startswith('app.client') and m != 'app.iam')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
