"""Engine selection: the one place that decides which engine serves requests, and says why.

The decision (:func:`choose_engine`) is a pure function of the setting and of facts about the
machine (:func:`gather_facts`), so it is tested without a GPU. Gathering the facts is cheap and
imports nothing heavy: it runs at start-up, before ``/health`` answers.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from app.engines.base import OcrEngine
from app.settings import Settings

_NVIDIA_DEVICE = re.compile(r"^nvidia\d+$")


@dataclass(frozen=True)
class MachineFacts:
    """What the selection depends on, besides the settings."""

    paddleocr_installed: bool
    gpu_devices: tuple[str, ...]  # CUDA GPU device files visible to this process, e.g. ("/dev/nvidia0",)


def gather_facts(dev: Path = Path("/dev")) -> MachineFacts:
    """Whether ``paddleocr`` can be imported (without importing it) and which NVIDIA GPUs are visible.

    A GPU given to a container appears as ``/dev/nvidiaN`` (the NVIDIA container runtime creates
    exactly the devices it hands over), so the device files answer "is a GPU visible?" in microseconds,
    where importing paddle to ask CUDA would take seconds.
    """
    try:
        gpus = tuple(sorted(str(p) for p in dev.iterdir() if _NVIDIA_DEVICE.match(p.name)))
    except OSError:
        gpus = ()
    return MachineFacts(paddleocr_installed=importlib.util.find_spec("paddleocr") is not None, gpu_devices=gpus)


def choose_engine(requested: str, vl_server_url: str, facts: MachineFacts) -> tuple[str, str]:
    """``(engine name, reason)`` for ``OCR_ENGINE=requested``.

    ``auto`` picks ``paddleocr-vl`` when paddleocr is installed and either a CUDA GPU is visible or a
    VLM server is configured (``VL_SERVER_URL``); otherwise the CPU engine ``pp-ocr``.
    """
    if requested != "auto":
        return requested, f"OCR_ENGINE={requested}"
    if not facts.paddleocr_installed:
        return "pp-ocr", "auto: paddleocr is not installed, so the CPU engine pp-ocr"
    if facts.gpu_devices:
        count = len(facts.gpu_devices)
        return "paddleocr-vl", (
            f"auto: paddleocr is installed and {count} CUDA GPU{'s' if count > 1 else ''} "
            f"visible ({', '.join(facts.gpu_devices)})"
        )
    if vl_server_url.strip():
        return "paddleocr-vl", "auto: paddleocr is installed and VL_SERVER_URL is set"
    return "pp-ocr", "auto: no CUDA GPU is visible and VL_SERVER_URL is not set, so the CPU engine pp-ocr"


def build_engine(settings: Settings, facts: MachineFacts | None = None) -> tuple[OcrEngine, str]:
    """The engine named by ``OCR_ENGINE`` (``auto`` picks the best available) and the reason for it."""
    name, reason = choose_engine(settings.ocr_engine, settings.vl_server_url, facts or gather_facts())
    if name == "paddleocr-vl":
        from app.engines.paddleocr_vl import PaddleOcrVlEngine

        return PaddleOcrVlEngine(settings), reason
    from app.engines.pp_ocr import PpOcrEngine

    return PpOcrEngine(parallel=settings.ocr_concurrency, threads=settings.threads_per_worker), reason
