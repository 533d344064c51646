"""Engine selection: which engines load (OCR_ENGINE, OCR_CPU_ENGINES, the machine) and which one serves a request."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engines.languages import PP_OCR_LANGUAGES
from app.engines.paddleocr_vl import PaddleOcrVlEngine
from app.engines.pp_ocr import PpOcrEngine
from app.engines.registry import EngineSet
from app.engines.select import MachineFacts, build_engines, choose_for_request, gather_facts, plan_engines
from app.engines.tesseract import TesseractEngine
from app.errors import ServiceError
from app.settings import Settings

GPU = MachineFacts(paddleocr_installed=True, gpu_devices=("/dev/nvidia0",))
NO_GPU = MachineFacts(paddleocr_installed=True, gpu_devices=())
NO_PADDLE = MachineFacts(paddleocr_installed=False, gpu_devices=("/dev/nvidia0",))
CPU_PAIR = ("pp-ocr", "tesseract")


@pytest.mark.parametrize(
    ("requested", "cpu", "url", "facts", "engines", "forced", "reason_part"),
    [
        ("auto", None, "", GPU, ("paddleocr-vl",), None, "1 CUDA GPU visible (/dev/nvidia0)"),
        ("auto", None, "http://vlm:8080/v1", NO_GPU, ("paddleocr-vl",), None, "VL_SERVER_URL is set"),
        ("auto", None, "http://vlm:8080/v1", GPU, ("paddleocr-vl",), None, "CUDA GPU"),
        ("auto", None, "", NO_GPU, CPU_PAIR, None, "not set, so the CPU engines pp-ocr, tesseract"),
        ("auto", None, "   ", NO_GPU, CPU_PAIR, None, "VL_SERVER_URL is not set"),
        ("auto", None, "http://vlm:8080/v1", NO_PADDLE, CPU_PAIR, None, "paddleocr is not installed"),
        ("auto", ("tesseract",), "", NO_GPU, ("tesseract",), None, "the CPU engines tesseract"),
        ("auto", ("tesseract", "pp-ocr"), "", GPU, ("paddleocr-vl", *CPU_PAIR), None, "also loaded: pp-ocr, tesseract"),
        ("pp-ocr", None, "", GPU, CPU_PAIR, "pp-ocr", "OCR_ENGINE=pp-ocr"),
        ("tesseract", None, "", NO_GPU, ("tesseract", "pp-ocr"), "tesseract", "OCR_ENGINE=tesseract"),
        ("tesseract", ("tesseract",), "", NO_GPU, ("tesseract",), "tesseract", "OCR_ENGINE=tesseract"),
        ("paddleocr-vl", None, "", NO_PADDLE, ("paddleocr-vl",), "paddleocr-vl", "OCR_ENGINE=paddleocr-vl"),
    ],
)
def test_plan_engines(
    requested: str,
    cpu: tuple[str, ...] | None,
    url: str,
    facts: MachineFacts,
    engines: tuple[str, ...],
    forced: str | None,
    reason_part: str,
) -> None:
    plan = plan_engines(requested, cpu, url, facts)
    assert plan.engines == engines
    assert plan.forced == forced
    assert reason_part in plan.reason


def test_two_gpus_are_named() -> None:
    facts = MachineFacts(paddleocr_installed=True, gpu_devices=("/dev/nvidia0", "/dev/nvidia1"))
    assert "2 CUDA GPUs visible (/dev/nvidia0, /dev/nvidia1)" in plan_engines("auto", None, "", facts).reason


def test_gather_facts_counts_gpu_device_files(tmp_path: Path) -> None:
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"):
        (tmp_path / name).touch()
    facts = gather_facts(tmp_path)
    assert facts.gpu_devices == (str(tmp_path / "nvidia0"), str(tmp_path / "nvidia1"))
    assert facts.paddleocr_installed  # the test environment installs paddleocr
    assert gather_facts(tmp_path / "missing").gpu_devices == ()


# --- per request -------------------------------------------------------------------------------------------

TESSERACT_RU_EN = frozenset({"ru", "en"})
CPU = {"pp-ocr": PP_OCR_LANGUAGES, "tesseract": TESSERACT_RU_EN}
WITH_VL = {"paddleocr-vl": None, **CPU}


@pytest.mark.parametrize(
    ("languages", "explicit", "engine", "chosen", "reason_part"),
    [
        (("en",), True, None, "pp-ocr", "auto: pp-ocr reads en"),
        (("ru",), True, None, "tesseract", "tesseract reads ru (pp-ocr does not read ru)"),
        (("ru", "en"), True, None, "tesseract", "pp-ocr does not read ru"),
        (("de", "fr"), True, None, "pp-ocr", "pp-ocr reads de,fr"),
        (("ru", "de"), True, None, "pp-ocr", "no loaded engine reads all of ru,de"),  # tie: the preferred one
        (("ru", "en"), False, None, "tesseract", "tesseract reads ru,en"),  # OCR_LANGUAGES
        (("en",), True, "tesseract", "tesseract", "engine=tesseract"),
        (("ru", "en"), False, "pp-ocr", "pp-ocr", "engine=pp-ocr"),  # default languages are not checked
        (("zh",), True, "pp-ocr", "pp-ocr", "engine=pp-ocr"),
    ],
)
def test_choose_for_request_on_cpu(
    languages: tuple[str, ...], explicit: bool, engine: str | None, chosen: str, reason_part: str
) -> None:
    choice = choose_for_request(CPU, languages, explicit_languages=explicit, engine=engine)
    assert choice.engine == chosen
    assert choice.languages == languages
    assert reason_part in choice.reason


@pytest.mark.parametrize("languages", [("ru",), ("en",), ("uk", "ar"), ("chi_tra",)])
def test_vlm_reads_every_known_language(languages: tuple[str, ...]) -> None:
    choice = choose_for_request(WITH_VL, languages, explicit_languages=True)
    assert choice.engine == "paddleocr-vl" and "reads every language" in choice.reason


def test_forced_engine_serves_requests_that_name_none() -> None:
    assert choose_for_request(CPU, ("ru",), explicit_languages=False, forced="pp-ocr").engine == "pp-ocr"
    forced = choose_for_request(CPU, ("en",), explicit_languages=True, forced="tesseract")
    assert forced.engine == "tesseract" and forced.reason == "OCR_ENGINE=tesseract"
    named = choose_for_request(CPU, ("en",), explicit_languages=True, engine="pp-ocr", forced="tesseract")
    assert named.engine == "pp-ocr" and named.reason == "engine=pp-ocr"


def rejected(**kwargs: object) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        choose_for_request(**kwargs)  # type: ignore[arg-type]
    assert caught.value.status == 422
    return caught.value


def test_unknown_language_is_named_with_the_installed_ones() -> None:
    error = rejected(readable=CPU, languages=("xx",), explicit_languages=True)
    assert error.code == "invalid_lang"
    assert error.message.startswith("lang: xx: unknown; installed languages: af, az,")
    assert ", ru, " in error.message and error.message.endswith("zh")


def test_uninstalled_language_names_its_package() -> None:
    error = rejected(readable=CPU, languages=("ru", "uk"), explicit_languages=True)
    assert error.code == "invalid_lang"
    assert "uk: not installed (for Tesseract, the Debian package tesseract-ocr-ukr)" in error.message
    assert "ru" not in error.message.split(";")[0]  # only the missing one is named
    tesseract_only = rejected(readable={"tesseract": TESSERACT_RU_EN}, languages=("de",), explicit_languages=True)
    assert tesseract_only.message.endswith("installed languages: en, ru")
    assert "tesseract-ocr-deu" in tesseract_only.message


def test_vlm_rejects_only_codes_that_name_no_language() -> None:
    error = rejected(readable=WITH_VL, languages=("ru", "qq"), explicit_languages=True)
    assert error.message == "lang: qq: unknown; installed languages: all"


def test_named_engine_must_be_loaded_and_read_the_languages() -> None:
    unknown = rejected(readable=CPU, languages=("en",), explicit_languages=True, engine="paddleocr-vl")
    assert unknown.code == "invalid_engine"
    assert unknown.message == "engine: 'paddleocr-vl' is not loaded here; loaded: pp-ocr, tesseract"
    cyrillic = rejected(readable=CPU, languages=("ru",), explicit_languages=True, engine="pp-ocr")
    assert cyrillic.code == "invalid_lang"
    assert cyrillic.message.startswith("lang: pp-ocr does not read ru; it reads: af")
    forced = rejected(readable=CPU, languages=("ru",), explicit_languages=True, forced="pp-ocr")
    assert "pp-ocr does not read ru" in forced.message


# --- building and the engine set --------------------------------------------------------------------------


def test_build_engines_constructs_without_loading(tmp_path: Path) -> None:
    vl, plan = build_engines(Settings(vl_server_url="http://vlm:8080/v1", vl_backend="vllm-server"), NO_GPU)
    assert [type(e) for e in vl] == [PaddleOcrVlEngine] and "VL_SERVER_URL" in plan.reason
    assert vl[0].max_parallel == 128  # the upper bound of VL_MAX_CONCURRENCY=auto (VL_AUTO_CONCURRENCY_MAX)
    assert vl[0].page_gate is not None  # the page scheduler admits its pages while the server has room
    fixed, _ = build_engines(
        Settings(vl_server_url="http://vlm:8080/v1", vl_backend="vllm-server", vl_max_concurrency=8)
    )
    assert fixed[0].max_parallel == 8
    native, _ = build_engines(Settings(ocr_engine="paddleocr-vl"), NO_GPU)
    assert native[0].max_parallel == 1  # one pipeline call at a time on the GPU
    (tmp_path / "rus.traineddata").touch()
    (tmp_path / "osd.traineddata").touch()
    settings = Settings(ocr_concurrency=3, tessdata_dir=str(tmp_path), ocr_languages="ru,en")
    cpu, plan = build_engines(settings, NO_GPU)
    assert [type(e) for e in cpu] == [PpOcrEngine, TesseractEngine] and plan.reason.startswith("auto:")
    pp_ocr, tesseract = cpu
    assert pp_ocr.max_parallel == 3 and tesseract.max_parallel == 3
    assert isinstance(tesseract, TesseractEngine)
    assert tesseract.languages == frozenset({"ru"}) and tesseract.default_languages == ("ru",)


def test_engine_set_default_and_workers(tmp_path: Path) -> None:
    (tmp_path / "eng.traineddata").touch()
    (tmp_path / "rus.traineddata").touch()
    settings = Settings(ocr_concurrency=2, tessdata_dir=str(tmp_path))
    engines, plan = build_engines(settings, NO_GPU)
    russian = EngineSet(engines, plan, ("ru", "en"))
    assert russian.default.engine.name == "tesseract" and russian.workers == 2
    assert russian.default.selection is not None
    assert "requests without lang (OCR_LANGUAGES=ru,en): auto: tesseract reads ru,en" in russian.default.selection
    assert russian.choose(("en",), None).engine == "pp-ocr"
    assert russian.choose(None, None).languages == ("ru", "en")
    english = EngineSet(engines, plan, ("en",))
    assert english.default.engine.name == "pp-ocr"
    # A stored job keeps its engine; one whose engine is no longer loaded gets a new choice.
    assert russian.resume("pp-ocr", ("ru",)).engine == "pp-ocr"
    assert russian.resume("paddleocr-vl", ("ru",)).engine == "tesseract"
    assert russian.resume("paddleocr-vl", ()).engine == "tesseract"  # a record from before languages: defaults


def test_settings_check_languages_engines_and_psm() -> None:
    assert Settings(ocr_languages="rus+eng").languages == ("ru", "en")
    assert Settings(ocr_cpu_engines=" Tesseract , pp-ocr,tesseract").cpu_engines == ("tesseract", "pp-ocr")
    assert Settings().cpu_engines is None
    for bad in ({"ocr_languages": "r;u"}, {"ocr_cpu_engines": "paddleocr-vl"}, {"tesseract_psm": 4}):
        with pytest.raises(ValueError):
            Settings(**bad)  # type: ignore[arg-type]
