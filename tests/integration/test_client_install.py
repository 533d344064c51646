"""The client-only install: ``requirements-client.txt`` in a fresh virtual environment is enough for
``scripts/check_deployment.py`` and the batch client (``python -m app.client``), run from a copy of the client
files alone, against the real service behind stand-ins of the Cloud.ru IAM and gateway.

It installs from the package index, as ``make test`` does (pip's cache makes a rerun quick).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cloud import IAM_PATH, GatewayState, IamState, gateway_app, iam_app
from tests.support.documents import ENGLISH_LINES, image_bytes, render_page
from tests.support.server import ROOT, ServiceProcess, ThreadServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY_ID = "client-install-key-id"
IAM_SECRET = "client-install-iam-secret-93b1"  # pragma: allowlist secret
#: Server packages that must not come with the client install.
SERVER_ONLY = ("fastapi", "uvicorn", "boto3", "numpy", "rapidocr", "onnxruntime", "tesserocr", "pypdfium2", "PIL")


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with requirements-client.txt only; returns its python."""
    venv = tmp_path_factory.mktemp("client-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(ROOT / "requirements-client.txt")],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return python


@pytest.fixture(scope="module")
def client_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with only what a caller copies: app/__init__.py, app/iam.py, app/client/, the check script and its
    page."""
    root = tmp_path_factory.mktemp("client-files")
    (root / "app").mkdir()
    shutil.copy(ROOT / "app" / "__init__.py", root / "app")
    shutil.copy(ROOT / "app" / "iam.py", root / "app")
    shutil.copytree(ROOT / "app" / "client", root / "app" / "client", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "check_deployment.py", root / "scripts")
    shutil.copytree(ROOT / "scripts" / "assets", root / "scripts" / "assets")
    return root


@pytest.fixture(scope="module")
def platform(service: ServiceProcess) -> Iterator[dict[str, str]]:
    """The client's settings for the service behind the IAM and gateway stand-ins."""
    iam = IamState(KEY_ID, IAM_SECRET, ttl_s=600)
    with ThreadServer(iam_app(iam)) as iam_server, ThreadServer(gateway_app(GatewayState(iam, service.url))) as gw:
        yield {
            "CLOUD_RU_INFERENCE_URL": gw.url,
            "CLOUD_RU_IAM_URL": iam_server.url + IAM_PATH,
            "CLOUD_RU_IAM_KEY_ID": KEY_ID,
            "CLOUD_RU_IAM_SECRET": IAM_SECRET,
        }


def run(python: Path, cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUD_RU_", "SERVICE_API_KEY", "PYTHON"))}
    env = {**base, **(env or {})}
    command = [str(python), *args]
    return subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_client_install_has_no_server_packages(client_python: Path, client_files: Path, tmp_path: Path) -> None:
    for module in SERVER_ONLY:
        result = run(client_python, client_files, "-c", f"import {module}")
        assert result.returncode != 0, f"{module} came with the client install"
    assert run(client_python, client_files, "-m", "app.client", "--help").returncode == 0
    assert run(client_python, client_files, "scripts/check_deployment.py", "--help").returncode == 0
    # scripts/check_env.py runs from the repository with the client install too (it needs app/settings.py)
    variables = tmp_path / "console.env"
    variables.write_text("\n".join(["LOG_LEVEL=info", "USE_GPU=1", "OCR_ENGINE=paddleocr-vl"]))
    checked = run(client_python, ROOT, "scripts/check_env.py", str(variables))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "INVALID  LOG_LEVEL" in checked.stdout and "ignored  USE_GPU" in checked.stdout


def test_check_deployment_passes_from_the_client_install(
    client_python: Path, client_files: Path, platform: dict[str, str]
) -> None:
    result = run(client_python, client_files, "scripts/check_deployment.py", "--ready-timeout", "30", env=platform)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RESULT: PASS" in result.stdout
    assert "IAM token issued by" in result.stdout


def test_batch_client_reads_a_folder_from_the_client_install(
    client_python: Path, client_files: Path, platform: dict[str, str], tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    page = render_page(ENGLISH_LINES[:3], size=(1000, 240), top=30)
    (scans / "letter.png").write_bytes(image_bytes(page, "PNG"))
    result = run(client_python, client_files, "-m", "app.client", str(scans), "--concurrency", "1", env=platform)
    assert result.returncode == 0, result.stdout + result.stderr
    markdown = (scans / "letter.md").read_text(encoding="utf-8")
    assert ENGLISH_LINES[0].split()[0] in markdown
    assert (scans / "letter.json").is_file()
