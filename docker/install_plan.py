"""What docker/install_extras.sh asks the resolver for, and what it says when the answer is no.

Runs with the interpreter the packages go into (the base image's Python 3.10, or python:3.11-slim's), so it
uses the standard library and pip's vendored ``packaging`` only. Subcommands:

``roots PROTECTED WORKDIR``
    Reads the installed distributions and writes into WORKDIR: ``roots.txt`` (every installed distribution as
    a requirement: the protected ones pinned to their installed version with the extras they have installed,
    so the resolver honours what they depend on; the others unpinned, free to move), ``constraints.txt`` (the
    same pins), ``excludes.txt`` (the OpenCV wheels other than the installed one: the four of them hold the
    same ``cv2`` module and overwrite one another) and ``protected.json`` (name -> version).
``baseline WORKDIR``
    Before an install: records what ``pip check`` finds already (``check-before.txt``), for ``verify``.
``explain WORKDIR LOG``
    After a failed resolution: names the protected packages the resolver's explanation mentions, then the
    start of that explanation. Always exits 1.
``verify WORKDIR``
    After the install: fails (exit 1) when a protected distribution is gone or has another version, or when
    ``pip check`` finds a broken requirement that it did not find before (a base image may bring its own; a
    dependency left out on purpose, the other OpenCV wheels, is not one).
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

# packaging when it is installed; else pip's own copy, present wherever pip is (the script runs pip too). The
# standalone one first: importing pip's vendored tree swaps in setuptools' distutils shim for the whole process.
try:
    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version
except ImportError:  # pragma: no cover - a base image without packaging
    from pip._vendor.packaging.markers import default_environment  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.version import InvalidVersion, Version  # type: ignore[no-redef]

# Never roots of the resolution: the installers themselves.
TOOLS = {"pip", "setuptools", "wheel", "uv"}
# Distributions that all install the module cv2; a second one would overwrite the first.
OPENCV = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
# Of the resolver's explanation (thousands of lines when it walks through every release of a package):
# the start, which names the conflict, and the end, which names the requirement that cannot be met.
HEAD_LINES, TAIL_LINES = 12, 6


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_patterns(path: Path) -> list[str]:
    """The glob patterns of a protected-packages file: one a line, ``#`` starts a comment."""
    patterns = []
    for line in path.read_text().splitlines():
        pattern = line.split("#", 1)[0].strip()
        if pattern:
            patterns.append(canonical(pattern))
    return patterns


def installed() -> dict[str, metadata.Distribution]:
    """Canonical name -> distribution, for the interpreter running this (first on sys.path wins)."""
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonical(name) not in found:
            found[canonical(name)] = dist
    return found


def is_protected(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


class Extras:
    """Which extras of the installed distributions are, in effect, installed.

    Extras are not recorded at install time. An extra counts as installed when each of its requirements on this
    platform is installed at a fitting version, with the extras that requirement names (checked the same way);
    pinning it makes the resolver keep those requirements met.
    """

    def __init__(self, dists: dict[str, metadata.Distribution]) -> None:
        self.dists = dists
        self.environment = {key: str(value) for key, value in default_environment().items()}
        self.known: dict[tuple[str, str], bool] = {}
        self.parsed: dict[str, list[Requirement]] = {}

    def requirements(self, name: str) -> list[Requirement]:
        """The requirements of the installed distribution ``name``, parsed once."""
        if name not in self.parsed:
            self.parsed[name] = []
            for line in self.dists[name].requires or []:
                try:
                    self.parsed[name].append(Requirement(line))
                except InvalidRequirement:
                    continue
        return self.parsed[name]

    def satisfied(self, requirement: Requirement) -> bool:
        """An installed distribution meets ``requirement``: name, version and the extras it asks for."""
        name = canonical(requirement.name)
        dist = self.dists.get(name)
        if dist is None:
            return False
        try:
            if not requirement.specifier.contains(Version(dist.version), prereleases=True):
                return False
        except InvalidVersion:
            return False
        return all(self.active(name, canonical(extra)) for extra in requirement.extras)

    def active(self, name: str, extra: str) -> bool:
        key = (name, extra)
        if key not in self.known:
            self.known[key] = True  # a cycle (an extra naming its own package) does not count against it
            wanted = [
                r
                for r in self.requirements(name)
                if r.marker is not None
                and r.marker.evaluate({**self.environment, "extra": extra})
                and not r.marker.evaluate({**self.environment, "extra": ""})
            ]
            self.known[key] = bool(wanted) and all(self.satisfied(r) for r in wanted)
        return self.known[key]

    def of(self, name: str) -> list[str]:
        """The installed extras of the distribution ``name``."""
        provided = self.dists[name].metadata.get_all("Provides-Extra") or []
        return [extra for extra in sorted({canonical(e) for e in provided}) if self.active(name, extra)]


def write_roots(protected_file: Path, workdir: Path) -> int:
    patterns = read_patterns(protected_file)
    dists = installed()
    extras = Extras(dists)
    roots, pins, protected = [], [], {}
    for name in sorted(dists):
        if name in TOOLS:
            continue
        dist = dists[name]
        if is_protected(name, patterns):
            names = extras.of(name)
            extra_part = f"[{','.join(names)}]" if names else ""
            roots.append(f"{name}{extra_part}=={dist.version}")
            pins.append(f"{name}=={dist.version}")
            protected[name] = dist.version
        else:
            roots.append(name)
    cv2_owners = [name for name in OPENCV if name in dists]
    excludes = [name for name in OPENCV if name not in cv2_owners] if cv2_owners else []
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "roots.txt").write_text("".join(f"{line}\n" for line in roots))
    (workdir / "constraints.txt").write_text("".join(f"{line}\n" for line in pins))
    (workdir / "excludes.txt").write_text("".join(f"{line}\n" for line in excludes))
    (workdir / "protected.json").write_text(json.dumps(protected, indent=1, sort_keys=True))
    shown = ", ".join(f"{name}=={version}" for name, version in sorted(protected.items())) or "none installed"
    print(f"install_extras: protected (must not change): {shown}")
    if excludes:
        print(f"install_extras: cv2 comes from {', '.join(cv2_owners)}; not installed: {', '.join(excludes)}")
    return 0


