"""Words read in the wrong script put right: ``Nanka-peructpatop`` in Russian text is ``Папка-регистратор``,
``РАТН`` is ``PATH``.

With a Cyrillic and a Latin model loaded (``rus+eng``), a word whose letters all have look-alikes in the
other script (а/a, р/p, с/c, Н/H, and what a Latin model makes of п, и, г, т: n, u, r, t) can come back in
the wrong one. For the lines of a page read in a Cyrillic language, each such word is mapped letter by
letter to the other script and the word lists of the installed Tesseract languages decide
(:mod:`app.layout.lexicon`):

* a Latin word becomes Cyrillic when the Cyrillic form is a word and the Latin one is not; when neither
  is, it becomes Cyrillic only in a Cyrillic line (most of its other letters Cyrillic), if it has
  lower-case letters (an all-capital word is an acronym, a code or a unit and stays Latin), at least
  three letters, and the Cyrillic form looks clearly more like a word of its language than the Latin one
  of its own (:meth:`~app.layout.lexicon.Lexicon.likeness`: how far each form goes along the word list,
  a plausibility measure that needs no other data);
* a Cyrillic word becomes Latin when the Latin form is a word and the Cyrillic one is not (product names,
  commands, units: ``PATH``, ``USB``, ``Excel``);
* a word of letters of both scripts becomes the script that gives a word, else the script of its letters
  that have no look-alike, else the script of the line.

Words with digits (``A4``, ``TX-200``) are codes and stay as read. A closing ``$`` after Cyrillic letters
is the ``S`` the Cyrillic model does not have when the word with ``S`` is a Latin word (``НТТР$`` ->
``HTTPS``). Words with boxes (``Block.words``) are put right the same way, so the words and the line keep
the same text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from app.engines.languages import ISO_TO_TESSERACT
from app.layout.lexicon import Lexicon
from app.schemas import Block

#: Languages written in Cyrillic.
CYRILLIC_LANGUAGES = frozenset({"ru", "uk", "be", "bg", "sr", "mk", "kk", "ky", "mn", "tg", "tt", "uzb_cyrl"})

#: Cyrillic letter -> the Latin letter it looks like (both ways where the shapes match).
_TO_LATIN = dict(zip("АВСЕНКМОРТХУаеорсухкіјѕ", "ABCEHKMOPTXYaeopcyxkijs", strict=True))
#: Latin letter -> the Cyrillic letter it stands for when a Latin model read Cyrillic print.
_TO_CYRILLIC = {latin: cyrillic for cyrillic, latin in _TO_LATIN.items() if cyrillic not in "іјѕ"}
_TO_CYRILLIC.update({"n": "п", "u": "и", "r": "г", "t": "т", "m": "м", "N": "П", "b": "ь"})

_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*\$?")
_CODE_AROUND = re.compile(r"[\w-]")


def fix_lookalikes(lines: Sequence[Block], languages: Sequence[str], lexicon: Lexicon | None) -> list[Block]:
    """``lines`` with words in the wrong script put right, when a Cyrillic language is among ``languages``
    (else as they are). A line's words (``words``) follow its text. The blocks are changed in place."""
    cyrillic = tuple(ISO_TO_TESSERACT.get(c, c) for c in languages if c in CYRILLIC_LANGUAGES)
    if not cyrillic or lexicon is None:
        return list(lines)
    latin = tuple(ISO_TO_TESSERACT.get(c, c) for c in languages if c not in CYRILLIC_LANGUAGES) or ("eng",)
    fixer = _Fixer(lexicon, cyrillic, latin)
    for line in lines:
        if line.table is not None:
            continue
        line_is_cyrillic = _mostly_cyrillic(line.text)
        line.text = fixer.text(line.text, line_is_cyrillic)
        for word in line.words or []:
            word.text = fixer.text(word.text, line_is_cyrillic)
    return list(lines)


def _mostly_cyrillic(text: str) -> bool:
    """Whether most letters of ``text`` that have no look-alike are Cyrillic (ties: most letters are)."""
    letters = [c for c in text if c.isalpha()]
    distinct = [c for c in letters if c not in _TO_LATIN and c not in _TO_CYRILLIC]
    pool = distinct or letters
    return sum(_is_cyrillic(c) for c in pool) * 2 > len(pool)


