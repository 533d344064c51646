"""The images' install step (docker/install_extras.sh) on the images' Python, and the service on the result.

No Docker here: the GPU base image's Python is simulated by a Python 3.10 virtualenv with its stack installed by
pip as the base image installs it (docker/base-image-versions.txt), the CPU image's by a bare Python 3.11
virtualenv; both are cached in .cache/image-sim (tests/support/image_sim.py). The service then starts through
start.sh (the images' CMD) on each and reads pages: on the GPU one through the real PaddleOCR-VL pipeline against
the VLM stand-in (vllm-server backend, layout detection off) and the CPU fallback engines, on the CPU one
through pp-ocr and tesseract. A requirement that would change a protected package of the base must fail in
seconds and name that package.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import image_sim
from tests.support.documents import ENGLISH_LINES, RUSSIAN_LINES, cer, image_bytes, render_page
from tests.support.server import ROOT, ServiceProcess
from tests.support.vlm_standin import VlmStandin

# Cold, the GPU base downloads and installs about 1.5 GB of wheels; the environments are cached after that.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

MODEL = "paddleocr-vl-standin"
API_KEY = "sk-image-sim-4b1e"  # the stand-in refuses requests without it  # pragma: allowlist secret
FAIL_FAST_S = 60  # pip took more than 12 minutes to give up on the same question


def built(build: Callable[[], image_sim.SimEnv]) -> image_sim.SimEnv:
    """``build()``, or skip (fail in CI) when the image's Python version is not on this machine."""
    try:
        return build()
    except image_sim.NoInterpreter as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the image install check cannot run: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def gpu_env() -> image_sim.SimEnv:
    env = built(image_sim.gpu_image)
    print(f"GPU image env {env.path.name}: {f'built in {env.built_s:.0f} s' if env.built_s else 'cached'}")
    return env


@pytest.fixture(scope="module")
def cpu_env() -> image_sim.SimEnv:
    env = built(image_sim.cpu_image)
    print(f"CPU image env {env.path.name}: {f'built in {env.built_s:.0f} s' if env.built_s else 'cached'}")
    return env


@pytest.fixture(scope="module")
def standin() -> Iterator[VlmStandin]:
    with VlmStandin(model_id=MODEL, api_key=API_KEY) as server:
        yield server


def serve(tmp_path: Path, python: Path, env: dict[str, str]) -> ServiceProcess:
    """The service as the image runs it: start.sh, with the image's interpreter."""
    server = ServiceProcess(tmp_path, env={**env, "PYTHON": str(python)}, command=[str(ROOT / "start.sh")])
    for name in ("PADDLE_PDX_CACHE_HOME", "PADDLEX_HOME", "PADDLE_PDX_LOCAL_FONT_FILE_PATH"):
        server.env.pop(name, None)  # start.sh sets them, as in the image
    return server


def interpreter_of(server: ServiceProcess) -> str:
    assert server.process is not None
    return os.readlink(f"/proc/{server.process.pid}/exe")


def read(client: httpx.Client, lines: list[str], **form: str) -> dict[str, object]:
    page = render_page(lines, size=(1100, 60 + 56 * len(lines)), top=30)
    response = client.post("/ocr", files={"file": ("page.png", image_bytes(page, "PNG"))}, data=form)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def stop(server: ServiceProcess) -> None:
    code = server.stop(signal.SIGTERM, timeout=30)
    assert code == 0, server.log()[-3000:]


def test_gpu_image_install_keeps_the_base_stack(gpu_env: image_sim.SimEnv) -> None:
    log = gpu_env.install_log
    assert "protected (must not change): " in log
    for name in ("numpy", "opencv-contrib-python", "paddleocr", "paddlepaddle", "paddlex"):
        assert re.search(rf"\b{name}==", log), f"{name} not protected:\n{log}"
    assert re.search(r"\d+ protected packages unchanged; pip check finds nothing new", log), log
    # cv2 stays the base's opencv-contrib-python: rapidocr's opencv-python-headless would overwrite it.
    assert "not installed: opencv-python, opencv-python-headless" in log
    site = gpu_env.path / "lib" / "python3.10" / "site-packages"
    [opencv] = site.glob("opencv_*.dist-info")
    assert opencv.name.startswith("opencv_contrib_python-")