def mentioned(log: str, protected: dict[str, str]) -> list[str]:
    """The protected packages that a resolver's explanation names (any spelling of the name)."""
    found = []
    for name, version in sorted(protected.items()):
        spelled = re.escape(name).replace(r"\-", "[-_.]")
        if re.search(rf"(?<![\w.-]){spelled}(?![\w-])", log, flags=re.IGNORECASE):
            found.append(f"{name}=={version}")
    return found


def _say(text: str) -> None:
    print(f"install_extras: {text}", file=sys.stderr)


def explain(workdir: Path, log_path: Path) -> int:
    protected = json.loads((workdir / "protected.json").read_text())
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if not line.startswith("Using Python")]
    if not any(line.startswith("error: No solution found") for line in lines):  # no index, a bad file, ...
        _say("FAILED: uv could not install the requirements:")
    else:
        _say("FAILED: the requirements cannot be installed on this base image.")
        names = mentioned("\n".join(lines), protected)
        if names:
            _say(
                f"they would change protected package(s) of the base image: {', '.join(names)} "
                "(protected: docker/protected-packages.txt)."
            )
            _say(
                "pin the requirement that asks for it (after 'you require' below) to a version that fits, or use a "
                "base image whose versions fit (docker/base-image-versions.txt lists the ones checked)."
            )
        else:
            _say("no protected package is involved: the requirements conflict among themselves.")
        _say("the resolver says:")
    if len(lines) > HEAD_LINES + TAIL_LINES:
        left_out = len(lines) - HEAD_LINES - TAIL_LINES
        lines = [*lines[:HEAD_LINES], f"... ({left_out} lines left out)", *lines[-TAIL_LINES:]]
    for line in lines:
        print(f"    {line}", file=sys.stderr)
    return 1


def broken_requirements(excluded: list[str]) -> list[str]:
    """What ``pip check`` reports for this environment, less the dependencies left out on purpose."""
    checked = subprocess.run(
        [sys.executable, "-m", "pip", "check", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    )
    left_out = tuple(f"requires {name}, which is not installed" for name in excluded)
    return [
        line
        for line in checked.stdout.splitlines()
        if line.strip() and not line.startswith("No broken requirements") and not line.rstrip(".").endswith(left_out)
    ]


def verify(workdir: Path) -> int:
    protected = json.loads((workdir / "protected.json").read_text())
    dists = installed()
    changed = [
        f"{name} {version} -> {dists[name].version if name in dists else 'removed'}"
        for name, version in sorted(protected.items())
        if name not in dists or dists[name].version != version
    ]
    if changed:
        print(f"install_extras: FAILED: protected packages changed: {', '.join(changed)}", file=sys.stderr)
        return 1
    before = set((workdir / "check-before.txt").read_text().splitlines())
    excluded = (workdir / "excludes.txt").read_text().split()
    broken = [line for line in broken_requirements(excluded) if line not in before]
    if broken:
        print("install_extras: FAILED: the install broke requirements (pip check):", file=sys.stderr)
        for line in broken:
            print(f"    {line}", file=sys.stderr)
        return 1
    kept = f"{len(protected)} protected packages unchanged" if protected else "no protected package installed"
    print(f"install_extras: {kept}; pip check finds nothing new")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "roots":
        return write_roots(Path(argv[1]), Path(argv[2]))
    if len(argv) == 2 and argv[0] == "baseline":
        excluded = (Path(argv[1]) / "excludes.txt").read_text().split()
        (Path(argv[1]) / "check-before.txt").write_text("\n".join(broken_requirements(excluded)))
        return 0
    if len(argv) == 3 and argv[0] == "explain":
        return explain(Path(argv[1]), Path(argv[2]))
    if len(argv) == 2 and argv[0] == "verify":
        return verify(Path(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
