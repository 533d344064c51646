"""How fast and how accurate the CPU engines are on document pages, as measured, and the choice ``auto``
makes from that when several loaded engines read a request's languages.

The figures live in ``measured.json`` beside this module. ``scripts/bench_engines.py --write BENCHMARKS.md``
measures them on generated A4 pages (clean, noisy, photographed, vector PDF) and rewrites the file together
with the engines section of BENCHMARKS.md, so the choice and the published table come from one run. The
pages both CPU engines read are English ones; their figures stand for Latin-script text in general.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FIGURES_PATH = Path(__file__).with_name("measured.json")
#: An engine counts as "as accurate" when its CER is at most this much above the best on every kind of page.
CER_TOLERANCE = 0.005


@dataclass(frozen=True)
class Measurement:
    """One engine on one kind of page: pages per second (as the service runs it) and character error rate."""

    pages_per_s: float
    cer: float  # 0..1


@dataclass(frozen=True)
class Figures:
    """Measurements per engine and kind of page, on pages in ``languages``; ``source`` says how they were made."""

    languages: tuple[str, ...]
    engines: Mapping[str, Mapping[str, Measurement]]
    source: str = ""

    def to_json(self) -> str:
        engines = {
            name: {kind: {"pages_per_s": m.pages_per_s, "cer": m.cer} for kind, m in kinds.items()}
            for name, kinds in self.engines.items()
        }
        payload = {"languages": list(self.languages), "source": self.source, "engines": engines}
        return json.dumps(payload, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Figures:
        raw: dict[str, Any] = json.loads(text)
        engines = {
            str(name): {
                str(kind): Measurement(float(m["pages_per_s"]), float(m["cer"])) for kind, m in dict(kinds).items()
            }
            for name, kinds in dict(raw["engines"]).items()
        }
        return cls(tuple(raw.get("languages", ())), engines, str(raw.get("source", "")))


def load_figures(path: Path = FIGURES_PATH) -> Figures | None:
    """The figures in ``path``; ``None`` (logged) when the file is missing or unreadable."""
    try:
        return Figures.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("no engine measurements (%s): auto prefers engines in their configured order", exc)
        return None


@dataclass(frozen=True)
class Verdict:
    engine: str
    reason: str


def _percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def fastest_accurate(figures: Figures, candidates: Sequence[str]) -> Verdict | None:
    """Among ``candidates`` (engines that read the request's languages): the fastest of those whose CER is
    within :data:`CER_TOLERANCE` of the best on every kind of page measured for all of them; when none is,
    the one with the lowest mean CER. ``None`` when fewer than two candidates were measured.

    Speed is pages per second over one page of each kind (the harmonic mean of the rates).
    """
    measured = [name for name in candidates if name in figures.engines]
    if len(measured) < 2:
        return None
    kinds = [kind for kind in figures.engines[measured[0]] if all(kind in figures.engines[n] for n in measured)]
    if not kinds:
        return None
    best = {kind: min(figures.engines[name][kind].cer for name in measured) for kind in kinds}
    rate = {
        name: len(kinds) / sum(1 / max(figures.engines[name][kind].pages_per_s, 1e-9) for kind in kinds)
        for name in measured
    }
    worst = {name: max(figures.engines[name][kind].cer for kind in kinds) for name in measured}
    accurate = [
        name
        for name in measured
        if all(figures.engines[name][kind].cer <= best[kind] + CER_TOLERANCE for kind in kinds)
    ]
    on = f"{', '.join(kinds)} pages in {','.join(figures.languages) or '?'} (scripts/bench_engines.py)"
    if not accurate:
        mean = {name: sum(figures.engines[name][kind].cer for kind in kinds) / len(kinds) for name in measured}
        pick = min(measured, key=lambda name: mean[name])
        return Verdict(pick, f"{pick} has the lowest mean CER ({_percent(mean[pick])}) on {on}")
    pick = max(accurate, key=lambda name: rate[name])
    others = [name for name in measured if name != pick]
    speeds = ", ".join(f"{name} {rate[name]:.2f}" for name in others)
    errors = ", ".join(f"{name} {_percent(worst[name])}" for name in others)
    faster = [name for name in others if rate[name] > rate[pick]]
    if faster:
        reason = (
            f"{pick} is the fastest engine within {CER_TOLERANCE * 100:g} CER points of the most accurate on every "
            f"kind of page ({rate[pick]:.2f} pages/s; {', '.join(faster)} faster but less accurate: worst CER "
            f"{_percent(worst[pick])} vs {errors}), measured on {on}"
        )
    else:
        reason = (
            f"{pick} is the fastest ({rate[pick]:.2f} pages/s vs {speeds}) and within {CER_TOLERANCE * 100:g} CER "
            f"points of the most accurate on every kind of page (worst CER {_percent(worst[pick])} vs {errors}), "
            f"measured on {on}"
        )
    return Verdict(pick, reason)
