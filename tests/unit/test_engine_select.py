"""Engine selection: a pure decision over OCR_ENGINE, VL_SERVER_URL and what the machine has."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engines.paddleocr_vl import PaddleOcrVlEngine
from app.engines.pp_ocr import PpOcrEngine
from app.engines.select import MachineFacts, build_engine, choose_engine, gather_facts
from app.settings import Settings

GPU = MachineFacts(paddleocr_installed=True, gpu_devices=("/dev/nvidia0",))
NO_GPU = MachineFacts(paddleocr_installed=True, gpu_devices=())
NO_PADDLE = MachineFacts(paddleocr_installed=False, gpu_devices=("/dev/nvidia0",))


@pytest.mark.parametrize(
    ("requested", "url", "facts", "engine", "reason_part"),
    [
        ("auto", "", GPU, "paddleocr-vl", "1 CUDA GPU visible (/dev/nvidia0)"),
        ("auto", "http://vlm:8080/v1", NO_GPU, "paddleocr-vl", "VL_SERVER_URL is set"),
        ("auto", "http://vlm:8080/v1", GPU, "paddleocr-vl", "CUDA GPU"),
        ("auto", "", NO_GPU, "pp-ocr", "no CUDA GPU is visible and VL_SERVER_URL is not set"),
        ("auto", "   ", NO_GPU, "pp-ocr", "VL_SERVER_URL is not set"),
        ("auto", "http://vlm:8080/v1", NO_PADDLE, "pp-ocr", "paddleocr is not installed"),
        ("pp-ocr", "", GPU, "pp-ocr", "OCR_ENGINE=pp-ocr"),
        ("paddleocr-vl", "", NO_PADDLE, "paddleocr-vl", "OCR_ENGINE=paddleocr-vl"),
    ],
)
def test_choose_engine(requested: str, url: str, facts: MachineFacts, engine: str, reason_part: str) -> None:
    name, reason = choose_engine(requested, url, facts)
    assert name == engine
    assert reason_part in reason


def test_two_gpus_are_named() -> None:
    facts = MachineFacts(paddleocr_installed=True, gpu_devices=("/dev/nvidia0", "/dev/nvidia1"))
    assert "2 CUDA GPUs visible (/dev/nvidia0, /dev/nvidia1)" in choose_engine("auto", "", facts)[1]


def test_gather_facts_counts_gpu_device_files(tmp_path: Path) -> None:
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"):
        (tmp_path / name).touch()
    facts = gather_facts(tmp_path)
    assert facts.gpu_devices == (str(tmp_path / "nvidia0"), str(tmp_path / "nvidia1"))
    assert facts.paddleocr_installed  # the test environment installs paddleocr
    assert gather_facts(tmp_path / "missing").gpu_devices == ()


def test_build_engine_constructs_without_loading() -> None:
    engine, reason = build_engine(Settings(vl_server_url="http://vlm:8080/v1", vl_backend="vllm-server"), NO_GPU)
    assert isinstance(engine, PaddleOcrVlEngine) and "VL_SERVER_URL" in reason
    assert engine.max_parallel == 8  # VL_MAX_CONCURRENCY for a server backend
    native, _ = build_engine(Settings(ocr_engine="paddleocr-vl"), NO_GPU)
    assert native.max_parallel == 1  # one pipeline call at a time on the GPU
    cpu, reason = build_engine(Settings(ocr_concurrency=3), NO_GPU)
    assert isinstance(cpu, PpOcrEngine) and cpu.max_parallel == 3 and reason.startswith("auto:")
