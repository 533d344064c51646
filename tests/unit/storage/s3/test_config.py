"""S3 settings, key layout, content types and error messages (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from app.jobs.repository.local import LocalRepository
from app.jobs.repository.s3 import S3Repository
from app.jobs.store import build_job_store
from app.settings import Settings
from app.storage.local import result_files
from app.storage.s3.client import content_type, missing_settings
from app.storage.s3.keys import KeyLayout
from app.storage.s3.mirror import S3Mirror

ACCESS = "<tenant_id>:<key_id>"
SECRET = "s3cr3t-value-never-shown"  # pragma: allowlist secret
FULL = {
    "CLOUDRU_S3_ENDPOINT": "https://s3.cloud.ru",
    "CLOUDRU_S3_BUCKET": "ocr",
    "CLOUDRU_S3_ACCESS_KEY": ACCESS,
    "CLOUDRU_S3_SECRET_KEY": SECRET,
}


def settings(**env: str) -> Settings:
    return Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[call-arg]


def test_all_four_are_required() -> None:
    assert missing_settings(settings(**FULL)) == []
    assert missing_settings(settings(**{**FULL, "CLOUDRU_S3_SECRET_KEY": "  "})) == ["CLOUDRU_S3_SECRET_KEY"]
    partial = {k: v for k, v in FULL.items() if k != "CLOUDRU_S3_BUCKET"}
    assert missing_settings(settings(**partial)) == ["CLOUDRU_S3_BUCKET"]
    assert len(missing_settings(settings())) == 4


def test_partial_configuration_logs_names_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    partial = {k: v for k, v in FULL.items() if k != "CLOUDRU_S3_ENDPOINT"}
    assert type(build_job_store(settings(**partial), tmp_path).repository) is LocalRepository
    assert "CLOUDRU_S3_ENDPOINT not set" in caplog.text
    assert SECRET not in caplog.text and ACCESS not in caplog.text
    assert isinstance(build_job_store(settings(**FULL), tmp_path).repository, S3Repository)


def test_secrets_are_masked_in_settings() -> None:
    configured = settings(**FULL)
    for text in (repr(configured), str(configured), configured.model_dump_json()):
        assert SECRET not in text and ACCESS not in text
    assert configured.cloudru_s3_secret_key.get_secret_value() == SECRET


def test_key_layout_and_prefix() -> None:
    assert settings(CLOUDRU_S3_PREFIX="/a/b/").cloudru_s3_prefix == "a/b"
    assert settings().cloudru_s3_prefix == "ocr-results" and settings().cloudru_s3_region == "ru-central-1"
    layout = KeyLayout("ocr-results")
    job = "0123456789abcdef0123456789abcdef"  # pragma: allowlist secret
    assert layout.result(f"2026-01-02/{job}", "result.json") == f"ocr-results/2026-01-02/{job}/result.json"
    assert layout.job(job) == f"ocr-results/jobs/{job}/job.json"
    assert layout.page(job, 7) == f"ocr-results/jobs/{job}/pages/00007.json"
    assert KeyLayout("").job(job) == f"jobs/{job}/job.json"


def test_content_types() -> None:
    assert content_type("result.json") == "application/json"
    assert content_type("result.md") == "text/markdown; charset=utf-8"
    assert content_type("imgs/figure_1.png") == "image/png"
    assert content_type("imgs/figure_1.jpg") == "image/jpeg"
    assert content_type("blob") == "application/octet-stream"


def test_result_files_put_result_json_last(tmp_path: Path) -> None:
    for name in ("result.json", "result.md", "imgs/b.png", "imgs/a.jpg", ".result.json.x.tmp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert result_files(tmp_path) == ["imgs/a.jpg", "imgs/b.png", "result.md", "result.json"]


def test_error_descriptions_carry_no_secrets(tmp_path: Path) -> None:
    mirror = S3Mirror(settings(**FULL), tmp_path)
    signature = ClientError(
        {"Error": {"Code": "SignatureDoesNotMatch", "Message": "The request signature we calculated does not match"}},
        "PutObject",
    )
    described = mirror.describe(signature)
    assert described["type"] == "ClientError"
    assert described["message"].startswith("SignatureDoesNotMatch: The request signature")
    assert "check CLOUDRU_S3_ACCESS_KEY and CLOUDRU_S3_SECRET_KEY" in described["message"]
    leaky = RuntimeError(f"failed with {SECRET} for {ACCESS}")
    assert mirror.describe(leaky)["message"] == "failed with *** for ***"
    down = mirror.describe(EndpointConnectionError(endpoint_url="https://s3.cloud.ru/ocr/x"))
    assert down["type"] == "EndpointConnectionError" and "https://s3.cloud.ru" in down["message"]
