"""Engine selection: which engines load (OCR_ENGINE, OCR_CPU_ENGINES, the machine) and which one serves a request."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from app.api.errors import http_status
from app.engines.factories import FACTORIES, build_engines
from app.engines.languages import PP_OCR_LANGUAGES
from app.engines.measured import Figures, Measurement, load_figures
from app.engines.paddleocr_vl.engine import PaddleOcrVlEngine
from app.engines.pp_ocr import PpOcrEngine
from app.engines.registry import EngineSet
from app.engines.select import MachineFacts, choose_for_request, gather_facts, plan_engines
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


def measured(pp_ocr: tuple[float, float], tesseract: tuple[float, float], photo_cer: float | None = None) -> Figures:
    """Figures with the same (pages/s, CER) on every kind of page; ``photo_cer``: tesseract's on photos."""
    kinds = ("clean", "noisy", "photo", "vector-pdf")
    engines = {
        "pp-ocr": {kind: Measurement(*pp_ocr) for kind in kinds},
        "tesseract": {kind: Measurement(*tesseract) for kind in kinds},
    }
    if photo_cer is not None:
        engines["tesseract"]["photo"] = Measurement(tesseract[0], photo_cer)
    return Figures(("en",), engines, source="test")


TESSERACT_FASTER = measured(pp_ocr=(0.8, 0.002), tesseract=(3.0, 0.0))


@pytest.mark.parametrize(
    ("languages", "explicit", "engine", "chosen", "read", "reason_part"),
    [
        (("en",), True, None, "tesseract", ("en",), "auto: pp-ocr and tesseract read en; tesseract is the fastest"),
        (("ru",), True, None, "tesseract", ("ru", "en"), "tesseract reads ru (pp-ocr does not read ru)"),
        (("ru", "en"), True, None, "tesseract", ("ru", "en"), "pp-ocr does not read ru"),
        (("de", "fr"), True, None, "pp-ocr", ("de", "fr"), "pp-ocr reads de,fr (tesseract does not read de,fr)"),
        (("ru", "de"), True, None, "pp-ocr", ("ru", "de", "en"), "no loaded engine reads all of ru,de"),  # a tie
        (("ru", "en"), False, None, "tesseract", ("ru", "en"), "tesseract reads ru,en"),  # OCR_LANGUAGES
        (("en",), True, "pp-ocr", "pp-ocr", ("en",), "engine=pp-ocr"),
        (("ru",), False, "pp-ocr", "pp-ocr", ("ru", "en"), "engine=pp-ocr"),  # default languages: not checked
        (("zh",), True, "pp-ocr", "pp-ocr", ("zh", "en"), "engine=pp-ocr"),
    ],
)
def test_choose_for_request_on_cpu(
    languages: tuple[str, ...],
    explicit: bool,
    engine: str | None,
    chosen: str,
    read: tuple[str, ...],
    reason_part: str,
) -> None:
    choice = choose_for_request(CPU, languages, explicit_languages=explicit, engine=engine, figures=TESSERACT_FASTER)
    assert choice.engine == chosen
    assert choice.languages == read
    assert reason_part in choice.reason


def test_non_latin_scripts_read_english_too_unless_strict() -> None:
    russian = choose_for_request(CPU, ("ru",), explicit_languages=True)
    assert russian.languages == ("ru", "en")
    assert choose_for_request(CPU, ("ru",), explicit_languages=True, strict=True).languages == ("ru",)
    assert choose_for_request(WITH_VL, ("el", "ar"), explicit_languages=True).languages == ("el", "ar", "en")
    assert choose_for_request(WITH_VL, ("de",), explicit_languages=True).languages == ("de",)  # Latin already
    only_russian = {"tesseract": frozenset({"ru"})}  # no English model installed: nothing is added
    assert choose_for_request(only_russian, ("ru",), explicit_languages=True).languages == ("ru",)
    chinese = choose_for_request(CPU, ("zh",), explicit_languages=True)  # pp-ocr reads zh and en
    assert chinese.engine == "pp-ocr" and chinese.languages == ("zh", "en")


