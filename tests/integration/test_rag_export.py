"""The knowledge-base export (``RAG_EXPORT_PREFIX``) against a real S3 server (SeaweedFS, see test_s3.py).

Each finished document becomes one file, flat under the prefix, named after the document, marked page by page;
a stable ``export_name`` replaces the file; the retention clean-up deletes exports (only while they are still
the job's); a broken export or an S3 outage never fails or holds up the OCR answer.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from app.engines.pp_ocr import PpOcrEngine
from app.main import create_app
from app.settings import Settings
from app.storage.s3.client import META_OWNER, apply_step
from app.storage.s3.outbox import Item
from tests.support.documents import cer, image_bytes, page_lines, render_page, text_pdf
from tests.support.s3server import S3Server
from tests.support.server import ROOT, ServiceProcess, ThreadServer, wait_for

pytestmark = pytest.mark.integration

FAST = {"dpi": "75"}
RESULTS = "team/ocr"
EXPORTS = "kb/ocr-docs"


class Exporting(NamedTuple):
    server: ServiceProcess
    bucket: str


@pytest.fixture(scope="module")
def exporting(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporting]:
    bucket = s3.new_bucket("kb")
    env = s3.service_env(bucket, CLOUDRU_S3_PREFIX=RESULTS, RAG_EXPORT_PREFIX=f"/{EXPORTS}/", S3_RETRY_MAX_S="1")
    with ServiceProcess(tmp_path_factory.mktemp("exporting"), env=env) as server:
        server.wait_ready()
        yield Exporting(server, bucket)


def exports(s3: S3Server, bucket: str, prefix: str = EXPORTS) -> dict[str, dict[str, Any]]:
    """Every object under the export folder: key -> text, content type, metadata."""
    client = s3.client()
    found = {}
    for obj in client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", []):
        got = client.get_object(Bucket=bucket, Key=obj["Key"])
        found[obj["Key"]] = {
            "text": got["Body"].read().decode("utf-8"),
            "content_type": got["ContentType"],
            "owner": got["Metadata"].get(META_OWNER),
        }
    return found


def drained(health_of: Any, timeout: float = 60) -> None:
    def empty() -> bool:
        health = health_of()
        return bool(health and health["s3"]["pending"] == 0 and health["s3"]["status"] == "configured")

    wait_for(empty, timeout, "the outbox to drain", interval=0.1)


def pages_of(text: str) -> dict[int, str]:
    """Page number -> the export's text under that page's marks (continuations joined)."""
    found: dict[int, list[str]] = {}
    current = 0
    for line in text.splitlines():
        if line.startswith("--- Страница "):
            current = int(line.split()[2])
            continue
        if current:
            found.setdefault(current, []).append(line)
    return {number: "\n".join(lines) for number, lines in found.items()}


def post(client: httpx.Client, path: str, name: str, data: bytes, **form: str) -> dict[str, Any]:
    response = client.post(path, files={"file": (name, data)}, data={**FAST, **form})
    assert response.status_code in (200, 202), response.text
    body: dict[str, Any] = response.json()
    if path == "/jobs":
        wait_for(lambda: client.get(body["status_url"]).json()["status"] == "succeeded", 120, "the job")
        body = client.get(body["result_url"]).json()
    return body


def test_pdf_image_and_selected_pages_each_become_one_named_file(s3: S3Server, exporting: Exporting) -> None:
    server, bucket = exporting
    image = image_bytes(render_page(page_lines(7), size=(1000, 400), top=40), "PNG")
    with httpx.Client(base_url=server.url, timeout=120) as client:
        pdf = post(client, "/ocr", "Договор поставки №5.pdf", text_pdf(2))
        png = post(client, "/ocr", "scan.png", image)
        picked = post(client, "/jobs", "report.pdf", text_pdf(3), pages="1,3")
        expected = {  # key -> (result, document name, page count, {page shown: page_lines(n) it carries})
            f"{EXPORTS}/Договор_поставки_5_{pdf['id']}.md": (pdf, "Договор поставки №5.pdf", 2, {1: 1, 2: 2}),
            f"{EXPORTS}/scan_{png['id']}.md": (png, "scan.png", 1, {1: 7}),
            f"{EXPORTS}/report_{picked['id']}.md": (picked, "report.pdf", 3, {1: 1, 3: 3}),
        }
        for key, (body, *_) in expected.items():
            assert body["storage"]["rag_export"]["key"] == key
            assert body["storage"]["rag_export"]["status"] in ("pending", "uploaded")
            assert body["storage"]["rag_export"]["bucket"] == bucket
        drained(server.health)
        objects = exports(s3, bucket)
        assert set(objects) == set(expected)  # flat: one file per document, nothing else under the prefix
        for key, (body, name, total, shown) in expected.items():
            stored = objects[key]
            assert stored["content_type"] == "text/markdown; charset=utf-8" and stored["owner"] == body["id"]
            text = stored["text"]
            assert text.startswith(f"# {name}\n")
            marks = [line for line in text.splitlines() if line.startswith("--- ")]
            assert marks == [f"--- Страница {n} / {total} · {name} ---" for n in shown]
            by_page = pages_of(text)
            assert sorted(by_page) == sorted(shown)
            for number, source in shown.items():
                assert cer("\n".join(page_lines(source)), by_page[number]) < 0.1, (key, number, by_page[number])
            later = client.get(f"/jobs/{body['id']}/result").json()["storage"]["rag_export"]
            assert later == {"status": "uploaded", "bucket": bucket, "key": key}
        assert (server.output_dir / ".rag-export" / f"{pdf['id']}.md").read_text(encoding="utf-8") == objects[
            f"{EXPORTS}/Договор_поставки_5_{pdf['id']}.md"
        ]["text"]


def test_the_same_export_name_leaves_one_file_with_the_latest_text(s3: S3Server, exporting: Exporting) -> None:
    server, bucket = exporting
    first = text_pdf(1, lambda _: ["Contract forty two, first draft", "Price: one hundred"])
    second = text_pdf(2, lambda n: [f"Contract forty two, final page {n}", "Price: two hundred"])
    with httpx.Client(base_url=server.url, timeout=120) as client:
        old = post(client, "/ocr", "draft.pdf", first, export_name="contracts/contract 42")
        new = post(client, "/jobs", "final.pdf", second, export_name="contracts/contract 42")
        key = f"{EXPORTS}/contracts_contract_42.md"
        assert old["storage"]["rag_export"]["key"] == new["storage"]["rag_export"]["key"] == key
        for bad, why in (("x" * 201, "at most 200"), ("/// !!", "letter or a digit")):
            refused = client.post("/ocr", files={"file": ("a.pdf", first)}, data={"export_name": bad})
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "invalid_export_name" and why in refused.text
        drained(server.health)
    stored = exports(s3, bucket)[key]
    assert stored["owner"] == new["id"]
    assert "final page 2" in stored["text"] and "first draft" not in stored["text"]
    assert "--- Страница 2 / 2 · contracts/contract 42 ---" in stored["text"]
    assert not [k for k in exports(s3, bucket) if "contract" in k and k != key]


def run_batch_client(url: str, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUD_RU_", "SERVICE_API_KEY"))}
    env.update(PYTHONPATH=str(ROOT), CLOUD_RU_INFERENCE_URL=url)
    command = [sys.executable, "-m", "app.client", str(folder), "-r", "--rag-export", "--dpi", "75", *args]
    command += ["--poll-interval", "0.2", "--no-progress", "--env-file", str(folder / "none.env")]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_batch_client_sends_a_folder_and_names_the_files_the_knowledge_base_sees(
    s3: S3Server, exporting: Exporting, tmp_path: Path
) -> None:
    server, bucket = exporting
    folder = tmp_path / "docs"
    for name, number in (("alpha.png", 4), ("sub/delta.png", 5), ("scan.png", 6)):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(image_bytes(render_page(page_lines(number), size=(1000, 400), top=40), "PNG"))
    (folder / "scan.pdf").write_bytes(text_pdf(2))
    files = {
        "alpha.png": "alpha.md",
        "scan.pdf": "scan.pdf.md",
        "scan.png": "scan.png.md",
        "sub/delta.png": "sub_delta.md",
    }

    first = run_batch_client(server.url, folder)
    assert first.returncode == 0, first.stdout + first.stderr
    report = first.stdout.splitlines()
    assert f"knowledge base: 4 file(s) in s3://{bucket}/{EXPORTS}/" in report
    for source, name in files.items():
        assert any(line.startswith(f"  {source} -> {name} (") for line in report), (source, report)
    drained(server.health)
    objects = exports(s3, bucket)
    assert {f"{EXPORTS}/{name}" for name in files.values()} <= set(objects)
    assert "--- Страница 2 / 2 · scan.pdf ---" in objects[f"{EXPORTS}/scan.pdf.md"]["text"]
    assert "--- Страница 1 / 1 · sub/delta ---" in objects[f"{EXPORTS}/sub_delta.md"]["text"]

    edited = image_bytes(render_page(["Revised alpha document", *page_lines(1)], size=(1000, 400), top=40), "PNG")
    (folder / "alpha.png").write_bytes(edited)  # a new version of one document: sent again, its file replaced
    again = run_batch_client(server.url, folder)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "done:    1" in again.stdout and "skipped: 3" in again.stdout
    assert f"knowledge base: 4 file(s) in s3://{bucket}/{EXPORTS}/" in again.stdout
    drained(server.health)
    replaced = exports(s3, bucket)
    assert set(replaced) == set(objects)
    assert replaced[f"{EXPORTS}/alpha.md"]["owner"] != objects[f"{EXPORTS}/alpha.md"]["owner"]
    assert "Revised alpha" in replaced[f"{EXPORTS}/alpha.md"]["text"]

    skipped = run_batch_client(server.url, folder)  # nothing to do: the report comes from the outputs
    assert skipped.returncode == 0 and "skipped: 4" in skipped.stdout
    assert f"knowledge base: 4 file(s) in s3://{bucket}/{EXPORTS}/" in skipped.stdout


@pytest.mark.slow
def test_an_s3_outage_neither_fails_nor_holds_up_the_answer(s3: S3Server, exporting: Exporting) -> None:
    """S3 goes down after the document was accepted (a job is accepted only once it is in the bucket): the answer
    still comes, with the result and its export pending, and both are uploaded once S3 is back."""
    server, bucket = exporting
    answers: list[dict[str, Any]] = []

    def send() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            answers.append(post(client, "/ocr", "outage.pdf", text_pdf(3)))

    accepted = server.log().count(" accepted: ")
    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_for(lambda: server.log().count(" accepted: ") > accepted, 60, "the document to be accepted")
        s3.stop()
        began = time.monotonic()
        sender.join(120)
        assert answers and time.monotonic() - began < 60
        body = answers[0]
        assert body["storage"]["s3"]["status"] == "pending"
        assert body["storage"]["rag_export"]["status"] == "pending"
    finally:
        s3.start()
    drained(server.health, timeout=90)
    stored = exports(s3, bucket)[body["storage"]["rag_export"]["key"]]
    assert "--- Страница 3 / 3 · outage.pdf ---" in stored["text"]


def test_guarded_writes_and_deletes_on_the_bucket(s3: S3Server) -> None:
    """The outbox step itself: an older version never replaces a newer one; a delete needs the owner."""
    bucket, client, key = s3.new_bucket("kb"), s3.client(), "kb/contract.md"

    def step(body: bytes | None, **fields: Any) -> bool:
        return apply_step(client, bucket, Path("/nonexistent"), Item("", key, "text/markdown", **fields), body)

    assert step(b"new", owner="job-b", version="2026-01-02T10:00:00.000+00:00/b")
    assert not step(b"old", owner="job-a", version="2026-01-02T09:00:00.000+00:00/a")  # arrived late
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"new"
    assert not step(None, delete=True, owner="job-a")  # job A's retention: the file is B's now
    assert client.get_object(Bucket=bucket, Key=key)["Metadata"][META_OWNER] == "job-b"
    step(None, delete=True, owner="job-b")
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="kb/")
    step(None, delete=True, owner="job-b")  # already gone: no error


def test_retention_deletes_exports_that_are_still_the_jobs_own(s3: S3Server, tmp_path: Path) -> None:
    """In-process service, plain-text exports: the clean-up removes a job's export unless a later job with the same
    name owns the file by then; a broken export folder fails no job."""
    bucket = s3.new_bucket("kb")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        output_dir=tmp_path,
        rag_export_prefix=EXPORTS,
        rag_export_format="txt",
        cloudru_s3_prefix=RESULTS,
        **{k.lower(): v for k, v in s3.service_env(bucket).items()},
    )
    app = create_app(settings, engine=PpOcrEngine(parallel=1, threads=1))
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        wait_for(lambda: client.get("/health").json()["status"] == "healthy", 60, "engine ready")
        single = post(client, "/ocr", "single.pdf", text_pdf(1))
        old = post(client, "/ocr", "v1.pdf", text_pdf(1), export_name="act")
        time.sleep(0.05)
        new = post(client, "/ocr", "v2.pdf", text_pdf(2), export_name="act")
        drained(lambda: client.get("/health").json())
        keys = {f"{EXPORTS}/single_{single['id']}.txt", f"{EXPORTS}/act.txt"}
        objects = exports(s3, bucket)
        assert set(objects) == keys and objects[f"{EXPORTS}/act.txt"]["owner"] == new["id"]
        assert objects[f"{EXPORTS}/act.txt"]["content_type"] == "text/plain; charset=utf-8"
        assert objects[f"{EXPORTS}/act.txt"]["text"].startswith("act\n")

        service = app.state.service
        ttl = timedelta(hours=settings.result_ttl_hours)
        records = {b["id"]: service.jobs.load(b["id"]) for b in (single, old, new)}
        finished = {job_id: datetime.fromisoformat(record.finished_at) for job_id, record in records.items()}
        assert finished[old["id"]] < finished[new["id"]]
        between = finished[new["id"]] + ttl - timedelta(milliseconds=1)  # the first two have expired
        assert asyncio.run(service.cleanup(now=between)) == 2
        drained(lambda: client.get("/health").json())
        assert set(exports(s3, bucket)) == {f"{EXPORTS}/act.txt"}  # still the later job's: kept
        assert asyncio.run(service.cleanup(now=between + timedelta(seconds=5))) == 1
        drained(lambda: client.get("/health").json())
        assert exports(s3, bucket) == {}
        assert not list((tmp_path / ".rag-export").iterdir())

        (tmp_path / ".rag-export").rmdir()
        (tmp_path / ".rag-export").write_bytes(b"not a folder")  # every export write fails now
        broken = post(client, "/ocr", "broken.pdf", text_pdf(1))
        assert broken["pages"] and broken["storage"]["rag_export"] == {
            "status": "not_exported",
            "bucket": None,
            "key": None,
        }
        drained(lambda: client.get("/health").json())
        assert exports(s3, bucket) == {}
