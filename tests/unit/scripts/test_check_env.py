"""scripts/check_env.py: the variables of a Docker RUN sorted into read, ignored and internal, values checked
without printing them, and nothing taken from the environment it runs in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.server import ROOT
from tests.unit.docs.test_env_docs import INTERNAL as DOCUMENTED_INTERNAL

SCRIPT = ROOT / "scripts" / "check_env.py"
SECRET = "s3-secret-value-9d2f"  # pragma: allowlist secret


def run(text: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **env},
    )


def test_variables_are_sorted_and_values_never_printed() -> None:
    text = "\n".join(
        [
            "# copied from the console",
            "OCR_ENGINE=paddleocr-vl",
            "LOG_FORMAT=",
            f"CLOUDRU_S3_SECRET_KEY={SECRET}",
            "export PORT='8081'",
            "USE_GPU=true",
            "PADDLE_PDX_CACHE_HOME=/models",
            "CLOUD_RU_IAM_KEY_ID=abc",
        ]
    )
    result = run(text, LOG_LEVEL="info")  # the caller's own environment is not what is checked
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "ok       OCR_ENGINE" in lines
    assert "ok       LOG_FORMAT: empty, so the default" in lines
    assert "ok       PORT" in lines and "ok       CLOUDRU_S3_SECRET_KEY" in lines
    assert any(line.startswith("ignored  USE_GPU: this service does not read it") for line in lines)
    assert any(line.startswith("ignored  CLOUD_RU_IAM_KEY_ID: a client program") for line in lines)
    assert any(line.startswith("internal PADDLE_PDX_CACHE_HOME") for line in lines)
    assert lines[-1] == "7 variable(s): 2 ignored; all values valid"
    assert SECRET not in result.stdout + result.stderr


def test_an_invalid_value_is_named_with_the_reason() -> None:
    result = run("LOG_LEVEL=info\nVL_BATCH_PAGES=100\nOCR_CPU_ENGINES=easyocr\n")
    assert result.returncode == 1
    assert "INVALID  LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'" in result.stdout
    assert "INVALID  VL_BATCH_PAGES: Input should be less than or equal to 64" in result.stdout
    assert "INVALID  OCR_CPU_ENGINES:" in result.stdout and "easyocr" in result.stdout


def test_a_line_that_is_not_a_variable_is_refused(tmp_path: Path) -> None:
    assert run("just words\n").returncode == 2
    missing = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "none.env")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")


def test_the_internal_variables_are_those_of_the_reference() -> None:
    from scripts.check_env import INTERNAL  # the script, imported as a module

    assert INTERNAL - {"PYTHON"} == DOCUMENTED_INTERNAL


def test_a_comment_at_the_end_of_a_line_is_named_without_the_value() -> None:
    """A console form keeps ``  # …`` as part of the value: a choice then stops the service, a key passes with it."""
    text = "\n".join(
        [
            "OCR_ENGINE=paddleocr-vl          # explicit",
            f"API_KEY={SECRET}  # the service's own key",
            "VL_IAM_KEY_ID=<key_id>\t# the service account's key",
            "CLOUD_RU_TOKEN=abc # the caller's",
            "LOG_FORMAT=   # text or json",
            "VL_IAM_SECRET=#starts-with-a-hash",  # a '#' inside a value is not a comment
            "CORS_ORIGINS=https://a.example#x",
        ]
    )
    result = run(text)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    commented = {line.split()[1].rstrip(":"): line for line in lines if line.startswith("COMMENT  ")}
    assert set(commented) == {"OCR_ENGINE", "API_KEY", "VL_IAM_KEY_ID", "CLOUD_RU_TOKEN", "LOG_FORMAT"}
    assert commented["OCR_ENGINE"].endswith("(the service would not start)")
    assert commented["LOG_FORMAT"].endswith("(the service would not start)")
    assert commented["API_KEY"].endswith("(the service would start and use the value with the comment inside)")
    assert commented["VL_IAM_KEY_ID"].endswith("(the service would start and use the value with the comment inside)")
    assert "ok       VL_IAM_SECRET" in lines and "ok       CORS_ORIGINS" in lines
    assert lines[-1] == "7 variable(s): 0 ignored; INVALID values; 5 carry a comment"
    assert SECRET not in result.stdout + result.stderr
