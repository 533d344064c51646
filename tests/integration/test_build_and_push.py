"""scripts/build_and_push.sh in dry-run: the commands it would run, the masked secret, the refusals, the base
image for each GPU, and the environment variables its help promises."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support.server import ROOT

SCRIPT = ROOT / "scripts" / "build_and_push.sh"
KEY_ID = "f0e1d2c3-registry-key-id"
SECRET = "registry secret with $pecial 'chars'"  # pragma: allowlist secret
CREDENTIALS = {"CLOUD_RU_REGISTRY_KEY_ID": KEY_ID, "CLOUD_RU_REGISTRY_SECRET": SECRET}
VARIABLES = (
    "CLOUD_RU_REGISTRY",
    "CLOUD_RU_REGISTRY_KEY_ID",
    "CLOUD_RU_REGISTRY_SECRET",
    "IMAGE_NAME",
    "IMAGE_TAG",
    "DOCKERFILE",
    "BASE_IMAGE",
    "PLATFORM",
    "INFERENCE_GPU",
    "BUILD_CONTEXT",
)
BASE_REPOSITORY = "ccr-2vdh3abv-pub.cnc.bj.baidubce.com/paddlepaddle/paddleocr-vl"
GPU_BASE_IMAGES = {
    "blackwell": f"{BASE_REPOSITORY}:latest-gpu-sm120-offline",
    "a100": f"{BASE_REPOSITORY}:latest-offline",
    "h100": f"{BASE_REPOSITORY}:latest-offline",
    "v100": f"{BASE_REPOSITORY}:latest-offline",
}


def run(*args: str, env: dict[str, str] | None = None, path: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if key not in VARIABLES}
    if path is not None:
        clean["PATH"] = path
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        check=False,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def commands(stdout: str) -> list[list[str]]:
    """The printed commands (lines starting with '+ '), split as the shell would."""
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def test_dry_run_prints_login_build_push_with_the_secret_masked() -> None:
    result = run(
        "--registry",
        "myteam",
        "--tag",
        "v1.2",
        "--file",
        "Dockerfile.cpu",
        "--base-image",
        "registry.example/paddle:3.2 gpu",
        "--build-arg",
        "EXTRA=1",
        "--dry-run",
        env=CREDENTIALS,
        path="/usr/bin:/bin",  # no docker needed for a dry run
    )
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    login, build, push = commands(result.stdout)
    # The secret goes on standard input: the printed pipeline shows a mask in its place.
    assert login == ["printf", "%s", "********", "|", "docker", "login", "myteam.cr.cloud.ru", "--username", KEY_ID,
                     "--password-stdin"]  # fmt: skip
    reference = "myteam.cr.cloud.ru/paddleocr-vl-service:v1.2"
    assert build == [
        "docker", "build", "--platform", "linux/amd64", "--file", f"{ROOT}/Dockerfile.cpu", "--tag", reference,
        "--build-arg", "BASE_IMAGE=registry.example/paddle:3.2 gpu", "--build-arg", "EXTRA=1", str(ROOT),
    ]  # fmt: skip
    assert push == ["docker", "push", reference]
    assert result.stdout.strip().endswith(f"image: {reference}")
    assert "nothing was run" in result.stdout


def test_environment_variables_and_defaults() -> None:
    env = {
        **CREDENTIALS,
        "CLOUD_RU_REGISTRY": "other.cr.cloud.ru",
        "IMAGE_NAME": "ocr",
        "IMAGE_TAG": "2026-01",
        "BASE_IMAGE": "base:from-env",
    }
    result = run("--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    login, build, push = commands(result.stdout)
    assert login[6] == "other.cr.cloud.ru"  # a full host is used as is
    assert build[build.index("--file") + 1] == f"{ROOT}/Dockerfile"  # the default Dockerfile
    assert "BASE_IMAGE=base:from-env" in build
    assert push == ["docker", "push", "other.cr.cloud.ru/ocr:2026-01"]
    # Options win over the environment.
    result = run("--dry-run", "--tag", "override", env=env)
    assert commands(result.stdout)[-1] == ["docker", "push", "other.cr.cloud.ru/ocr:override"]


def test_default_tag_is_the_git_commit() -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True
    )
    if commit.returncode != 0:
        pytest.skip("not a git checkout")
    result = run("--registry", "team", "--dry-run", env=CREDENTIALS)
    assert commands(result.stdout)[-1] == [
        "docker",
        "push",
        f"team.cr.cloud.ru/paddleocr-vl-service:{commit.stdout.strip()}",
    ]


def test_no_push_builds_without_credentials() -> None:
    result = run("--registry", "team", "--tag", "t", "--no-push", "--dry-run")
    assert result.returncode == 0, result.stderr
    (build,) = commands(result.stdout)
    assert build[:2] == ["docker", "build"] and "BASE_IMAGE" not in " ".join(build)


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, ["CLOUD_RU_REGISTRY", "CLOUD_RU_REGISTRY_KEY_ID", "CLOUD_RU_REGISTRY_SECRET"]),
        ({"CLOUD_RU_REGISTRY": "team", "CLOUD_RU_REGISTRY_KEY_ID": KEY_ID}, ["CLOUD_RU_REGISTRY_SECRET"]),
        ({"CLOUD_RU_REGISTRY": "team", "CLOUD_RU_REGISTRY_SECRET": SECRET}, ["CLOUD_RU_REGISTRY_KEY_ID"]),
    ],
)
def test_missing_variables_are_named_and_nothing_runs(env: dict[str, str], missing: list[str]) -> None:
    result = run("--dry-run", env=env)
    assert result.returncode == 2
    assert commands(result.stdout) == []
    first_line = result.stderr.splitlines()[0]
    assert first_line.startswith("error: missing: " + " ".join(missing) + " ")
    assert SECRET not in result.stderr


@pytest.mark.parametrize(
    "args",
    [["--registry"], ["--bogus"], ["--registry", "team", "--tag", "bad tag!"]],
)
def test_bad_arguments_are_refused(args: list[str]) -> None:
    result = run(*args, "--dry-run", env=CREDENTIALS)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert commands(result.stdout) == []


def test_a_real_run_without_docker_stops_before_running_anything(tmp_path: Path) -> None:
    if Path("/usr/bin/docker").exists() or Path("/bin/docker").exists():
        pytest.skip("docker is installed in /usr/bin: a real run would really log in")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    result = run("--registry", "team", "--context", str(tmp_path), env=CREDENTIALS, path="/usr/bin:/bin")
    assert result.returncode == 2
    assert "docker is not installed" in result.stderr
    assert commands(result.stdout) == []


def build_args(build: list[str]) -> list[str]:
    return [build[i + 1] for i, word in enumerate(build) if word == "--build-arg"]


@pytest.mark.parametrize("gpu", sorted(GPU_BASE_IMAGES))
def test_gpu_picks_the_base_image(gpu: str) -> None:
    for given in (gpu, gpu.upper()):
        result = run("--registry", "team", "--tag", "t", "--gpu", given, "--dry-run", env=CREDENTIALS)
        assert result.returncode == 0, result.stderr
        _, build, _ = commands(result.stdout)
        assert build_args(build) == [f"BASE_IMAGE={GPU_BASE_IMAGES[gpu]}"]
        assert build[build.index("--file") + 1] == f"{ROOT}/Dockerfile"
        assert f"base image: {GPU_BASE_IMAGES[gpu]} (GPU: {gpu})" in result.stdout
    assert ("V100 (sm_70)" in result.stderr) == (gpu == "v100")


def test_blackwell_is_the_dockerfile_default() -> None:
    """Without --gpu the Dockerfile's own base image is used: the Blackwell (sm_120) one, as --gpu blackwell."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={GPU_BASE_IMAGES['blackwell']}\n" in dockerfile
    result = run("--registry", "team", "--tag", "t", "--dry-run", env=CREDENTIALS)
    _, build, _ = commands(result.stdout)
    assert build_args(build) == []
    assert "base image: the Dockerfile's own" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpu", "t4"], "unknown GPU: t4"),
        (["--gpu", "a100", "--base-image", "other:1"], "not both"),
        (["--gpu", "h100", "--file", "Dockerfile.cpu"], "has no BASE_IMAGE"),
    ],
)
def test_gpu_refusals(args: list[str], message: str) -> None:
    result = run("--registry", "team", *args, "--dry-run", env=CREDENTIALS)
    assert result.returncode == 2
    assert message in result.stderr
    assert commands(result.stdout) == []


