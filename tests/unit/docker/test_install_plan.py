"""docker/install_plan.py (what the images' install step protects and how it explains a refusal), and the
Dockerfiles' use of it. The install itself runs in tests/integration/test_image_install.py."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import image_sim
from tests.support.image_sim import base_image_versions
from tests.support.server import ROOT


def load_plan() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_plan", ROOT / "docker" / "install_plan.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["install_plan"] = module
    spec.loader.exec_module(module)
    return module


plan = load_plan()
PATTERNS = plan.read_patterns(ROOT / "docker" / "protected-packages.txt")


@pytest.mark.parametrize(
    ("name", "protected"),
    [
        ("paddlepaddle-gpu", True),
        ("paddlepaddle", True),
        ("paddleocr", True),
        ("paddlex", True),
        ("numpy", True),
        ("opencv-contrib-python", True),
        ("nvidia-cudnn-cu12", True),
        ("safetensors", True),
        ("numpyro", False),
        ("python-dateutil", False),
        ("boto3", False),
        ("paddle2onnx", False),
    ],
)
def test_protected_patterns(name: str, protected: bool) -> None:
    assert plan.is_protected(plan.canonical(name), PATTERNS) is protected


def test_a_refusal_names_the_protected_packages_in_any_spelling() -> None:
    protected = {"python-dateutil": "3.0.0", "numpy": "2.2.6", "paddlex": "3.3.13"}
    log = (
        "Because botocore>=1.36.0 depends on python_dateutil>=2.1,<3.0.0 and numpy-financial==1.0 needs "
        "scipy, we can conclude that your requirements are unsatisfiable."
    )
    assert plan.mentioned(log, protected) == ["python-dateutil==3.0.0"]  # not numpy (numpy-financial is another)


def test_extras_count_only_when_installed_down_to_their_own_extras() -> None:
    """This checkout's venv has paddleocr[doc-parser] (requirements-dev.txt), not paddleocr[all]: [all] asks
    for paddlex[ie,trans], whose langchain & co. are not installed, though paddlex itself is."""
    extras = plan.Extras(plan.installed())
    assert "doc-parser" in extras.of("paddleocr")
    assert "all" not in extras.of("paddleocr") and "ie" not in extras.of("paddleocr")


def test_the_dockerfile_default_base_is_the_one_checked() -> None:
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert default is not None
    assert [default.group(1)] == base_image_versions()["base-image"]


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cpu"])
def test_both_images_install_with_the_script(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    assert "COPY docker/install_extras.sh docker/install_plan.py docker/protected-packages.txt /tmp/install/" in text
    assert re.search(r"^RUN .*bash /tmp/install/install_extras\.sh /tmp/requirements\.txt", text, re.MULTILINE)
    assert "pip install" not in text  # no second way in


def explained(tmp_path: Path, capsys: pytest.CaptureFixture[str], log: str) -> str:
    (tmp_path / "protected.json").write_text('{"numpy": "2.2.6", "paddlex": "3.3.13"}')
    (tmp_path / "uv.log").write_text(log)
    assert plan.explain(tmp_path, tmp_path / "uv.log") == 1
    return capsys.readouterr().err


def test_a_conflict_with_a_protected_package_is_explained_with_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = [f"         And because step {n} ..." for n in range(500)]
    log = "\n".join(
        [
            "Using Python 3.10.13 environment at: /opt/numpy-env",  # a path is not a mention
            "error: No solution found when resolving dependencies",
            "  cause: Because rapidocr>=9 depends on numpy>=3 and numpy==2.2.6, rapidocr>=9 cannot be used.",
            *steps,
            "         And because you require rapidocr>=9, we can conclude that your requirements are unsatisfiable.",
        ]
    )
    err = explained(tmp_path, capsys, log)
    assert "would change protected package(s) of the base image: numpy==2.2.6 (" in err
    assert "paddlex" not in err
    assert "you require rapidocr>=9" in err  # the end of the explanation is kept
    assert "lines left out" in err and len(err.splitlines()) < 30


def test_a_failure_that_is_no_conflict_is_not_called_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = "error: Failed to fetch: `https://pypi.org/simple/numpy/`\n  Caused by: dns error"
    err = explained(tmp_path, capsys, log)
    assert "uv could not install the requirements" in err and "Failed to fetch" in err
    assert "protected" not in err and "conflict" not in err


def test_a_missing_image_python_is_named_with_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHON399", raising=False)
    with pytest.raises(image_sim.NoInterpreter) as missing:
        image_sim.find_python("3.99")
    assert "no Python 3.99 interpreter: set PYTHON399=" in str(missing.value)
