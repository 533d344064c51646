"""Engine selection: the one place that decides which engines are loaded and which one serves a request.

Both decisions are pure functions, tested without a GPU: :func:`plan_engines` (at start-up, from the
settings and facts about the machine, :func:`gather_facts`) and :func:`choose_for_request` (per
request, from its ``lang`` and ``engine`` options and the languages each loaded engine reads).
Gathering the facts is cheap and imports nothing heavy: it runs before ``/health`` answers.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.engines.base import OcrEngine
from app.engines.languages import KNOWN_LANGUAGES, debian_package, describe, latin_only, with_latin
from app.engines.measured import Figures, fastest_accurate
from app.errors import invalid_field
from app.settings import CPU_ENGINES, Settings

if TYPE_CHECKING:
    from app.engines.orientation import OrientationDetector

log = logging.getLogger(__name__)
_NVIDIA_DEVICE = re.compile(r"^nvidia\d+$")


@dataclass(frozen=True)
class MachineFacts:
    """What the selection depends on, besides the settings."""

    paddleocr_installed: bool
    gpu_devices: tuple[str, ...]  # CUDA GPU device files visible to this process, e.g. ("/dev/nvidia0",)


def gather_facts(dev: Path = Path("/dev")) -> MachineFacts:
    """Whether ``paddleocr`` can be imported (without importing it) and which NVIDIA GPUs are visible.

    A GPU given to a container appears as ``/dev/nvidiaN`` (the NVIDIA container runtime creates
    exactly the devices it hands over), so the device files answer "is a GPU visible?" in microseconds,
    where importing paddle to ask CUDA would take seconds.
    """
    try:
        gpus = tuple(sorted(str(p) for p in dev.iterdir() if _NVIDIA_DEVICE.match(p.name)))
    except OSError:
        gpus = ()
    return MachineFacts(paddleocr_installed=importlib.util.find_spec("paddleocr") is not None, gpu_devices=gpus)


@dataclass(frozen=True)
class EnginePlan:
    """Which engines to load, whether ``OCR_ENGINE`` forces one of them, and why."""

    engines: tuple[str, ...]  # in the order ``auto`` prefers them
    forced: str | None  # OCR_ENGINE=<name>: it serves every request that does not name an engine
    reason: str


def plan_engines(
    requested: str, cpu_engines: tuple[str, ...] | None, vl_server_url: str, facts: MachineFacts
) -> EnginePlan:
    """The engines for ``OCR_ENGINE=requested`` and ``OCR_CPU_ENGINES`` (``None`` = ``auto``).

    ``auto`` uses ``paddleocr-vl`` when paddleocr is installed and either a CUDA GPU is visible or a
    VLM server is configured (``VL_SERVER_URL``): it reads every language, so by default no CPU
    engine is loaded beside it. Otherwise the CPU engines ``pp-ocr`` and ``tesseract`` are loaded, and
    each request goes to one of them by its languages (:func:`choose_for_request`). An explicit
    ``OCR_CPU_ENGINES`` list is loaded in every case (beside the VLM too).
    """
    if requested != "auto":
        main: str | None = requested
        reason = f"OCR_ENGINE={requested}"
    elif not facts.paddleocr_installed:
        main, reason = None, "auto: paddleocr is not installed, so the CPU engines"
    elif facts.gpu_devices:
        count = len(facts.gpu_devices)
        main = "paddleocr-vl"
        reason = (
            f"auto: paddleocr is installed and {count} CUDA GPU{'s' if count > 1 else ''} "
            f"visible ({', '.join(facts.gpu_devices)})"
        )
    elif vl_server_url.strip():
        main, reason = "paddleocr-vl", "auto: paddleocr is installed and VL_SERVER_URL is set"
    else:
        main, reason = None, "auto: no CUDA GPU is visible and VL_SERVER_URL is not set, so the CPU engines"
    auto_cpu = () if main == "paddleocr-vl" else CPU_ENGINES
    cpu = auto_cpu if cpu_engines is None else cpu_engines
    engines = tuple(dict.fromkeys(([main] if main else []) + [name for name in CPU_ENGINES if name in cpu]))
    if main is None:
        reason += " " + ", ".join(engines)
    elif len(engines) > 1:
        reason += f"; also loaded: {', '.join(engines[1:])}"
    return EnginePlan(engines=engines, forced=None if requested == "auto" else requested, reason=reason)


@dataclass(frozen=True)
class Choice:
    """The engine for one request, the languages it is asked to read, and why."""

    engine: str
    languages: tuple[str, ...]
    reason: str


def choose_for_request(
    readable: Mapping[str, frozenset[str] | None],
    languages: tuple[str, ...],
    *,
    explicit_languages: bool,
    engine: str | None = None,
    forced: str | None = None,
    strict: bool = False,
    figures: Figures | None = None,
) -> Choice:
    """The engine for a request in ``languages``, among the loaded engines ``readable`` (name -> the
    languages it reads, ``None`` = all; in preference order), and the languages it is to read.

    An engine named by the request (``engine``), else ``forced`` (``OCR_ENGINE``), serves it; otherwise
    ``auto``: an engine that reads every language (the VLM) when loaded; else, of the engines that read
    all of ``languages``, the one the measurements (``figures``, :mod:`app.engines.measured`) show fastest
    and at least as accurate on document pages, for Latin-script languages (those measured); else the first
    of them; else (no engine reads them all) the one that reads the most.

    The chosen engine also reads English when a language is not written in the Latin script and it reads
    English (:func:`~app.engines.languages.with_latin`), unless ``strict``.

    Raises 422 ``invalid_engine`` for an engine that is not loaded, and 422 ``invalid_lang`` for a
    language no loaded engine reads (listing those installed) or, when the languages were given by the
    request, one the named engine does not read. Languages that come from ``OCR_LANGUAGES``
    (``explicit_languages=False``) are not checked: they only steer ``auto``.
    """
    if engine is not None and engine not in readable:
        raise invalid_field("engine", f"'{engine}' is not loaded here; loaded: {', '.join(readable)}")
    installed = _union(readable.values())
    if explicit_languages:
        unknown = [code for code in languages if code not in (KNOWN_LANGUAGES if installed is None else installed)]
        if unknown:
            if set(unknown) <= KNOWN_LANGUAGES:
                packages = " ".join(debian_package(code) for code in unknown)
                what = f"not installed (for Tesseract, the Debian package {packages})"
            else:
                what = "unknown"
            raise invalid_field("lang", f"{', '.join(unknown)}: {what}; installed languages: {describe(installed)}")

    def chosen(name: str, reason: str) -> Choice:
        return Choice(name, languages if strict else with_latin(languages, readable[name]), reason)

    named = engine or forced
    if named is not None:
        reads = readable[named]
        missing = [code for code in languages if reads is not None and code not in reads]
        if explicit_languages and missing:
            raise invalid_field("lang", f"{named} does not read {', '.join(missing)}; it reads: {describe(reads)}")
        how = "engine=" if engine else "OCR_ENGINE="
        return chosen(named, f"{how}{named}")
    asked = ",".join(languages)
    readers = [name for name, reads in readable.items() if reads is None or set(languages) <= reads]
    if readers and readable[readers[0]] is None:
        return chosen(readers[0], f"auto: {readers[0]} reads every language")
    if len(readers) > 1 and figures is not None and latin_only(languages):
        verdict = fastest_accurate(figures, readers)
        if verdict is not None:
            return chosen(verdict.engine, f"auto: {' and '.join(readers)} read {asked}; {verdict.reason}")
    if readers:
        first = readers[0]
        passed = [
            f"{name} does not read {','.join(code for code in languages if code not in (reads or ()))}"
            for name, reads in readable.items()
            if name not in readers
        ]
        but = f" ({'; '.join(passed)})" if passed else ""
        if readers[1:]:
            but = f", the first of {' and '.join(readers)} (no measurements for {asked}){but}"
        return chosen(first, f"auto: {first} reads {asked}{but}")
    best = max(readable, key=lambda name: len(set(languages) & (readable[name] or frozenset())))
    return chosen(best, f"auto: no loaded engine reads all of {asked}; {best} reads the most")


def _union(groups: Iterable[frozenset[str] | None]) -> frozenset[str] | None:
    union: set[str] = set()
    for group in groups:
        if group is None:
            return None
        union |= group
    return frozenset(union)


def build_orientation(settings: Settings, engines: Sequence[OcrEngine]) -> OrientationDetector | None:
    """The page orientation detector for ``engines`` that need upright pages, unless ``OCR_AUTO_ROTATE`` is off;
    ``None`` (with a warning naming the fix) when Tesseract's ``osd.traineddata`` is not installed."""
    if not settings.ocr_auto_rotate or not any(engine.needs_upright_pages for engine in engines):
        return None
    from app.engines.orientation import OrientationDetector
    from app.engines.tesseract import find_tessdata

    tessdata = find_tessdata(settings.tessdata_dir)
    detector = OrientationDetector.find(tessdata)
    if detector is None:
        log.warning(
            "OCR_AUTO_ROTATE: no osd.traineddata in %s (Debian package tesseract-ocr-osd) or no tesserocr: "
            "pages are read as they come, sideways and upside-down ones too",
            tessdata,
        )
    return detector