def help_text() -> str:
    result = run("--help")
    assert result.returncode == 0
    return result.stdout


def test_every_environment_variable_in_the_help_is_read(tmp_path: Path) -> None:
    """Each [VARIABLE] the help names changes the dry run as its option would (and only those are named)."""
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE=x\nFROM ${BASE_IMAGE}\n")
    effects = {
        "CLOUD_RU_REGISTRY": ("envteam", "docker login envteam.cr.cloud.ru"),
        "INFERENCE_GPU": ("h100", f"BASE_IMAGE={GPU_BASE_IMAGES['h100']}"),
        "BASE_IMAGE": ("base:from-env", "BASE_IMAGE=base:from-env"),
        "IMAGE_NAME": ("envimage", ".cr.cloud.ru/envimage:"),
        "IMAGE_TAG": ("envtag", ":envtag\n"),
        "DOCKERFILE": ("Dockerfile.cpu", f"--file {ROOT}/Dockerfile.cpu "),
        "PLATFORM": ("linux/arm64", "--platform linux/arm64 "),
        "BUILD_CONTEXT": (str(tmp_path), f"--file {tmp_path}/Dockerfile "),
    }
    named = set(re.findall(r"\[([A-Z][A-Z0-9_]+)\]", help_text()))
    assert named == set(effects)
    for variable, (value, effect) in effects.items():
        env = {**CREDENTIALS, "CLOUD_RU_REGISTRY": "team", variable: value}
        result = run("--dry-run", env=env)
        assert result.returncode == 0, (variable, result.stderr)
        assert effect in result.stdout, (variable, result.stdout)
        assert effect not in run("--dry-run", env={**CREDENTIALS, "CLOUD_RU_REGISTRY": "team"}).stdout


def test_the_help_states_the_defaults_it_uses() -> None:
    text = help_text()
    assert re.search(r"--file PATH +Dockerfile, relative to the context, default Dockerfile;", text)
    result = run("--registry", "team", "--dry-run", env=CREDENTIALS)
    _, build, _ = commands(result.stdout)
    assert build[build.index("--file") + 1] == f"{ROOT}/Dockerfile"
    assert "default paddleocr-vl-service" in text and "/paddleocr-vl-service:" in build[build.index("--tag") + 1]
    assert "default linux/amd64" in text and build[build.index("--platform") + 1] == "linux/amd64"
    assert "default the repository root" in text and build[-1] == str(ROOT)
