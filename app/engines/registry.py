"""The loaded engines of one service: a runtime per engine, the default one, and the choice per request."""

from __future__ import annotations

from collections.abc import Sequence

from app.engines.base import EngineRuntime, OcrEngine
from app.engines.measured import Figures, load_figures
from app.engines.orientation import OrientationDetector
from app.engines.paddleocr_vl.status import VlmStatus, vlm_status_of
from app.engines.select import Choice, EnginePlan, choose_for_request


class EngineSet:
    """Engines loaded side by side (each in its own background thread), in the order ``auto`` prefers them.

    ``default`` is the engine that serves a request naming neither ``engine`` nor ``lang`` (what
    ``/health`` shows as ``engine``); :meth:`choose` picks the engine for any request, using the engines'
    measured speed and accuracy (``figures``; default: :func:`~app.engines.measured.load_figures`).
    ``orientation`` turns pages upright for the engines that need it (``None``: pages are read as they come).
    """

    def __init__(
        self,
        engines: Sequence[OcrEngine],
        plan: EnginePlan,
        default_languages: tuple[str, ...],
        *,
        orientation: OrientationDetector | None = None,
        figures: Figures | None = None,
    ) -> None:
        if not engines:
            raise ValueError("no engine to load")
        self.runtimes: dict[str, EngineRuntime] = {}
        self.plan = plan
        self.default_languages = default_languages
        self.figures = figures if figures is not None else load_figures()
        self.orientation = orientation
        for engine in engines:
            upright = orientation if engine.needs_upright_pages else None
            self.runtimes[engine.name] = EngineRuntime(engine, orientation=upright)
        first = self.choose(None, None)
        self.default = self.runtimes[first.engine]
        if plan.forced:
            self.default.selection = plan.reason
        else:
            self.default.selection = (
                f"{plan.reason}; requests without lang (OCR_LANGUAGES={','.join(default_languages)}): {first.reason}"
            )

    @classmethod
    def single(cls, engine: OcrEngine, reason: str, default_languages: tuple[str, ...]) -> EngineSet:
        """One given engine that serves every request (embedding, tests)."""
        return cls([engine], EnginePlan((engine.name,), forced=engine.name, reason=reason), default_languages)

    @property
    def workers(self) -> int:
        """Worker threads that keep every engine busy: the engines share them (each capped by its slots)."""
        return max(runtime.engine.max_parallel for runtime in self.runtimes.values())

    def start_loading(self) -> None:
        for runtime in self.runtimes.values():
            runtime.start_loading()

    @property
    def settling(self) -> bool:
        """Whether an engine is still loading."""
        return any(runtime.state == "initializing" for runtime in self.runtimes.values())

    def choose(self, languages: tuple[str, ...] | None, engine: str | None, *, strict: bool = False) -> Choice:
        """The engine for a request; ``languages`` ``None`` = ``OCR_LANGUAGES``, ``engine`` ``None`` = ``auto``;
        ``strict``: read only ``languages`` (no English added to a non-Latin script).

        Raises 422 (see :func:`~app.engines.select.choose_for_request`).
        """
        return choose_for_request(
            {name: runtime.engine.languages for name, runtime in self.runtimes.items()},
            languages if languages is not None else self.default_languages,
            explicit_languages=languages is not None,
            engine=engine,
            forced=self.plan.forced,
            strict=strict,
            figures=self.figures,
        )

    def resume(self, engine: str, languages: tuple[str, ...]) -> Choice:
        """The engine for a stored job: the one it was given, or a new choice when that one is no longer loaded."""
        if engine in self.runtimes:
            return Choice(engine, languages, "as submitted")
        return choose_for_request(
            {name: runtime.engine.languages for name, runtime in self.runtimes.items()},
            languages or self.default_languages,
            explicit_languages=False,
            forced=self.plan.forced,
            strict=True,  # the stored languages are those the job was given, English added or not
            figures=self.figures,
        )

    def vlm_statuses(self) -> dict[str, VlmStatus | None]:
        """Each engine's VLM server (``None`` for engines without one), for /metrics."""
        return {name: vlm_status_of(runtime.engine) for name, runtime in self.runtimes.items()}

    def close(self) -> None:
        for runtime in self.runtimes.values():
            runtime.engine.close()
        if self.orientation is not None:
            self.orientation.close()
