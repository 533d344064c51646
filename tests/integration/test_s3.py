"""The S3 mirror against a real S3 server: SeaweedFS over HTTPS (a test CA) with SigV4-verified Cloud.ru-style keys.

Every test also checks that no key value shows up in the service's log or in an HTTP body.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from tests.support.documents import text_pdf
from tests.support.s3server import S3Server
from tests.support.server import ServiceProcess, ThreadServer, after_job_ms, wait_for

pytestmark = pytest.mark.integration

FAST = {"dpi": "75"}
PREFIX = "team/ocr"


class Replica(NamedTuple):
    server: ServiceProcess
    bucket: str


@pytest.fixture(scope="module")
def mirrored(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    """A service mirroring to its own bucket, with a prefix written with stray slashes."""
    bucket = s3.new_bucket("ocr")
    env = s3.service_env(bucket, CLOUDRU_S3_PREFIX=f"/{PREFIX}/")
    with ServiceProcess(tmp_path_factory.mktemp("replica-a"), env=env) as server:
        server.wait_ready()
        yield Replica(server, bucket)


def bucket_objects(s3: S3Server, bucket: str) -> dict[str, dict[str, Any]]:
    """Every object of the bucket: key -> body and content type."""
    client = s3.client()
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            got = client.get_object(Bucket=bucket, Key=obj["Key"])
            found[obj["Key"]] = {"body": got["Body"].read(), "content_type": got["ContentType"]}
    return found


def ocr(client: httpx.Client, pages: int = 1, **form: str) -> httpx.Response:
    response = client.post("/ocr", files={"file": ("doc.pdf", text_pdf(pages))}, data={**FAST, **form})
    assert response.status_code == 200, response.text
    return response


def health_when(server: ServiceProcess, condition: Any, what: str, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        health = server.health()
        return health if health and condition(health["s3"]) else None

    result: dict[str, Any] = wait_for(check, timeout, what, interval=0.1)
    return result


def drained(server: ServiceProcess, timeout: float = 60) -> dict[str, Any]:
    """/health once the outbox is empty and the leases of finished jobs are gone."""
    return health_when(server, lambda s3: s3["pending"] == 0 and s3["jobs_held"] == 0, "the outbox to drain", timeout)


def result_keys(body: dict[str, Any], prefix: str = PREFIX) -> list[str]:
    folder = Path(body["files"]["json"]).parent.as_posix()
    return [f"{prefix}/{folder}/result.md", f"{prefix}/{folder}/result.json"]


def job_keys(job_id: str, pages: int, prefix: str = PREFIX) -> list[str]:
    return [f"{prefix}/jobs/{job_id}/job.json"] + [
        f"{prefix}/jobs/{job_id}/pages/{n:05d}.json" for n in range(1, pages + 1)
    ]


def assert_mirrored(objects: dict[str, dict[str, Any]], server: ServiceProcess, body: dict[str, Any]) -> None:
    """The result's files and the job's files are in the bucket, byte for byte as on the service's disk."""
    markdown_key, json_key = result_keys(body)
    folder = server.output_dir / Path(body["files"]["json"]).parent
    assert objects[markdown_key]["body"] == (folder / "result.md").read_bytes()
    assert objects[json_key]["body"] == (folder / "result.json").read_bytes()
    assert objects[markdown_key]["content_type"] == "text/markdown; charset=utf-8"
    assert objects[json_key]["content_type"] == "application/json"
    jobs = server.output_dir / "jobs" / body["id"]
    for key in job_keys(body["id"], body["page_count"]):
        local = jobs / key.split(f"/jobs/{body['id']}/", 1)[1]
        assert objects[key]["body"] == local.read_bytes(), key
        assert objects[key]["content_type"] == "application/json"
    assert json.loads(objects[job_keys(body["id"], 0)[0]]["body"])["status"] == "succeeded"


def assert_no_secrets(s3: S3Server, *texts: str, extra: tuple[str, ...] = ()) -> None:
    for text in texts:
        for secret in (s3.secret_key, s3.access_key, *extra):
            assert secret not in text


