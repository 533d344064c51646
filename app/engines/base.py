"""The engine interface: load once, report name/device/state, recognise page images into blocks."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from PIL import Image

from app.heap import freeze_loaded
from app.scheduler import Gate
from app.schemas import Block

if TYPE_CHECKING:
    from app.engines.orientation import OrientationDetector
    from app.layout.lexicon import Lexicon

log = logging.getLogger(__name__)

EngineState = Literal["initializing", "ready", "failed"]
#: What an engine's blocks are: ``"blocks"`` its own layout blocks with its own Markdown (the VLM), left as
#: they are; ``"lines"`` text lines in no particular order (PP-OCR); ``"ordered_lines"`` text lines in the
#: reading order of the engine's own layout analysis (Tesseract). Lines go through :mod:`app.layout.page`.
LineOrder = Literal["blocks", "lines", "ordered_lines"]


class EngineLoadError(RuntimeError):
    """A loading failure whose message already says what is wrong and what to do; shown as it is."""


@dataclass
class EnginePage:
    """What an engine returns for one page.

    ``markdown`` is set by engines that produce their own Markdown (the VLM); otherwise the service
    builds it from the blocks. ``images`` maps relative file names referenced from the Markdown to
    their bytes (figures cropped by the VLM pipeline). ``rotation``: degrees (0, 90, 180, 270) the page
    image was turned clockwise before it was read (:mod:`app.engines.orientation`); ``bbox`` values then
    refer to the turned page.
    """

    blocks: list[Block]
    markdown: str | None = None
    images: dict[str, bytes] = field(default_factory=dict)
    rotation: int = 0


class OcrEngine(ABC):
    """An OCR engine. ``load`` runs once, in a background thread; ``recognize`` runs in worker threads.

    Implementations must allow ``recognize`` to be called from ``max_parallel`` threads at once. Failures
    a client should hear about are raised as :class:`app.engines.errors.EngineError`; engines know no HTTP.
    """

    name: str
    device: str = "cpu"
    #: What the engine is doing or waiting for, shown in /health (e.g. "waiting for the VLM server ...").
    detail: str | None = None
    #: The languages it reads (canonical codes, see :mod:`app.engines.languages`); ``None``: every one.
    languages: frozenset[str] | None = None
    #: Whether pages must be turned upright before it reads them (the CPU engines; the VLM pipeline has
    #: its own orientation classifier).
    needs_upright_pages: bool = False
    #: What ``recognize`` returns (see :data:`LineOrder`): lines are laid out by the service (tables, order).
    line_order: LineOrder = "blocks"
    #: Word lists that decide whether a word was read in the wrong script (Tesseract's; ``None``: none).
    lexicon: Lexicon | None = None

    @property
    def max_parallel(self) -> int:
        """How many pages this engine may work on at the same time."""
        return 1

    @property
    def page_gate(self) -> Gate | None:
        """Admission of pages by the page scheduler when the engine's room changes at run time (a VLM server's
        request limit); ``None``: pages are bounded by ``max_parallel`` only."""
        return None

    @abstractmethod
    def load(self) -> None:
        """Load models (may take minutes); raise with an actionable message on failure."""

    @abstractmethod
    def recognize(self, images: Sequence[Image.Image], languages: Sequence[str]) -> list[EnginePage]:
        """Recognise RGB page images expecting ``languages`` (canonical codes; engines with one model for
        every language ignore them): one :class:`EnginePage` per image, in order, with ``bbox`` in that
        image's pixels. Raises :class:`~app.engines.errors.EngineError` for a failure the client may be told."""

    @property
    def batch_size(self) -> int:
        """How many pages of a document the service hands over in one ``recognize`` call."""
        return 1

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources at shutdown."""


class EngineRuntime:
    """An engine plus its lifecycle: ``initializing`` -> ``ready`` | ``failed`` (with a reason)."""

    def __init__(
        self, engine: OcrEngine, selection: str | None = None, orientation: OrientationDetector | None = None
    ) -> None:
        self.engine = engine
        self.selection = selection  # why this engine was chosen (shown in /health)
        #: Turns pages upright that the engine did not read upright (``None``: pages are read as they come).
        self.orientation = orientation
        self.state: EngineState = "initializing"
        self.error: str | None = None
        self._started = time.monotonic()
        self.init_seconds: float | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        #: Pages this engine works on at once are capped at ``max_parallel`` (several engines share the workers).
        self.slots = threading.BoundedSemaphore(engine.max_parallel)

    @property
    def elapsed_seconds(self) -> float:
        return round(time.monotonic() - self._started, 2)

    def start_loading(self) -> None:
        """Load the engine in a daemon thread and return at once."""
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._load, name=f"load-{self.engine.name}", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            self.engine.load()
        except Exception as exc:  # any failure of a third-party loader is reported, not raised
            self.error = str(exc) if isinstance(exc, EngineLoadError) else f"{type(exc).__name__}: {exc}"
            self.state = "failed"
            log.error("engine %s failed to initialise: %s", self.engine.name, self.error)
        else:
            freeze_loaded()  # the loaded engine's objects out of the collector's way (app.heap)
            self.state = "ready"
            log.info("engine %s ready on %s", self.engine.name, self.engine.device)
        finally:
            self.init_seconds = self.elapsed_seconds
            self._ready.set()

    def recognize_batch(self, images: Sequence[Image.Image], languages: Sequence[str]) -> list[EnginePage]:
        """Pages through the engine in one call, holding one of its ``max_parallel`` slots (called from
        workers); with ``orientation``, pages that were not read upright are turned and read again. Pages of
        text lines are then laid out (:func:`app.layout.page.lay_out`: tables, paragraphs, reading order).

        Raises :class:`~app.engines.errors.EngineError` (and, for bugs, anything else) from the engine.
        """
        with self.slots:
            pages = self.engine.recognize(images, languages)
            if self.orientation is not None:
                pages = self.orientation.upright(images, pages, lambda turned: self.engine.recognize(turned, languages))
            if self.engine.line_order != "blocks":  # a page with figures keeps its engine's Markdown (it links them)
                pages = [
                    page if page.images else self._lay_out(image, page, languages)
                    for image, page in zip(images, pages, strict=True)
                ]
            return pages

    def _lay_out(self, image: Image.Image, page: EnginePage, languages: Sequence[str]) -> EnginePage:
        from app.engines.orientation import turn
        from app.layout.page import lay_out

        def read(sheets: Sequence[Image.Image]) -> list[list[Block]]:
            return [sheet.blocks for sheet in self.engine.recognize(sheets, languages)]

        read_image = turn(image, page.rotation) if page.rotation else image
        keep = self.engine.line_order == "ordered_lines"
        return lay_out(read_image, page, read, languages, keep_order=keep, lexicon=self.engine.lexicon)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading has finished (either way); for tests and scripts."""
        return self._ready.wait(timeout)