def test_auto_follows_the_measurements() -> None:
    faster = choose_for_request(CPU, ("en",), explicit_languages=True, figures=TESSERACT_FASTER)
    assert faster.engine == "tesseract"
    assert "3.00 pages/s vs pp-ocr 0.80" in faster.reason and "worst CER 0.0 % vs pp-ocr 0.2 %" in faster.reason
    # Faster, but more than 0.5 CER points worse on photographed pages: the accurate one is chosen.
    sloppy = measured(pp_ocr=(0.8, 0.0), tesseract=(3.0, 0.0), photo_cer=0.02)
    careful = choose_for_request(CPU, ("en",), explicit_languages=True, figures=sloppy)
    assert careful.engine == "pp-ocr" and "tesseract faster but less accurate" in careful.reason
    # Within 0.5 points on every kind: the faster one, though slightly less accurate.
    close = measured(pp_ocr=(0.8, 0.0), tesseract=(3.0, 0.0), photo_cer=0.004)
    assert choose_for_request(CPU, ("en",), explicit_languages=True, figures=close).engine == "tesseract"
    # No engine is within 0.5 points everywhere: the lowest mean CER.
    mixed = Figures(
        ("en",),
        {
            "pp-ocr": {"clean": Measurement(1, 0.0), "photo": Measurement(1, 0.10)},
            "tesseract": {"clean": Measurement(3, 0.02), "photo": Measurement(3, 0.0)},
        },
    )
    lowest = choose_for_request(CPU, ("en",), explicit_languages=True, figures=mixed)
    assert lowest.engine == "tesseract" and "lowest mean CER (1.0 %)" in lowest.reason
    # Measurements of Latin-script pages do not decide for other scripts: the configured order does.
    both_read_zh = {"pp-ocr": PP_OCR_LANGUAGES, "tesseract": frozenset({"zh", "en"})}
    chinese = choose_for_request(both_read_zh, ("zh",), explicit_languages=True, figures=TESSERACT_FASTER)
    assert chinese.engine == "pp-ocr" and "the first of pp-ocr and tesseract (no measurements for zh)" in chinese.reason
    # Without figures, the configured order.
    unmeasured = choose_for_request(CPU, ("en",), explicit_languages=True)
    assert unmeasured.engine == "pp-ocr" and "no measurements for en" in unmeasured.reason


def test_the_committed_measurements_cover_both_engines(tmp_path: Path) -> None:
    figures = load_figures()
    assert figures is not None and figures.languages == ("en",) and "bench_engines.py" in figures.source
    for engine in ("pp-ocr", "tesseract"):
        assert set(figures.engines[engine]) == {"clean", "noisy", "photo", "vector-pdf"}
        assert all(m.pages_per_s > 0 and 0 <= m.cer <= 1 for m in figures.engines[engine].values())
    assert Figures.from_json(figures.to_json()) == figures
    (tmp_path / "broken.json").write_text("{")
    assert load_figures(tmp_path / "broken.json") is None
    assert load_figures(tmp_path / "missing.json") is None


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
    assert http_status(caught.value) == 422
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


def test_every_engine_the_settings_name_has_a_factory() -> None:
    named = set(typing.get_args(Settings.model_fields["ocr_engine"].annotation)) - {"auto"}
    assert set(FACTORIES) == named


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
    russian = EngineSet(engines, plan, ("ru", "en"), figures=TESSERACT_FASTER)
    assert russian.default.engine.name == "tesseract" and russian.workers == 2
    assert russian.default.selection is not None
    assert "requests without lang (OCR_LANGUAGES=ru,en): auto: tesseract reads ru,en" in russian.default.selection
    assert russian.choose(("en",), None).engine == "tesseract"
    assert russian.choose(("de",), None).engine == "pp-ocr"  # no German model for Tesseract here
    assert russian.choose(None, None).languages == ("ru", "en")
    assert russian.choose(("ru",), None).languages == ("ru", "en")
    assert russian.choose(("ru",), None, strict=True).languages == ("ru",)
    english = EngineSet(engines, plan, ("en",), figures=measured(pp_ocr=(1, 0.0), tesseract=(3, 0.0), photo_cer=0.1))
    assert english.default.engine.name == "pp-ocr"
    assert english.default.selection is not None and "tesseract faster but less accurate" in english.default.selection
    # A stored job keeps its engine and languages; one whose engine is no longer loaded gets a new choice.
    assert russian.resume("pp-ocr", ("ru",)).engine == "pp-ocr"
    assert russian.resume("paddleocr-vl", ("ru",)).languages == ("ru",)
    assert russian.resume("paddleocr-vl", ("ru",)).engine == "tesseract"
    assert russian.resume("paddleocr-vl", ()).engine == "tesseract"  # a record from before languages: defaults


def test_settings_check_languages_engines_and_psm() -> None:
    assert Settings(ocr_languages="rus+eng").languages == ("ru", "en")
    assert Settings(ocr_cpu_engines=" Tesseract , pp-ocr,tesseract").cpu_engines == ("tesseract", "pp-ocr")
    assert Settings().cpu_engines is None
    for bad in ({"ocr_languages": "r;u"}, {"ocr_cpu_engines": "paddleocr-vl"}, {"tesseract_psm": 4}):
        with pytest.raises(ValueError):
            Settings(**bad)  # type: ignore[arg-type]
