"""``tesseract``: Tesseract 5 (LSTM) in this process through ``tesserocr``, for Russian and 100+ other languages.

The ``tesserocr`` wheel bundles libtesseract (built without OpenMP) and releases the GIL while it
recognises, so pages run in parallel on the scheduler's threads, one Tesseract API object per page at
a time. The language models (``*.traineddata``) come from Debian's ``tesseract-ocr-<lang>`` packages.
An API object loads its models once (~0.1-0.2 s) and is reused; idle ones are kept per language set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from app.engines.base import EngineLoadError, EnginePage, OcrEngine
from app.engines.errors import PageTimeout
from app.engines.languages import tesseract_languages, tesseract_names
from app.layout.lexicon import Lexicon
from app.results import escape_markdown_line
from app.schemas import Block, Word

log = logging.getLogger(__name__)

#: Where Debian, Ubuntu, Alpine/Fedora and Homebrew put the models, newest first.
TESSDATA_CANDIDATES = (
    Path("/usr/share/tesseract-ocr/5/tessdata"),
    Path("/usr/share/tesseract-ocr/4.00/tessdata"),
    Path("/usr/share/tessdata"),
    Path("/usr/local/share/tessdata"),
    Path("/opt/homebrew/share/tessdata"),
)
#: The Debian packages with the models this service expects by default.
DEBIAN_PACKAGES = "tesseract-ocr-rus tesseract-ocr-eng"


def find_tessdata(configured: str = "", candidates: Sequence[Path] = TESSDATA_CANDIDATES) -> Path | None:
    """The models folder: ``TESSDATA_DIR`` when set, else the first candidate holding a ``*.traineddata``."""
    if configured.strip():
        return Path(configured.strip())
    for folder in candidates:
        with contextlib.suppress(OSError):
            if any(folder.glob("*.traineddata")):
                return folder
    return None


@dataclass(frozen=True)
class TextLine:
    """One line as Tesseract reports it, in its reading order."""

    text: str
    bbox: tuple[int, int, int, int]
    confidence: float  # 0..1
    starts_paragraph: bool
    words: tuple[Word, ...] = ()  # left to right, with their own boxes (see :func:`_read_words`)


def join_split_lines(lines: Sequence[TextLine]) -> list[TextLine]:
    """``lines`` with the pieces of one visual line joined (in reading order, where its first piece was).

    On a photographed or skewed page Tesseract's layout analysis sometimes cuts a sloping line in two,
    even inside a word, and lists the pieces apart (the right piece first). Two pieces belong together
    when the gap between them is at most one line height (columns are further apart) and they overlap
    vertically by 0.3 of the smaller height or more (a sloping line's pieces are offset); pieces of the
    lines above and below overlap less, or lie across each other. A gap over a quarter height is a space.
    """
    joined: list[TextLine] = []
    for line in lines:
        if not line.text.strip():
            continue
        for index, kept in enumerate(joined):
            merged = _joined(kept, line)
            if merged is not None:
                joined[index] = merged
                break
        else:
            joined.append(line)
    return joined


def _joined(a: TextLine, b: TextLine) -> TextLine | None:
    """``a`` and ``b`` as one line when they are two pieces of it, else ``None``; ``a`` keeps its place."""
    left, right = (a, b) if a.bbox[0] <= b.bbox[0] else (b, a)
    height = min(left.bbox[3] - left.bbox[1], right.bbox[3] - right.bbox[1])
    overlap = min(left.bbox[3], right.bbox[3]) - max(left.bbox[1], right.bbox[1])
    gap = right.bbox[0] - left.bbox[2]
    if height <= 0 or overlap < 0.3 * height or not -0.5 * height <= gap <= height:
        return None
    first, second = " ".join(left.text.split()), " ".join(right.text.split())
    size_a, size_b = len(first), len(second)
    return TextLine(
        text=first + (" " if gap > 0.25 * height else "") + second,
        bbox=(
            min(a.bbox[0], b.bbox[0]),
            min(a.bbox[1], b.bbox[1]),
            max(a.bbox[2], b.bbox[2]),
            max(a.bbox[3], b.bbox[3]),
        ),
        confidence=(left.confidence * size_a + right.confidence * size_b) / max(1, size_a + size_b),
        starts_paragraph=a.starts_paragraph,
        words=left.words + right.words,
    )


def page_from_lines(lines: Sequence[TextLine]) -> EnginePage:
    """Line blocks in Tesseract's reading order (``order`` set) and Markdown with its paragraphs.

    Tesseract's layout analysis keeps the columns of a page apart, so its order is kept rather than
    re-sorted by position (pieces of one line are joined first: :func:`join_split_lines`); a paragraph
    that Tesseract starts becomes a blank line in the Markdown.
    """
    blocks: list[Block] = []
    paragraphs: list[list[str]] = []
    for line in join_split_lines(lines):
        text = " ".join(line.text.split())
        if not text:
            continue
        blocks.append(
            Block(
                bbox=[float(v) for v in line.bbox],
                text=text,
                score=round(min(1.0, max(0.0, line.confidence)), 4),
                label="text",
                order=len(blocks),
                words=list(line.words) or None,
            )
        )
        if line.starts_paragraph or not paragraphs:
            paragraphs.append([])
        paragraphs[-1].append(escape_markdown_line(text))
    markdown = "\n\n".join("\n".join(paragraph) for paragraph in paragraphs)
    return EnginePage(blocks=blocks, markdown=markdown)


class _ApiPool:
    """Idle Tesseract API objects by language string. At most ``keep`` stay idle (least recently used go)."""

    def __init__(self, create: Callable[[str], Any], keep: int) -> None:
        self._create = create
        self._keep = max(1, keep)
        self._idle: OrderedDict[str, list[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, langs: str, api: Any) -> None:
        with self._lock:
            self._idle.setdefault(langs, []).append(api)
            self._idle.move_to_end(langs)
            surplus = []
            while sum(len(apis) for apis in self._idle.values()) > self._keep:
                oldest, apis = next(iter(self._idle.items()))
                surplus.append(apis.pop(0))
                if not apis:
                    del self._idle[oldest]
        for extra in surplus:
            extra.End()

    @contextlib.contextmanager
    def lease(self, langs: str) -> Iterator[Any]:
        """An API object for ``langs`` (an idle one, or a new one), returned to the pool afterwards."""
        with self._lock:
            apis = self._idle.get(langs)
            api = apis.pop() if apis else None
            if apis is not None and not apis:
                del self._idle[langs]
        if api is None:
            api = self._create(langs)
        try:
            yield api
        finally:
            api.Clear()
            self.put(langs, api)

    def close(self) -> None:
        with self._lock:
            apis = [api for group in self._idle.values() for api in group]
            self._idle.clear()
        for api in apis:
            api.End()


class TesseractEngine(OcrEngine):
    name = "tesseract"
    device = "cpu"
    needs_upright_pages = True
    line_order = "ordered_lines"

    def __init__(
        self,
        tessdata: Path | None,
        parallel: int = 1,
        psm: int = 3,
        default_languages: Sequence[str] = ("ru", "en"),
        timeout_s: float = 300.0,
    ) -> None:
        self.tessdata = tessdata
        self._parallel = max(1, parallel)
        self._psm = psm
        self._timeout_s = timeout_s
        #: What the installed models read (listing the folder is cheap: known before loading).
        self.languages: frozenset[str] | None = frozenset(tesseract_languages(tessdata) if tessdata else ())
        installed = self.languages or frozenset()
        chosen = tuple(code for code in default_languages if code in installed)
        self.default_languages = chosen or (("en",) if "en" in installed else tuple(sorted(installed))[:1])
        self._pool = _ApiPool(self._create_api, keep=2 * self._parallel)
        self.lexicon = Lexicon(tessdata)  # the models' own word lists (app.layout.scripts)

    @property
    def max_parallel(self) -> int:
        return self._parallel

    def load(self) -> None:
        if self.tessdata is None:
            raise EngineLoadError(
                "no Tesseract models found (looked in "
                + ", ".join(str(p) for p in TESSDATA_CANDIDATES)
                + f"): install the Debian packages {DEBIAN_PACKAGES}, or set TESSDATA_DIR"
            )
        if not self.languages:
            raise EngineLoadError(
                f"no *.traineddata in TESSDATA_DIR={self.tessdata}: install {DEBIAN_PACKAGES} or fix TESSDATA_DIR"
            )
        # Debian's libtesseract (a tesserocr built from source) uses OpenMP, which spins 7-9x slower on
        # small machines than one thread; pages run in parallel instead. start.sh sets it for the process.
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        try:
            import tesserocr
        except ImportError as exc:
            raise EngineLoadError("tesserocr is not installed: pip install tesserocr") from exc
        self.device = "cpu; " + tesserocr.tesseract_version().split("\n", 1)[0]
        langs = tesseract_names(self.default_languages)
        apis = [self._create_api(langs) for _ in range(self._parallel)]
        for api in apis:
            self._pool.put(langs, api)
        self._read(_warmup_page(), self.default_languages, timeout_s=60)  # the first page pays no extra start-up
        log.info(
            "tesseract: %s, models in %s (%s), psm %d, %d API(s) for %s",
            self.device,
            self.tessdata,
            ", ".join(sorted(self.languages or ())),
            self._psm,
            self._parallel,
            langs,
        )

    def _create_api(self, langs: str) -> Any:
        import tesserocr

        try:
            api = tesserocr.PyTessBaseAPI(
                path=str(self.tessdata) + os.sep, lang=langs, psm=self._psm, oem=tesserocr.OEM.LSTM_ONLY
            )
        except RuntimeError as exc:
            raise EngineLoadError(f"Tesseract could not load '{langs}' from {self.tessdata}: {exc}") from exc
        api.SetVariable("preserve_interword_spaces", "1")
        return api

    def recognize(self, images: Sequence[Image.Image], languages: Sequence[str]) -> list[EnginePage]:
        """Read each image with the models of ``languages`` (those installed; the default ones if none is).

        Raises :class:`PageTimeout` when Tesseract has not finished a page within ``PAGE_TIMEOUT_S`` (it stops then).
        """
        return [self._read(image, languages, self._timeout_s) for image in images]

    def _read(self, image: Image.Image, languages: Sequence[str], timeout_s: float) -> EnginePage:
        installed = self.languages or frozenset()
        chosen = tuple(code for code in languages if code in installed) or self.default_languages
        with self._pool.lease(tesseract_names(chosen)) as api:
            api.SetImage(image if image.mode in ("RGB", "L") else image.convert("RGB"))
            if not api.Recognize(timeout=max(1, round(timeout_s * 1000))):
                raise PageTimeout(f"Tesseract stopped after {timeout_s:g} s")
            lines = _read_lines(api)
        return page_from_lines(lines)

    def close(self) -> None:
        self._pool.close()


def _read_lines(api: Any) -> list[TextLine]:
    from tesserocr import RIL, iterate_level

    iterator = api.GetIterator()
    if iterator is None:
        return []
    words = _read_words(api)
    lines = []
    for item in iterate_level(iterator, RIL.TEXTLINE):
        try:
            text = item.GetUTF8Text(RIL.TEXTLINE)
        except RuntimeError:  # "No text returned": an empty line (tiny or blank images have one)
            continue
        box = item.BoundingBox(RIL.TEXTLINE)
        if not text or not text.strip() or box is None:
            continue
        lines.append(
            TextLine(
                text=text,
                bbox=(int(box[0]), int(box[1]), int(box[2]), int(box[3])),
                confidence=item.Confidence(RIL.TEXTLINE) / 100.0,
                starts_paragraph=bool(item.IsAtBeginningOf(RIL.PARA)),
                words=tuple(words.get(tuple(int(v) for v in box), ())),
            )
        )
    return lines


def _read_words(api: Any) -> dict[tuple[int, ...], list[Word]]:
    """The recognised words with their boxes and confidences, grouped by the box of the line that holds them
    (a second pass of the result iterator, at word level)."""
    from tesserocr import RIL, iterate_level

    iterator = api.GetIterator()
    lines: dict[tuple[int, ...], list[Word]] = {}
    if iterator is None:
        return lines
    for item in iterate_level(iterator, RIL.WORD):
        try:
            text = item.GetUTF8Text(RIL.WORD)
        except RuntimeError:
            continue
        box, line = item.BoundingBox(RIL.WORD), item.BoundingBox(RIL.TEXTLINE)
        if not text or not text.strip() or box is None or line is None:
            continue
        score = round(min(1.0, max(0.0, item.Confidence(RIL.WORD) / 100.0)), 4)
        word = Word(text=text.strip(), bbox=[float(v) for v in box], score=score)
        lines.setdefault(tuple(int(v) for v in line), []).append(word)
    return lines


def _warmup_page() -> Image.Image:
    image = Image.new("RGB", (480, 80), "white")
    ImageDraw.Draw(image).text((10, 25), "Warm up 123", fill="black", font=ImageFont.load_default())
    return image
