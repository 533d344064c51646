"""Python environments that stand in for the images' Python, built the way the images build theirs.

- ``gpu``: a Python 3.10 virtualenv with the GPU base image's stack installed by pip the way the base image
  installs it (the requirements of docker/base-image-versions.txt), then ``docker/install_extras.sh
  requirements.txt`` as Dockerfile runs it.
- ``cpu``: a bare Python 3.11 virtualenv (python:3.11-slim has nothing more) plus the same script, as
  Dockerfile.cpu runs it.

They are cached in ``.cache/image-sim/``, in folders named by a hash of what built them. The GPU base (the slow
part: about 1.5 GB of wheels) is kept apart and never installed into, so that a change of requirements.txt or of
the script only reruns the install, on a copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import ROOT

CACHE = ROOT / ".cache" / "image-sim"
VERSIONS_FILE = ROOT / "docker" / "base-image-versions.txt"
INSTALL_SCRIPT = ROOT / "docker" / "install_extras.sh"
REQUIREMENTS = ROOT / "requirements.txt"
# Everything the install step reads: a change of any of them rebuilds the installed environments.
INSTALL_INPUTS = (
    REQUIREMENTS,
    INSTALL_SCRIPT,
    ROOT / "docker" / "install_plan.py",
    ROOT / "docker" / "protected-packages.txt",
)
RECIPE = "venv + pip install (pip of the interpreter), v1"  # change to rebuild every cached base


class NoInterpreter(RuntimeError):
    """The Python version an image runs is not on this machine."""


@dataclass(frozen=True)
class SimEnv:
    """A built environment: ``python`` is its interpreter; ``install_log`` what install_extras.sh printed."""

    path: Path
    install_log: str
    built_s: float  # 0 when it came from the cache

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def base_image_versions() -> dict[str, list[str]]:
    """The ``key: value`` lines of docker/base-image-versions.txt, values in file order."""
    found: dict[str, list[str]] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        if line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def find_python(version: str) -> tuple[Path, str]:
    """An interpreter of ``version`` (``3.10``) and its full version: ``PYTHON310`` when set, else ``python3.10``
    on PATH, else pyenv's. Raises :class:`NoInterpreter` naming where it looked."""
    variable = "PYTHON" + version.replace(".", "")
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [os.environ.get(variable, ""), shutil.which(f"python{version}") or ""]
    candidates += [str(path) for path in sorted(pyenv.glob(f"versions/{version}*/bin/python{version}"))]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys, platform; print(sys.executable); print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = probe.stdout.split()
        if probe.returncode == 0 and len(lines) == 2 and lines[1].startswith(version + "."):
            return Path(lines[0]), lines[1]
    raise NoInterpreter(
        f"no Python {version} interpreter: set {variable}=/path/to/python{version}, or install one "
        f"(pyenv install {version}, or apt-get install python{version}); looked at {variable}, python{version} on "
        f"PATH and {pyenv}/versions/{version}*"
    )


def digest(*parts: str | bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()[:12]


def run_logged(command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    """Run ``command`` with its output appended to ``log``; on failure raise with the end of that output."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited {code}:\n{log.read_text(errors='replace')[-4000:]}")


def install_extras(
    python: Path, *requirements: Path, dry_run: bool = False, protected: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``docker/install_extras.sh`` into the environment of ``python``, as the Dockerfiles run it."""
    env = {**os.environ, "PYTHON": str(python)}
    if protected is not None:
        env["PROTECTED_PACKAGES"] = str(protected)
    command = ["bash", str(INSTALL_SCRIPT), *(["--dry-run"] if dry_run else []), *map(str, requirements)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)


def _replace_stale(prefix: str, keep: Path) -> None:
    """Remove the cached environments named ``<prefix><other hash>`` and their logs (and a half-built ``keep``)."""
    for stale in CACHE.glob(prefix + "*"):
        if stale.is_dir() and (stale != keep or not (stale / ".complete").exists()):
            shutil.rmtree(stale, ignore_errors=True)
        elif stale.is_file() and stale.name != f"{keep.name}.log":
            stale.unlink()


def gpu_base() -> Path:
    """The cached Python 3.10 virtualenv with the base image's stack, built by pip as the base image is."""
    interpreter, version = find_python(base_image_versions()["python"][0])
    pins = base_image_versions()["requirement"]
    path = CACHE / f"gpu-base-{digest(version, RECIPE, *pins)}"
    if (path / ".complete").exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    _replace_stale("gpu-base-", path)
    log = CACHE / f"{path.name}.log"
    log.unlink(missing_ok=True)
    run_logged([str(interpreter), "-m", "venv", str(path)], log)
    run_logged([str(path / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", *pins], log)
    freeze = subprocess.run(
        [str(path / "bin" / "python"), "-m", "pip", "freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    (path / "pip-freeze.txt").write_text(freeze.stdout)
    (path / ".complete").touch()
    return path


def _installed(kind: str, key: str, make_env: list[list[str]]) -> SimEnv:
    path = CACHE / f"{kind}-image-{key}"
    if (path / ".complete").exists():
        return SimEnv(path, (path / "install-extras.log").read_text(), 0.0)
    began = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    _replace_stale(f"{kind}-image-", path)
    log = CACHE / f"{path.name}.log"
    log.unlink(missing_ok=True)
    for command in make_env:
        run_logged(command, log)
    (path / ".complete").unlink(missing_ok=True)  # a copied base brings its own
    done = install_extras(path / "bin" / "python", REQUIREMENTS)
    with log.open("a") as out:
        out.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"install_extras.sh failed in {path}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    (path / "install-extras.log").write_text(done.stdout + done.stderr)
    (path / ".complete").touch()
    return SimEnv(path, done.stdout + done.stderr, time.monotonic() - began)


def inputs_digest(*parts: str) -> str:
    return digest(*parts, *(path.read_bytes() for path in INSTALL_INPUTS))


def gpu_image() -> SimEnv:
    """The GPU image's Python: a copy of :func:`gpu_base` with ``install_extras.sh requirements.txt`` run in it."""
    base = gpu_base()
    key = inputs_digest(base.name)
    copy = ["cp", "-a", str(base), str(CACHE / f"gpu-image-{key}")]
    return _installed("gpu", key, [copy])


def cpu_image() -> SimEnv:
    """The CPU image's Python: a bare Python 3.11 virtualenv with ``install_extras.sh requirements.txt`` run in it."""
    interpreter, version = find_python("3.11")
    key = inputs_digest(version, RECIPE)
    return _installed("cpu", key, [[str(interpreter), "-m", "venv", str(CACHE / f"cpu-image-{key}")]])
