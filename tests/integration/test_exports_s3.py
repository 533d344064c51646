"""Result files with S3 and ``KEEP_JOB_INPUTS=false`` (real SeaweedFS, two replicas on one bucket).

Replica A mirrors pdf and docx (``S3_RESULT_FORMATS``): they are made when the job is assembled, land in the
bucket beside ``result.json``, and replica B serves them byte for byte. Replica B mirrors only json and md: with
``KEEP_JOB_INPUTS=false`` it still makes the PDF before the document goes (kept on its disk, not in the bucket),
so it serves it, while A, which has neither the PDF nor the document, answers 410 ``export_unavailable``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.support.documents import ENGLISH_LINES, pdf_bytes, render_page
from tests.support.pdf_tools import pdf_text
from tests.support.s3server import S3Server
from tests.support.server import ServiceProcess, wait_for

pytestmark = pytest.mark.integration

PREFIX = "ocr"


class Replicas(NamedTuple):
    a: httpx.Client
    b: httpx.Client
    bucket: str


@pytest.fixture(scope="module")
def replicas(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    bucket = s3.new_bucket("exports")
    common = {"CLOUDRU_S3_PREFIX": PREFIX, "KEEP_JOB_INPUTS": "false"}
    env_a = s3.service_env(bucket, S3_RESULT_FORMATS="json,md,pdf,docx", **common)
    env_b = s3.service_env(bucket, **common)
    with (
        ServiceProcess(tmp_path_factory.mktemp("a"), env=env_a) as a,
        ServiceProcess(tmp_path_factory.mktemp("b"), env=env_b) as b,
    ):
        a.wait_ready()
        b.wait_ready()
        with (
            httpx.Client(base_url=a.url, timeout=120) as client_a,
            httpx.Client(base_url=b.url, timeout=120) as client_b,
        ):
            yield Replicas(client_a, client_b, bucket)


def submit(client: httpx.Client) -> dict[str, str]:
    source = pdf_bytes([render_page(ENGLISH_LINES)])
    response = client.post("/ocr", files={"file": ("report.pdf", source)})
    assert response.status_code == 200, response.text
    body = response.json()
    wait_for(lambda: body_uploaded(client, body["id"]), 60, "the result in the bucket", interval=0.2)
    return {"id": body["id"], "dir": body["storage"]["local"]["dir"]}


def body_uploaded(client: httpx.Client, job_id: str) -> bool:
    """The result is in the bucket. Until the job's final record is too, the job reads as still running and its
    result answers 409 (``JobRecord.storing``); ``POST /ocr`` waits for that at most ``S3_UPLOAD_WAIT_S``."""
    response = client.get(f"/jobs/{job_id}/result")
    return response.status_code == 200 and response.json()["storage"]["s3"]["status"] == "uploaded"


def document_gone(s3: S3Server, bucket: str, job_id: str) -> None:
    """The job's document is deleted (locally at once, in the bucket with the job's lease, moments later)."""
    wait_for(lambda: "input" not in keys(s3, bucket, f"jobs/{job_id}"), 60, "the document deleted", interval=0.5)


def keys(s3: S3Server, bucket: str, folder: str) -> dict[str, str]:
    """The objects in ``folder`` by name, with their content types; one deleted between the listing and its HEAD
    (the job's document, as the service removes it) is not there."""
    client = s3.client()
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/{folder}/").get("Contents", [])
    found = {}
    for obj in listed:
        try:
            found[obj["Key"].rsplit("/", 1)[-1]] = client.head_object(Bucket=bucket, Key=obj["Key"])["ContentType"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
    return found


def test_named_formats_are_mirrored_and_served_by_any_replica(s3: S3Server, replicas: Replicas, tmp_path: Path) -> None:
    job = submit(replicas.a)
    stored = keys(s3, replicas.bucket, job["dir"])
    assert stored["result.pdf"] == "application/pdf"
    assert stored["result.docx"].startswith("application/vnd.openxmlformats-officedocument.wordprocessingml")
    assert {"result.json", "result.md"} <= set(stored) and "result.xlsx" not in stored  # no tables: no workbook
    document_gone(s3, replicas.bucket, job["id"])
    for output in ("pdf", "docx"):
        on_a = replicas.a.get(f"/jobs/{job['id']}/result", params={"output": output})
        on_b = replicas.b.get(f"/jobs/{job['id']}/result", params={"output": output})
        assert on_a.status_code == on_b.status_code == 200, on_b.text
        assert on_a.content == on_b.content
    pdf = replicas.b.get(f"/jobs/{job['id']}/result", params={"output": "pdf"})
    (tmp_path / "b.pdf").write_bytes(pdf.content)
    assert "Quarterly report" in pdf_text(tmp_path / "b.pdf")


def test_pdf_made_before_the_document_goes_stays_with_its_replica(s3: S3Server, replicas: Replicas) -> None:
    job = submit(replicas.b)
    assert set(keys(s3, replicas.bucket, job["dir"])) == {"result.json", "result.md"}  # default: unchanged
    document_gone(s3, replicas.bucket, job["id"])
    made = replicas.b.get(f"/jobs/{job['id']}/result", params={"output": "pdf"})
    assert made.status_code == 200 and made.content.startswith(b"%PDF-")
    elsewhere = replicas.a.get(f"/jobs/{job['id']}/result", params={"output": "pdf"})
    assert elsewhere.status_code == 410 and elsewhere.json()["error"]["code"] == "export_unavailable"
    docx = replicas.a.get(f"/jobs/{job['id']}/result", params={"output": "docx"})  # needs only result.json
    assert docx.status_code == 200 and docx.content[:2] == b"PK"