# --- uploads -------------------------------------------------------------------------------------


def test_results_and_job_state_land_with_keys_bodies_and_types(s3: S3Server, mirrored: Replica) -> None:
    server, bucket = mirrored
    with httpx.Client(base_url=server.url, timeout=120) as client:
        response = ocr(client, pages=2)
        body = response.json()
        assert body["storage"]["s3"] == {"status": "uploaded", "bucket": bucket, "keys": result_keys(body)}
        assert body["storage"]["local"]["files"] == ["result.md", "result.json"]
        # "uploaded" means the result is readable now, before the job's own files have followed.
        result = s3.client().get_object(Bucket=bucket, Key=result_keys(body)[1])["Body"].read()
        assert json.loads(result)["id"] == body["id"] and "storage" not in json.loads(result)

        health = drained(server)
        assert health["s3_storage"] == "configured"
        # with the bucket keeping what must outlive the container, its disk is written without fsync (OUTPUT_FSYNC)
        assert "written without fsync (OUTPUT_FSYNC=auto: the S3 bucket keeps" in server.log()
        details = health["s3"]
        assert details["status"] == "configured" and details["startup_check"] == "ok"
        assert details["bucket"] == bucket and details["prefix"] == PREFIX
        assert details["last_error"] is None and details["uploaded"] >= 5 and details["oldest_pending_s"] is None
        objects = bucket_objects(s3, bucket)
        assert_mirrored(objects, server, body)
        # The document too (KEEP_JOB_INPUTS), so that any replica can continue the job or show its pages; the
        # lease is gone with the job's end.
        expected = [*result_keys(body), *job_keys(body["id"], 2), f"{PREFIX}/jobs/{body['id']}/input"]
        assert sorted(k for k in objects if body["id"] in k) == sorted(expected)
        document = server.output_dir / "jobs" / body["id"] / "input"
        assert objects[f"{PREFIX}/jobs/{body['id']}/input"]["body"] == document.read_bytes()

        markdown = ocr(client, output="markdown")
        assert markdown.headers["x-s3-status"] == "uploaded"
        assert markdown.headers["content-type"].startswith("text/markdown")
        # The job's own final state follows the result into the bucket a moment later; until it lands the job reads
        # as still storing its end: 409, no result document yet.
        done = wait_for(
            lambda: (r := client.get(f"/jobs/{markdown.headers['x-result-id']}/result")).status_code == 200 and r,
            30,
            "the job's final state stored",
            interval=0.1,
        )
        stored = done.json()
        assert stored["storage"]["s3"]["status"] == "uploaded"
        assert not list((server.output_dir / ".outbox").glob("*.json"))
        metrics = client.get("/metrics").text
        uploads = next(line for line in metrics.splitlines() if line.startswith("s3_uploads_total "))
        assert float(uploads.split()[1]) >= details["uploaded"]
        assert "s3_pending_uploads 0.0" in metrics and "s3_upload_failures_total 0.0" in metrics
        assert "\nocr_jobs_leased " in metrics and "ocr_jobs_taken_over_total 0.0" in metrics
    assert_no_secrets(s3, server.log(), response.text, json.dumps(health))


