"""docker-compose.yml (vLLM + this service on one GPU machine) stays consistent with the code it starts: no Docker
here, so the file is parsed and its parts checked against the service's settings, the Dockerfile and vLLM's
recipe for PaddleOCR-VL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from app.engines.paddleocr_vl.config import check_settings, normalise_server_url
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
RECIPE = {"--trust-remote-code": None, "--max-num-batched-tokens": "16384", "--mm-processor-cache-gb": "0"}
SUBSTITUTION = re.compile(r"\$\{([A-Z_]+)(:-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return loaded


def resolve(value: str) -> str:
    """``${NAME:-default}`` -> default, as Compose does when NAME is not set; a variable without one fails."""

    def default(match: re.Match[str]) -> str:
        assert match.group(2) is not None, f"${{{match.group(1)}}} has no default"
        return match.group(3)

    return SUBSTITUTION.sub(default, value)


def options(command: list[str]) -> dict[str, str | None]:
    """``--flag value`` pairs of a command line (a flag followed by another flag has no value)."""
    found: dict[str, str | None] = {}
    for index, word in enumerate(command):
        if word.startswith("--"):
            following = command[index + 1] if index + 1 < len(command) else None
            found[word] = None if following is None or following.startswith("--") else following
    return found


def test_the_vlm_runs_vllms_recipe_for_paddleocr_vl(compose: dict[str, Any]) -> None:
    vlm = compose["services"]["vlm"]
    image = resolve(vlm["image"])
    assert image.startswith("vllm/vllm-openai:v")
    major, minor, patch = (int(part) for part in image.rsplit(":v", 1)[1].split("."))
    assert (major, minor, patch) >= (0, 11, 1)  # the first release that serves PaddleOCR-VL
    command = [str(word) for word in vlm["command"]]
    flags = options(command)
    assert flags["--model"] == "PaddlePaddle/PaddleOCR-VL"
    assert {flag: flags.get(flag, "missing") for flag in RECIPE} == RECIPE
    assert "--no-enable-prefix-caching" in flags
    assert 0 < float(flags["--gpu-memory-utilization"] or 0) < 0.9  # room left for the layout model
    port = flags.get("--port") or "8000"
    assert f"localhost:{port}/health" in " ".join(vlm["healthcheck"]["test"])
    assert vlm["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_the_service_points_at_the_vlm_with_valid_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ocr = services["ocr"]
    environment = {key: resolve(str(value)) for key, value in ocr["environment"].items()}
    unknown = {key for key in environment if key.lower() not in Settings.model_fields}
    assert unknown == set(), "not settings of the service"
    settings = Settings(**{key.lower(): value for key, value in environment.items()})
    check_settings(settings)  # what the engine checks first when it loads
    assert settings.ocr_engine == "paddleocr-vl" and settings.vl_backend == "vllm-server"
    assert settings.vl_max_concurrency == "auto" and not settings.vl_model_name  # the name comes from vLLM
    url = urlsplit(normalise_server_url(settings.vl_server_url))
    assert url.hostname == "vlm" and "vlm" in ocr["depends_on"]
    assert str(url.port) == (options([str(w) for w in services["vlm"]["command"]]).get("--port") or "8000")
    assert ocr["ports"] == [f"{settings.port}:{settings.port}"]


def test_the_service_is_built_from_this_repository(compose: dict[str, Any]) -> None:
    build = compose["services"]["ocr"]["build"]
    dockerfile = ROOT / build["context"] / build["dockerfile"]
    assert dockerfile.is_file()
    base = resolve(build["args"]["BASE_IMAGE"])
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    assert default is not None and base == default.group(1)  # the Dockerfile's own default unless overridden
    volumes = {entry.split(":")[0] for service in compose["services"].values() for entry in service.get("volumes", [])}
    assert volumes <= set(compose["volumes"])
