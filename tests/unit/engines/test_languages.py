"""Language codes, and what PP-OCRv6 is claimed to read checked against the model the rapidocr wheel ships."""

from __future__ import annotations

import string
import unicodedata
from pathlib import Path

import pytest

from app.engines.languages import (
    ISO_TO_TESSERACT,
    KNOWN_LANGUAGES,
    MAX_LANGUAGES,
    PP_OCR_LANGUAGES,
    canonical,
    debian_package,
    describe,
    parse_languages,
    tesseract_languages,
    tesseract_names,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ru,en", ("ru", "en")),
        ("rus+eng", ("ru", "en")),
        (" RU  en,ru ", ("ru", "en")),
        ("de", ("de",)),
        ("chi_sim", ("zh",)),
        ("chi_tra,jpn_vert", ("chi_tra", "jpn_vert")),
        ("nb", ("no",)),
        ("xx", ("xx",)),  # well-formed: whether it is readable is the engines' decision
    ],
)
def test_parse_languages(value: str, expected: tuple[str, ...]) -> None:
    assert parse_languages(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "no language given"),
        (" , + ", "no language given"),
        ("r;u", "'r;u' is not a language code"),
        ("russian", "'russian' is not a language code"),
        ("../../etc", "is not a language code"),
        (",".join(["en", "ru", "de", "fr", "es", "it", "pl", "cs", "tr"]), f"at most {MAX_LANGUAGES} languages"),
    ],
)
def test_parse_languages_rejects(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_languages(value)


def test_tesseract_names_and_packages() -> None:
    assert tesseract_names(("ru", "en")) == "rus+eng"
    assert tesseract_names(("zh", "chi_tra")) == "chi_sim+chi_tra"
    assert debian_package("uk") == "tesseract-ocr-ukr"
    assert debian_package("chi_tra") == "tesseract-ocr-chi-tra"
    assert canonical("rus") == "ru" and canonical("ru") == "ru" and canonical("fil") == "tl"
    assert len(set(ISO_TO_TESSERACT.values())) == len(ISO_TO_TESSERACT), "two ISO codes for one model"
    assert describe(None) == "all" and describe(["ru", "en"]) == "en, ru" and describe([]) == "none"


def test_installed_tesseract_languages(tmp_path: Path) -> None:
    for name in ("rus", "eng", "osd", "equ", "chi_tra", "deu"):
        (tmp_path / f"{name}.traineddata").touch()
    (tmp_path / "configs").mkdir()
    assert tesseract_languages(tmp_path) == ("chi_tra", "de", "en", "ru")
    assert tesseract_languages(tmp_path / "missing") == ()


def test_debian_models_are_found() -> None:
    """make test installs tesseract-ocr-rus and tesseract-ocr-eng."""
    from app.engines.tesseract import find_tessdata

    folder = find_tessdata()
    assert folder is not None, "no Tesseract models: apt-get install tesseract-ocr-rus tesseract-ocr-eng"
    assert {"ru", "en"} <= set(tesseract_languages(folder))


# Letters beyond a-z that each language claimed for pp-ocr needs (its alphabet's own letters).
LETTERS = {
    "en": "", "la": "", "id": "", "ms": "", "sw": "", "tl": "", "qu": "ñ", "zh": "中文汉语", "ja": "あいうアイウ",
    "af": "êëïôû", "az": "əğıöüçş", "bs": "čćđšž", "ca": "àçèéíïòóúü·", "cs": "áčďéěíňóřšťúůýž", "cy": "âêîôŵŷ",
    "da": "æøå", "de": "äöüß", "es": "áéíñóúü¿", "et": "äõöüšž", "eu": "ñ", "fi": "äöå", "fr": "àâæçéèêëîïôœùûüÿ",
    "ga": "áéíóú", "gl": "áéíñóú", "hr": "čćđšž", "hu": "áéíóöőúüű", "is": "áðéíóúýþæö", "it": "àèéìòù",
    "ku": "çêîşû", "lb": "äéë", "lt": "ąčęėįšųūž", "lv": "āčēģīķļņšūž", "mi": "āēīōū", "mt": "ċġħż", "nl": "ëï",
    "no": "æøå", "oc": "àèéíòóúç", "pl": "ąćęłńóśźż", "pt": "áâãàçéêíóôõú", "ro": "ăâîșț", "sk": "áäčďéíĺľňóôŕšťúýž",
    "sl": "čšž", "sq": "çë", "sv": "åäö", "tr": "çğıİöşü",
}  # fmt: skip


@pytest.fixture(scope="module")
def pp_ocr_dictionary() -> set[str]:
    """The characters the recogniser in the installed rapidocr wheel can output."""
    import onnxruntime
    import rapidocr

    models = sorted((Path(rapidocr.__file__).parent / "models").glob("*rec*.onnx"))
    assert [m.name for m in models] == ["PP-OCRv6_rec_small.onnx"], "the wheel's models changed: recheck the list"
    session = onnxruntime.InferenceSession(str(models[0]), providers=["CPUExecutionProvider"])
    return set(session.get_modelmeta().custom_metadata_map["character"].splitlines())


def test_pp_ocr_reads_the_letters_of_every_language_it_claims(pp_ocr_dictionary: set[str]) -> None:
    assert set(LETTERS) == PP_OCR_LANGUAGES
    assert PP_OCR_LANGUAGES <= KNOWN_LANGUAGES
    for code, letters in LETTERS.items():
        needed = set(letters) | set(letters.upper()) | set(string.ascii_letters)
        missing = needed - pp_ocr_dictionary
        assert not missing, f"{code}: the model cannot output {''.join(sorted(missing))}"


def test_pp_ocr_reads_no_cyrillic_and_is_not_claimed_for_it(pp_ocr_dictionary: set[str]) -> None:
    cyrillic = {c for c in pp_ocr_dictionary if "CYRILLIC" in unicodedata.name(c, "")}
    assert cyrillic == set()
    assert not {"ru", "uk", "be", "bg", "sr", "kk", "mk", "vi", "uz", "ko", "el"} & PP_OCR_LANGUAGES
    vietnamese = set("ạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ")
    assert vietnamese - pp_ocr_dictionary, "the model now reads Vietnamese: add vi to PP_OCR_LANGUAGES"