def test_gpu_image_serves_pages_on_the_base_python(
    tmp_path: Path, gpu_env: image_sim.SimEnv, standin: VlmStandin
) -> None:
    env = {
        "OCR_ENGINE": "paddleocr-vl",
        "OCR_CPU_ENGINES": "pp-ocr,tesseract",  # the CPU fallback engines load on the base's Python too
        "VL_BACKEND": "vllm-server",
        "VL_SERVER_URL": standin.url,
        "VL_MODEL_NAME": MODEL,
        "VL_API_KEY": API_KEY,
        "VL_USE_LAYOUT_DETECTION": "false",
        "VL_REQUEST_TIMEOUT_S": "30",
    }
    server = serve(tmp_path, gpu_env.python, env).start()
    try:
        began = time.monotonic()
        health = server.wait_ready(timeout=300)
        print(f"engines ready on the base's Python in {time.monotonic() - began:.0f} s")
        assert "python3.10" in interpreter_of(server)
        assert health["engine"]["name"] == "paddleocr-vl" and health["engine"]["state"] == "ready"
        with httpx.Client(base_url=server.url, timeout=120) as client:
            lines = ENGLISH_LINES[:3]
            sent = len(standin.requests)
            body = read(client, lines)
            assert body["engine"] == "paddleocr-vl"
            assert cer("\n".join(lines), str(body["text"])) <= 0.05, body["text"]
            assert [r["prompt"] for r in standin.requests[sent:]] == ["OCR:"]  # the page went to the VLM
            body = read(client, lines, engine="pp-ocr", lang="en")
            assert body["engine"] == "pp-ocr" and cer("\n".join(lines), str(body["text"])) <= 0.05
            russian = RUSSIAN_LINES[:2]
            body = read(client, russian, engine="tesseract", lang="ru")
            assert body["engine"] == "tesseract" and cer("\n".join(russian), str(body["text"])) <= 0.05
    finally:
        stop(server)


def test_cpu_image_serves_pages_on_its_python(tmp_path: Path, cpu_env: image_sim.SimEnv) -> None:
    assert "protected (must not change): none installed" in cpu_env.install_log
    assert "no protected package installed; pip check finds nothing new" in cpu_env.install_log
    server = serve(tmp_path, cpu_env.python, {"OCR_LANGUAGES": "ru,en"}).start()
    try:
        server.wait_ready(timeout=120)
        assert "python3.11" in interpreter_of(server)
        with httpx.Client(base_url=server.url, timeout=120) as client:
            lines = ENGLISH_LINES[:3]
            body = read(client, lines, lang="en")  # auto: tesseract, measured faster and as accurate
            assert body["engine"] == "tesseract" and cer("\n".join(lines), str(body["text"])) <= 0.05
            body = read(client, lines, lang="en", engine="pp-ocr")
            assert body["engine"] == "pp-ocr" and cer("\n".join(lines), str(body["text"])) <= 0.05
            russian = RUSSIAN_LINES[:2]
            body = read(client, russian, lang="ru")
            assert body["engine"] == "tesseract" and cer("\n".join(russian), str(body["text"])) <= 0.05
    finally:
        stop(server)


def installed_version(env: Path, name: str) -> str:
    freeze = (env / "pip-freeze.txt").read_text()
    found = re.search(rf"^{re.escape(name)}==(\S+)$", freeze, flags=re.MULTILINE | re.IGNORECASE)
    assert found, f"{name} not in the simulated base"
    return found.group(1)


def fails_fast_naming(base: Path, requirement: str, tmp_path: Path, protected: Path | None = None) -> str:
    """A dry run of install_extras.sh on the pristine base with one more requirement: it must fail, soon."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"-r {image_sim.REQUIREMENTS}\n{requirement}\n")
    began = time.monotonic()
    done = image_sim.install_extras(base / "bin" / "python", requirements, dry_run=True, protected=protected)
    took = time.monotonic() - began
    print(f"{requirement}: failed in {took:.1f} s\n{done.stderr[:1500]}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert took < FAIL_FAST_S, f"took {took:.0f} s"
    return done.stderr


def test_a_requirement_that_moves_numpy_fails_fast_and_names_it(tmp_path: Path, gpu_env: image_sim.SimEnv) -> None:
    base = image_sim.gpu_base()
    numpy = installed_version(base, "numpy")
    stderr = fails_fast_naming(base, f"numpy!={numpy}", tmp_path)
    assert f"would change protected package(s) of the base image: numpy=={numpy} " in stderr


def test_the_issue_17_conflict_fails_fast_and_names_the_package(tmp_path: Path, gpu_env: image_sim.SimEnv) -> None:
    """The base's python-dateutil 3.0.0 against botocore's <3.0.0: pip walked back through every boto3 release for
    12 minutes. With python-dateutil protected for the test, the script must give up in seconds, naming it."""
    base = image_sim.gpu_base()
    dateutil = installed_version(base, "python-dateutil")
    if int(dateutil.split(".")[0]) < 3:
        pytest.skip(f"the simulated base has python-dateutil {dateutil}: botocore accepts it, no conflict to check")
    protected = tmp_path / "protected.txt"
    protected.write_text((ROOT / "docker" / "protected-packages.txt").read_text() + "python-dateutil\n")
    stderr = fails_fast_naming(base, "boto3>=1.36", tmp_path, protected=protected)
    assert f"would change protected package(s) of the base image: python-dateutil=={dateutil} " in stderr
    assert "you require boto3" in stderr  # the end of the resolver's explanation: which requirement it is
