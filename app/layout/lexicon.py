"""Word lists of the installed Tesseract languages: is this a word of Russian, of English, ...?

Every ``<lang>.traineddata`` carries the dictionary its LSTM model reads with (``lstm-word-dawg``: a
directed acyclic word graph) and the model's character set (``lstm-unicharset``). Both are read here
straight from the file (the container is a table of component offsets; the graph is Tesseract's
"squished" form: one 64-bit record per edge holding the character's id, three flags and the next node), so
the dictionary costs no download and no other tool, and every language installed for Tesseract has one.
A language's graph is read once, on first use (a few MB), and kept.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_LSTM_SYSTEM_DAWG = 19  # TessdataType: the component numbers in a .traineddata file
_LSTM_UNICHARSET = 21
_DAWG_MAGIC = 42
_MARKER, _BACKWARD, _WORD_END = 1, 2, 4


class WordGraph:
    """One language's word list: :meth:`knows` walks the graph character by character."""

    def __init__(self, ids: dict[str, int], edges: np.ndarray, flag_shift: int) -> None:
        self._ids = ids
        self._edges = edges
        self._shift = flag_shift
        self._letter_mask = (1 << flag_shift) - 1

    @classmethod
    def read(cls, path: Path) -> WordGraph | None:
        """The graph of a ``.traineddata`` file, or ``None`` when it has none (or is not one)."""
        data = path.read_bytes()
        if len(data) < 4:
            return None
        (count,) = struct.unpack_from("<i", data, 0)
        if not 0 < count < 64 or len(data) < 4 + 8 * count:
            return None
        offsets = struct.unpack_from(f"<{count}q", data, 4)
        present = sorted((offset, kind) for kind, offset in enumerate(offsets) if offset >= 0)
        parts = {}
        for index, (offset, kind) in enumerate(present):
            end = present[index + 1][0] if index + 1 < len(present) else len(data)
            parts[kind] = data[offset:end]
        if _LSTM_SYSTEM_DAWG not in parts or _LSTM_UNICHARSET not in parts:
            return None
        lines = parts[_LSTM_UNICHARSET].decode("utf-8", "replace").split("\n")
        ids = {line.split(" ", 1)[0]: index for index, line in enumerate(lines[1 : int(lines[0]) + 1])}
        graph = parts[_LSTM_SYSTEM_DAWG]
        magic, size, edges = struct.unpack_from("<hii", graph, 0)
        if magic != _DAWG_MAGIC or size <= 1 or len(graph) < 10 + 8 * edges:
            return None
        records = np.frombuffer(graph, dtype="<u8", count=edges, offset=10)
        return cls(ids, records, math.ceil(math.log2(size)))

    def knows(self, word: str) -> bool:
        """Whether ``word`` is in the list, exactly as spelled."""
        node = 0
        for position, char in enumerate(word):
            unichar = self._ids.get(char)
            if unichar is None:
                return False
            record = self._edge(node, unichar)
            if record is None:
                return False
            if position == len(word) - 1:
                return bool((record >> self._shift) & _WORD_END)
            node = record >> (self._shift + 3)
            if node == 0:
                return False
        return False

    def prefix(self, word: str) -> int:
        """How many of ``word``'s first characters begin some word of the list."""
        node = 0
        for position, char in enumerate(word):
            unichar = self._ids.get(char)
            record = None if unichar is None else self._edge(node, unichar)
            if record is None:
                return position
            node = record >> (self._shift + 3)
            if node == 0:
                return position + 1
        return len(word)

    def _edge(self, node: int, unichar: int) -> int | None:
        edge = node
        while edge < len(self._edges):
            record = int(self._edges[edge])
            flags = record >> self._shift
            if record & self._letter_mask == unichar and not flags & _BACKWARD:
                return record
            if flags & _MARKER:
                return None
            edge += 1
        return None


class Lexicon:
    """The word lists of the Tesseract languages in ``tessdata``, read as they are asked for."""

    def __init__(self, tessdata: Path | None) -> None:
        self._folder = tessdata
        self._graphs: dict[str, WordGraph | None] = {}
        self._lock = threading.Lock()

    def graph(self, language: str) -> WordGraph | None:
        """The word list of a Tesseract language name (``rus``), or ``None`` when it is not installed."""
        with self._lock:
            if language not in self._graphs:
                path = self._folder / f"{language}.traineddata" if self._folder else None
                graph = None
                if path is not None and path.is_file():
                    try:
                        graph = WordGraph.read(path)
                    except (OSError, ValueError, struct.error) as exc:
                        log.warning("no word list from %s: %s", path, exc)
                self._graphs[language] = graph
            return self._graphs[language]

    def knows(self, word: str, languages: tuple[str, ...]) -> bool:
        """Whether ``word`` (as spelled, in lower case, or capitalised) is a word of one of ``languages``;
        a hyphenated word when each part is."""
        parts = [part for part in word.split("-") if part]
        if not parts:
            return False
        graphs = [graph for graph in (self.graph(language) for language in languages) if graph is not None]
        return all(any(_spelled(graph, part) for graph in graphs) for part in parts)

    def likeness(self, word: str, languages: tuple[str, ...]) -> float:
        """How much ``word`` looks like a word of ``languages``, 0..1: the share of its letters (per hyphen
        part, in lower case) that begin some word of their lists. A stem with an ending the list lacks
        still scores high; letters of another script score low."""
        parts = [part.lower() for part in word.split("-") if part]
        graphs = [graph for graph in (self.graph(language) for language in languages) if graph is not None]
        if not parts or not graphs:
            return 0.0
        covered = sum(max(graph.prefix(part) for graph in graphs) for part in parts)
        return covered / sum(len(part) for part in parts)


def _spelled(graph: WordGraph, word: str) -> bool:
    return any(graph.knows(form) for form in dict.fromkeys((word, word.lower(), word.capitalize())))