def _is_cyrillic(char: str) -> bool:
    return "\u0400" <= char <= "\u04ff"


class _Fixer:
    def __init__(self, lexicon: Lexicon, cyrillic: tuple[str, ...], latin: tuple[str, ...]) -> None:
        self._lexicon = lexicon
        self._cyrillic = cyrillic
        self._latin = latin

    def text(self, text: str, cyrillic_line: bool) -> str:
        def replace(match: re.Match[str]) -> str:
            start, end = match.span()
            before = text[start - 1] if start else ""
            after = text[end] if end < len(text) else ""
            if _CODE_AROUND.match(before) or _CODE_AROUND.match(after):  # part of a code: C4, TX-200
                return match.group(0)
            return self.word(match.group(0), cyrillic_line)

        return _WORD.sub(replace, text)

    def word(self, word: str, cyrillic_line: bool) -> str:
        """``word`` in the script it was printed in (see the module's docstring)."""
        if word.endswith("$"):  # a Cyrillic model has no S and reads a closing one as $ (НТТР$)
            if not any(_is_cyrillic(c) for c in word):
                return word  # US$: read by the Latin model, a dollar
            with_s = self.word(word[:-1] + "S", cyrillic_line)
            return with_s if with_s.isascii() and self._lexicon.knows(with_s, self._latin) else word
        has_cyrillic = any(_is_cyrillic(c) for c in word)
        has_latin = any(c.isascii() and c.isalpha() for c in word)
        if has_latin and not has_cyrillic:
            return self._latin_word(word, cyrillic_line)
        if has_cyrillic and not has_latin:
            return self._cyrillic_word(word)
        if has_cyrillic and has_latin:
            return self._mixed_word(word, cyrillic_line)
        return word

    def _latin_word(self, word: str, cyrillic_line: bool) -> str:
        as_cyrillic = _mapped(word, _TO_CYRILLIC)
        if as_cyrillic is None or self._lexicon.knows(word, self._latin):
            return word
        if self._lexicon.knows(as_cyrillic, self._cyrillic):
            return as_cyrillic
        letters = [c for c in word if c.isalpha()]
        if cyrillic_line and len(letters) >= 3 and any(c.islower() for c in letters):
            looks_cyrillic = self._lexicon.likeness(as_cyrillic, self._cyrillic)
            if looks_cyrillic >= 0.6 and looks_cyrillic > self._lexicon.likeness(word, self._latin) + 0.2:
                return as_cyrillic
        return word

    def _cyrillic_word(self, word: str) -> str:
        as_latin = _mapped(word, _TO_LATIN)
        if as_latin is None or self._lexicon.knows(word, self._cyrillic):
            return word
        return as_latin if self._lexicon.knows(as_latin, self._latin) else word

    def _mixed_word(self, word: str, cyrillic_line: bool) -> str:
        as_cyrillic = _mapped(word, _TO_CYRILLIC, keep=_is_cyrillic)
        as_latin = _mapped(word, _TO_LATIN, keep=lambda c: c.isascii())
        if as_cyrillic is not None and self._lexicon.knows(as_cyrillic, self._cyrillic):
            return as_cyrillic
        if as_latin is not None and self._lexicon.knows(as_latin, self._latin):
            return as_latin
        fixed_cyrillic = any(_is_cyrillic(c) and c not in _TO_LATIN for c in word if c.isalpha())
        fixed_latin = any(c.isascii() and c.isalpha() and c not in _TO_CYRILLIC for c in word)
        if as_cyrillic is not None and (fixed_cyrillic or (cyrillic_line and not fixed_latin)):
            return as_cyrillic
        if as_latin is not None and (fixed_latin or not cyrillic_line):
            return as_latin
        return word


def _mapped(word: str, table: dict[str, str], keep: object = None) -> str | None:
    """``word`` with every letter mapped through ``table`` (letters ``keep`` accepts stay), or ``None``
    when a letter can be neither."""
    out = []
    for char in word:
        if not char.isalpha():
            out.append(char)
        elif char in table:
            out.append(table[char])
        elif callable(keep) and keep(char):
            out.append(char)
        else:
            return None
    return "".join(out)