def test_a_replica_without_the_job_reads_it_from_s3(s3: S3Server, mirrored: Replica, tmp_path: Path) -> None:
    server, bucket = mirrored
    env = s3.service_env(bucket, CLOUDRU_S3_PREFIX=PREFIX)
    with (
        ServiceProcess(tmp_path, env=env) as other,
        httpx.Client(base_url=server.url, timeout=60) as a,
        httpx.Client(base_url=other.url, timeout=60) as b,
    ):
        other.wait_up()  # reading jobs needs no engine
        # pp-ocr (slower than tesseract, which auto picks for English) so that progress is seen while it runs
        job = a.post("/jobs", files={"file": ("doc.pdf", text_pdf(6))}, data={**FAST, "engine": "pp-ocr"}).json()
        seen: list[dict[str, Any]] = []

        def finished_on_b() -> bool:
            response = b.get(job["status_url"])
            if response.status_code == 404:  # not mirrored yet
                return False
            assert response.status_code == 200, response.text
            seen.append(response.json())
            return bool(seen[-1]["status"] == "succeeded")

        wait_for(finished_on_b, 120, "the job to succeed, as seen from the other replica", interval=0.05)
        done = [s["pages_done"] for s in seen]
        assert done == sorted(done) and done[-1] == 6
        assert any(0 < n < 6 for n in done), done  # progress is visible while the job runs elsewhere

        from_a = a.get(job["result_url"]).json()
        from_b = b.get(job["result_url"]).json()
        assert from_b["pages"] == from_a["pages"] and from_b["markdown"] == from_a["markdown"]
        assert from_b["storage"]["local"] is None and from_a["storage"]["local"] is not None
        assert from_b["storage"]["s3"] == from_a["storage"]["s3"]
        assert from_b["storage"]["s3"]["keys"] == result_keys(from_a)
        assert b.get(job["result_url"], params={"output": "markdown"}).text == from_a["markdown"]
        assert not (other.output_dir / "jobs" / job["id"]).exists()

        assert b.get("/jobs/0123456789abcdef0123456789abcdef").status_code == 404
        assert b.delete(job["status_url"]).json()["error"]["code"] == "job_succeeded"
        # A running job is cancelled through any replica: B records the request, A stops the job.
        long_job = a.post("/jobs", files={"file": ("doc.pdf", text_pdf(12))}, data={**FAST, "engine": "pp-ocr"}).json()
        wait_for(lambda: b.get(long_job["status_url"]).status_code == 200, 30, "the job's state in S3")
        refused = b.delete(long_job["status_url"])
        assert refused.status_code == 200, refused.text
        assert refused.json()["owner"] == a.get("/health").json()["s3"]["replica"]
        wait_for(lambda: a.get(long_job["status_url"]).json()["status"] == "cancelled", 30, "cancelled on A")
        wait_for(lambda: b.get(long_job["status_url"]).json()["status"] == "cancelled", 30, "cancelled, seen on B")
        assert b.get(long_job["status_url"]).json()["pages_done"] < 12
        assert b.delete(long_job["status_url"]).json()["error"]["code"] == "job_cancelled"
    assert_no_secrets(s3, server.log(), other.log(), json.dumps(from_b), refused.text)


# --- configuration -------------------------------------------------------------------------------


def test_three_of_four_variables_run_local_only_and_name_the_missing_one(s3: S3Server, tmp_path: Path) -> None:
    env = s3.service_env("some-bucket")
    del env["CLOUDRU_S3_SECRET_KEY"]
    with ServiceProcess(tmp_path, env=env) as server:
        health = server.wait_up()
        assert health["s3_storage"] == "not_configured"
        assert health["s3"]["missing"] == ["CLOUDRU_S3_SECRET_KEY"]
    log = server.log()
    mentions = [line for line in log.splitlines() if "CLOUDRU_S3_" in line]
    assert len(mentions) == 1, mentions
    assert "S3 mirror disabled: CLOUDRU_S3_SECRET_KEY not set" in mentions[0]
    assert not (server.output_dir / ".outbox").exists()
    assert_no_secrets(s3, log, json.dumps(health))


