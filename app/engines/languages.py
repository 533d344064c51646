"""Language codes: what a request's ``lang`` means, what each CPU engine reads, and Tesseract's names.

Requests and settings use ISO 639-1 codes (``ru``, ``en``); a language without one keeps its Tesseract
name (``chi_tra``, ``ceb``). Tesseract's own names (``rus``, ``eng``) are accepted too and mean the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

#: ISO 639-1 -> Tesseract model name, for every Tesseract model that has an ISO 639-1 code.
ISO_TO_TESSERACT: dict[str, str] = {
    "af": "afr", "am": "amh", "ar": "ara", "as": "asm", "az": "aze", "be": "bel", "bg": "bul", "bn": "ben",
    "bo": "bod", "br": "bre", "bs": "bos", "ca": "cat", "co": "cos", "cs": "ces", "cy": "cym", "da": "dan",
    "de": "deu", "dv": "div", "dz": "dzo", "el": "ell", "en": "eng", "eo": "epo", "es": "spa", "et": "est",
    "eu": "eus", "fa": "fas", "fi": "fin", "fo": "fao", "fr": "fra", "fy": "fry", "ga": "gle", "gd": "gla",
    "gl": "glg", "gu": "guj", "he": "heb", "hi": "hin", "hr": "hrv", "ht": "hat", "hu": "hun", "hy": "hye",
    "id": "ind", "is": "isl", "it": "ita", "iu": "iku", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz",
    "km": "khm", "kn": "kan", "ko": "kor", "ku": "kmr", "ky": "kir", "la": "lat", "lb": "ltz", "lo": "lao",
    "lt": "lit", "lv": "lav", "mi": "mri", "mk": "mkd", "ml": "mal", "mn": "mon", "mr": "mar", "ms": "msa",
    "mt": "mlt", "my": "mya", "ne": "nep", "nl": "nld", "no": "nor", "oc": "oci", "or": "ori", "pa": "pan",
    "pl": "pol", "ps": "pus", "pt": "por", "qu": "que", "ro": "ron", "ru": "rus", "sa": "san", "sd": "snd",
    "si": "sin", "sk": "slk", "sl": "slv", "sq": "sqi", "sr": "srp", "su": "sun", "sv": "swe", "sw": "swa",
    "ta": "tam", "te": "tel", "tg": "tgk", "th": "tha", "ti": "tir", "tl": "fil", "to": "ton", "tr": "tur",
    "tt": "tat", "ug": "uig", "uk": "ukr", "ur": "urd", "uz": "uzb", "vi": "vie", "yi": "yid", "yo": "yor",
    "zh": "chi_sim",
}  # fmt: skip
_ALIASES = {"nb": "no", "iw": "he", "in": "id", "ji": "yi"}  # Norwegian Bokmål and retired ISO codes
TESSERACT_TO_ISO: dict[str, str] = {tess: iso for iso, tess in ISO_TO_TESSERACT.items()}
#: Tesseract models without an ISO 639-1 code: requested by their Tesseract name.
TESSERACT_ONLY = frozenset({
    "aze_cyrl", "ceb", "chi_sim_vert", "chi_tra", "chi_tra_vert", "chr", "enm", "frk", "frm", "grc",
    "ita_old", "jpn_vert", "kat_old", "kor_vert", "spa_old", "srp_latn", "syr", "uzb_cyrl",
})  # fmt: skip
#: Every code a request may name (what some engine of this project can read, when installed).
KNOWN_LANGUAGES = frozenset(ISO_TO_TESSERACT) | TESSERACT_ONLY
#: Not languages: orientation/script detection and the equation model.
_NOT_LANGUAGES = frozenset({"osd", "equ"})

#: What PP-OCRv6's recogniser (the ``rapidocr`` wheel's PP-OCRv6_rec_small) reads: Chinese, Japanese,
#: English and the Latin-script languages rapidocr routes to it whose letters are all in the model's
#: dictionary (tests/unit/engines/test_languages.py checks that against the installed model). Left out although
#: rapidocr lists them: Vietnamese (most letters with a dot below or hook are missing) and Uzbek (no ``ʻ``).
#: No Cyrillic, Greek, Korean, Arabic, Hebrew or Indic script at all.
PP_OCR_LANGUAGES = frozenset({
    "zh", "ja", "en", "af", "az", "bs", "ca", "cs", "cy", "da", "de", "es", "et", "eu", "fi", "fr", "ga",
    "gl", "hr", "hu", "id", "is", "it", "ku", "la", "lb", "lt", "lv", "mi", "ms", "mt", "nl", "no", "oc",
    "pl", "pt", "qu", "ro", "sk", "sl", "sq", "sv", "sw", "tl", "tr",
})  # fmt: skip

#: Languages not written in the Latin script (Cyrillic, Greek, Arabic, Hebrew, Armenian, Georgian, Ethiopic,
#: Indic, Southeast Asian, CJK, ...). Text in them routinely carries Latin words, names, codes and units
#: (``umask``, ``ISO 8859``, ``e-mail``), which a model for the script alone reads as look-alikes; so a
#: request for one of them also reads English unless it asks for the strict set (:func:`with_latin`).
NON_LATIN_SCRIPT = frozenset({
    "am", "ar", "as", "be", "bg", "bn", "bo", "dv", "dz", "el", "fa", "gu", "he", "hi", "hy", "iu", "ja",
    "ka", "kk", "km", "kn", "ko", "ky", "lo", "mk", "ml", "mn", "mr", "my", "ne", "or", "pa", "ps", "ru",
    "sa", "sd", "si", "sr", "ta", "te", "tg", "th", "ti", "tt", "ug", "uk", "ur", "yi", "zh",
    "aze_cyrl", "chi_sim_vert", "chi_tra", "chi_tra_vert", "chr", "grc", "jpn_vert", "kat_old", "kor_vert",
    "syr", "uzb_cyrl",
})  # fmt: skip
#: The Latin-script language read beside the others.
LATIN_COMPANION = "en"

MAX_LANGUAGES = 8
_CODE = re.compile(r"^[a-z]{2,3}(_[a-z]{3,4}){0,2}$")
_SEPARATORS = re.compile(r"[,+\s]+")


def parse_languages(value: str) -> tuple[str, ...]:
    """``"ru,en"`` / ``"rus+eng"`` / ``"ru en"`` -> ``("ru", "en")``: canonical codes, in order, without repeats.

    Raises ``ValueError`` (with a message for the client) for an empty list, a malformed code or more
    than :data:`MAX_LANGUAGES` codes. Well-formed but unknown codes are returned as they are: whether a
    language can be read is decided by the engines (see :func:`app.engines.select.choose_for_request`).
    """
    codes: list[str] = []
    for token in _SEPARATORS.split(value.strip().lower()):
        if not token:
            continue
        if not _CODE.match(token):
            raise ValueError(f"'{token[:20]}' is not a language code; use ISO 639-1 codes such as 'ru,en'")
        code = canonical(token)
        if code not in codes:
            codes.append(code)
    if not codes:
        raise ValueError("no language given; use ISO 639-1 codes such as 'ru,en'")
    if len(codes) > MAX_LANGUAGES:
        raise ValueError(f"at most {MAX_LANGUAGES} languages at a time")
    return tuple(codes)


def canonical(code: str) -> str:
    """The ISO 639-1 code of ``code`` (an ISO or Tesseract name) when there is one, else ``code``."""
    code = _ALIASES.get(code, code)
    return TESSERACT_TO_ISO.get(code, code)


def with_latin(languages: Sequence[str], reads: frozenset[str] | None) -> tuple[str, ...]:
    """``languages`` plus English (last) when one of them is not written in the Latin script and the engine
    reads English (``reads``; ``None``: every language): ``("ru",)`` -> ``("ru", "en")``. Otherwise as given."""
    codes = tuple(languages)
    wanted = LATIN_COMPANION not in codes and any(code in NON_LATIN_SCRIPT for code in codes)
    if wanted and (reads is None or LATIN_COMPANION in reads):
        return (*codes, LATIN_COMPANION)
    return codes


def latin_only(languages: Iterable[str]) -> bool:
    """Whether every one of ``languages`` is written in the Latin script."""
    return not any(code in NON_LATIN_SCRIPT for code in languages)


def tesseract_names(languages: Iterable[str]) -> str:
    """Canonical codes -> Tesseract's ``lang`` argument: ``("ru", "en")`` -> ``"rus+eng"``."""
    return "+".join(ISO_TO_TESSERACT.get(code, code) for code in languages)


def debian_package(code: str) -> str:
    """The Debian package with Tesseract's model for ``code``: ``"uk"`` -> ``"tesseract-ocr-ukr"``."""
    return "tesseract-ocr-" + ISO_TO_TESSERACT.get(code, code).replace("_", "-")


def tesseract_languages(tessdata: Path) -> tuple[str, ...]:
    """Canonical codes of the ``*.traineddata`` models in ``tessdata`` (sorted; not ``osd``/``equ``)."""
    try:
        names = [p.name.removesuffix(".traineddata") for p in tessdata.glob("*.traineddata") if p.is_file()]
    except OSError:
        return ()
    return tuple(sorted({canonical(name) for name in names if name not in _NOT_LANGUAGES}))


def describe(languages: Iterable[str] | None) -> str:
    """``"en, ru"`` for messages; ``None`` (an engine that reads every language) is ``"all"``."""
    return "all" if languages is None else ", ".join(sorted(languages)) or "none"