@pytest.mark.slow
def test_wrong_secret_is_degraded_then_fixed_config_uploads_everything(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.new_bucket("ocr")
    wrong = uuid.uuid4().hex + uuid.uuid4().hex
    env = s3.service_env(bucket, CLOUDRU_S3_SECRET_KEY=wrong, CLOUDRU_S3_PREFIX=PREFIX, LOG_LEVEL="DEBUG")
    first = ServiceProcess(tmp_path, env=env).start()
    first.wait_ready()
    health = health_when(first, lambda s3: s3["startup_check"] != "running", "the start-up check")
    assert health["s3_storage"] == "degraded" and health["s3"]["startup_check"] == "failed"
    error = health["s3"]["last_error"]
    assert error["type"] == "ClientError" and error["message"].startswith("SignatureDoesNotMatch")
    assert "check CLOUDRU_S3_ACCESS_KEY and CLOUDRU_S3_SECRET_KEY" in error["message"]
    with httpx.Client(base_url=first.url, timeout=120) as client:
        # A job is accepted only once it is in the bucket: refused, with the reason (and no secret) in the answer.
        refusals = [
            client.post(path, files={"file": ("doc.pdf", text_pdf(1))}, data=FAST) for path in ("/ocr", "/jobs")
        ]
        for refused in refusals:
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "storage_unavailable"
            assert "SignatureDoesNotMatch" in refused.json()["error"]["message"]
            assert "check CLOUDRU_S3_ACCESS_KEY and CLOUDRU_S3_SECRET_KEY" in refused.json()["error"]["message"]
        health = client.get("/health").json()
        assert health["s3"]["pending"] == 0
        unreadable = client.get("/jobs/0123456789abcdef0123456789abcdef")
        assert unreadable.status_code == 503 and unreadable.json()["error"]["code"] == "storage_unavailable"
    assert first.stop() == 0
    assert bucket_objects(s3, bucket) == {}
    assert [p.name for p in (first.output_dir / "jobs").iterdir()] == [".expired"]  # no job folder
    texts = [first.log(), json.dumps(health), unreadable.text, *(r.text for r in refusals)]
    assert_no_secrets(s3, *texts, extra=(wrong,))

    second = ServiceProcess(tmp_path, env={**env, "CLOUDRU_S3_SECRET_KEY": s3.secret_key}).start()
    try:
        second.wait_ready()
        health_when(second, lambda s3: s3["startup_check"] == "ok", "the start-up check")
        with httpx.Client(base_url=second.url, timeout=60) as client:
            responses = [ocr(client), ocr(client, pages=2)]
            health = drained(second)
            assert health["s3_storage"] == "configured"
            objects = bucket_objects(s3, bucket)
            for response in responses:
                assert_mirrored(objects, second, response.json())
            assert len([k for k in objects if k.endswith("/result.json")]) == 2
            later = client.get(f"/jobs/{responses[0].json()['id']}/result").json()
        assert later["storage"]["s3"]["status"] == "uploaded"
    finally:
        second.stop()
    assert_no_secrets(s3, second.log(), json.dumps(health), json.dumps(later), extra=(wrong,))


@pytest.mark.slow
def test_s3_down_refuses_new_jobs_at_once_then_accepts_them_when_back(tmp_path: Path) -> None:
    """With S3 on, a job is accepted only once its document and record are in the bucket: while S3 is down the
    answer is 503 storage_unavailable with Retry-After (quickly, and nothing is kept), never a job that a
    container replacement would lose."""
    s3 = S3Server(tmp_path / "s3").start()
    try:
        bucket = s3.new_bucket("ocr")
        s3.stop()
        (tmp_path / "service").mkdir()
        env = s3.service_env(bucket, CLOUDRU_S3_PREFIX=PREFIX, S3_RETRY_MAX_S="1")
        with ServiceProcess(tmp_path / "service", env=env) as server:
            server.wait_ready()
            health = health_when(server, lambda s3: s3["startup_check"] == "failed", "the start-up check to fail")
            assert health["s3_storage"] == "degraded"
            assert health["s3"]["last_error"]["type"] == "EndpointConnectionError"
            with httpx.Client(base_url=server.url, timeout=120) as client:
                for path in ("/ocr", "/jobs"):
                    began = time.monotonic()
                    refused = client.post(path, files={"file": ("doc.pdf", text_pdf(1))}, data=FAST)
                    assert refused.status_code == 503, refused.text
                    assert refused.json()["error"]["code"] == "storage_unavailable"
                    assert refused.headers["Retry-After"] == "10"
                    assert time.monotonic() - began < 15
                assert client.get("/health").status_code == 200
            assert [p.name for p in (server.output_dir / "jobs").iterdir()] == [".expired"]  # nothing half-accepted
            assert list((server.output_dir / ".incoming").iterdir()) == []

            s3.start()
            ok = health_when(server, lambda s3: s3["startup_check"] == "ok", "S3 back")
            assert ok["s3_storage"] == "configured"
            with httpx.Client(base_url=server.url, timeout=120) as client:
                bodies = [ocr(client).json() for _ in range(3)]
            drained(server)
            objects = bucket_objects(s3, bucket)
            for body in bodies:
                assert_mirrored(objects, server, body)
            inputs = {f"{PREFIX}/jobs/{b['id']}/input" for b in bodies}
            expected = {k for b in bodies for k in result_keys(b) + job_keys(b["id"], 1)} | inputs
            assert set(objects) == expected  # nothing lost, nothing extra: no lease is left behind
        assert_no_secrets(s3, server.log(), *(json.dumps(b) for b in bodies))
    finally:
        s3.kill()


@pytest.mark.slow
def test_a_sync_answer_comes_once_every_replica_reads_the_job_finished(s3: S3Server, tmp_path: Path) -> None:
    """POST /ocr answers once the job's final record is in the bucket too (within S3_UPLOAD_WAIT_S), not only its
    result: the job it names then reads finished at once, here (which shows a job whose end is being stored as still
    running) and on every other replica (which read the bucket). In process, so that the final record's write can be
    held for 1 s, far longer than the rest of the job's uploads."""
    bucket = s3.new_bucket("ocr")
    env = s3.service_env(bucket, CLOUDRU_S3_PREFIX=PREFIX, OCR_LANGUAGES="en")
    settings = Settings(_env_file=None, output_dir=tmp_path, **{k.lower(): v for k, v in env.items()})  # type: ignore[call-arg]
    app = create_app(settings)
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        wait_for(lambda: client.get("/health").json()["status"] == "healthy", 120, "engines ready")
        mirror = app.state.service.jobs.mirror
        write = mirror.state_writer
        held: list[str] = []

        def final_record_held(job_id: str, body: bytes) -> bool:
            if json.loads(body)["status"] == "succeeded":
                held.append(job_id)
                time.sleep(1.0)
            return bool(write(job_id, body))

        mirror.state_writer = final_record_held
        answer = ocr(client).json()
        job_id = answer["id"]
        in_bucket = json.loads(s3.client().get_object(Bucket=bucket, Key=job_keys(job_id, 1)[0])["Body"].read())
        status = client.get(f"/jobs/{job_id}").json()
        result = client.get(f"/jobs/{job_id}/result")
    assert held == [job_id]  # the final record's write was held
    assert answer["storage"]["s3"]["status"] == "uploaded"
    assert in_bucket["status"] == "succeeded"
    assert status["status"] == "succeeded", status
    assert result.status_code == 200 and result.json()["pages"] == answer["pages"]


def test_a_hanging_s3_delays_answers_of_accepted_jobs_at_most_s3_upload_wait_s(tmp_path: Path) -> None:
    s3 = S3Server(tmp_path / "s3").start()
    try:
        bucket = s3.new_bucket("ocr")
        (tmp_path / "service").mkdir()
        env = s3.service_env(bucket, CLOUDRU_S3_PREFIX=PREFIX, S3_UPLOAD_WAIT_S="2", OCR_CONCURRENCY="1")
        with ServiceProcess(tmp_path / "service", env=env) as server:
            server.wait_ready()
            health_when(server, lambda s3: s3["startup_check"] == "ok", "the start-up check")
            bodies: list[dict[str, Any]] = []

            def send() -> None:
                with httpx.Client(base_url=server.url, timeout=120) as client:
                    bodies.append(ocr(client, pages=3, engine="pp-ocr").json())

            with concurrent.futures.ThreadPoolExecutor(3) as pool:
                futures = [pool.submit(send) for _ in range(3)]
                wait_for(lambda: server.log().count(" accepted: ") == 3, 60, "3 jobs accepted")
                s3.pause()  # connections are accepted, nothing answers: only a read timeout ends a call
                with httpx.Client(base_url=server.url, timeout=120) as client:
                    health_ms = []
                    for _ in range(5):
                        began = time.perf_counter()
                        assert client.get("/health").status_code == 200
                        health_ms.append((time.perf_counter() - began) * 1000)
                    began = time.monotonic()
                    refused = client.post("/jobs", files={"file": ("doc.pdf", text_pdf(1))}, data=FAST)
                    refused_after = time.monotonic() - began
                for future in futures:
                    future.result()
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "storage_unavailable"
            assert refused_after < 30, refused_after  # a short direct timeout, not S3_READ_TIMEOUT_S with retries
            assert [b["storage"]["s3"]["status"] for b in bodies] == ["pending"] * 3
            # the access line is written just after the answer is sent
            waits = wait_for(lambda: len(w := after_job_ms(server.log())) == 3 and w, 10, "3 answers logged")
            assert max(waits) < 2000 + 500, waits  # each waits at most S3_UPLOAD_WAIT_S
            assert max(health_ms) < 1000, health_ms
            s3.resume()
            drained(server)
            objects = bucket_objects(s3, bucket)
            for body in bodies:
                assert_mirrored(objects, server, body)
    finally:
        s3.kill()


@pytest.mark.slow
def test_s3_killed_in_the_middle_of_a_batch_loses_nothing_accepted(tmp_path: Path) -> None:
    """Jobs accepted before S3 died finish and are uploaded once it is back; documents sent while it is down are
    refused with 503 and Retry-After, and a client that retries gets every document through."""
    s3 = S3Server(tmp_path / "s3").start()
    try:
        bucket = s3.new_bucket("ocr")
        (tmp_path / "service").mkdir()
        env = s3.service_env(bucket, CLOUDRU_S3_PREFIX=PREFIX, S3_RETRY_MAX_S="1", OCR_CONCURRENCY="2")
        with ServiceProcess(tmp_path / "service", env=env) as server:
            server.wait_ready()
            bodies: list[dict[str, Any]] = []
            refusals: list[int] = []
            lock = threading.Lock()

            def send() -> None:
                with httpx.Client(base_url=server.url, timeout=120) as client:
                    while True:
                        response = client.post("/ocr", files={"file": ("doc.pdf", text_pdf(1))}, data=FAST)
                        if response.status_code != 503:
                            break
                        assert response.json()["error"]["code"] == "storage_unavailable"
                        assert "Retry-After" in response.headers
                        with lock:
                            refusals.append(1)
                        time.sleep(0.5)  # the client honours Retry-After, shortened for the test
                    assert response.status_code == 200, response.text
                with lock:
                    bodies.append(response.json())

            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(send) for _ in range(20)]

                def in_flight() -> int:  # accepted (logged) but not answered yet
                    with lock:
                        answered = len(bodies)
                    return server.log().count(" accepted: ") - answered

                wait_for(lambda: len(bodies) >= 5 and in_flight() >= 2, 120, "5 results and 2 jobs in flight")
                s3.kill()

                def answered_while_down() -> bool:  # refusals, and a job accepted before the kill answered since
                    with lock:
                        pending = [b for b in bodies if b["storage"]["s3"]["status"] == "pending"]
                    return len(refusals) >= 4 and bool(pending)

                wait_for(answered_while_down, 120, "refusals and a pending answer while S3 is down")
                s3.start()
                for future in futures:
                    future.result()

            statuses = Counter(b["storage"]["s3"]["status"] for b in bodies)
            assert statuses["pending"] > 0, statuses  # accepted before the kill, answered while S3 was down
            drained(server, timeout=90)
            objects = bucket_objects(s3, bucket)
            for body in bodies:
                assert_mirrored(objects, server, body)
            assert len([k for k in objects if k.endswith("/result.json")]) == 20
        assert_no_secrets(s3, server.log(), *(json.dumps(b) for b in bodies))
    finally:
        s3.kill()
