"""The paddleocr-vl engine's configuration, pure: settings checked and turned into pipeline arguments,
the device and the in-process models it needs, and the VLM request limit."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.engines.base import EngineLoadError
from app.engines.paddleocr_vl.limiter import FixedLimit, GradientLimit, Limit
from app.settings import Settings

SERVER_BACKENDS = ("vllm-server", "sglang-server", "fastdeploy-server")


def check_settings(settings: Settings) -> None:
    """Raise :class:`EngineLoadError` with the fix for contradictory settings."""
    server = settings.vl_backend in SERVER_BACKENDS
    if server and not settings.vl_server_url.strip():
        raise EngineLoadError(f"VL_BACKEND={settings.vl_backend} needs VL_SERVER_URL (e.g. http://vlm:8080/v1)")
    if not server and settings.vl_server_url.strip():
        raise EngineLoadError(
            "VL_SERVER_URL is set but VL_BACKEND=native: set VL_BACKEND=vllm-server (or sglang-server, "
            "fastdeploy-server) to use the server, or unset VL_SERVER_URL to run the VLM in this process"
        )
    if "," in settings.ocr_device:
        raise EngineLoadError(f"OCR_DEVICE={settings.ocr_device}: one device per service instance (e.g. gpu:0)")
    iam = (bool(settings.vl_iam_key_id), bool(settings.vl_iam_secret.get_secret_value()))
    if iam[0] != iam[1]:
        raise EngineLoadError("set both VL_IAM_KEY_ID and VL_IAM_SECRET (a service account's access key), or neither")
    if all(iam) and settings.vl_api_key.get_secret_value():
        raise EngineLoadError(
            "VL_API_KEY and VL_IAM_KEY_ID/VL_IAM_SECRET are both set: use the static key or the IAM key pair, not both"
        )
    if all(iam) and not server:
        raise EngineLoadError("VL_IAM_KEY_ID/VL_IAM_SECRET are for a VLM server: set VL_BACKEND and VL_SERVER_URL")
    if all(iam) and not settings.vl_iam_url.startswith(("http://", "https://")):
        raise EngineLoadError(f"VL_IAM_URL must be an http(s) URL, got {settings.vl_iam_url[:60]!r}")


def normalise_server_url(url: str) -> str:
    """The OpenAI base URL: ``http://vlm:8080`` -> ``http://vlm:8080/v1``; a URL with a path is kept."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme and parts.netloc and not parts.path:
        return url + "/v1"
    return url


def resolve_pipeline_version(requested: str, pipeline_class: Any, installed: str) -> str:
    """``VL_PIPELINE_VERSION`` checked against what the installed paddleocr offers (its default when empty)."""
    parameter = parameters(pipeline_class).get("pipeline_version")
    if parameter is None:  # paddleocr 3.3 knows only the first PaddleOCR-VL
        if requested not in ("", "v1"):
            raise EngineLoadError(
                f"VL_PIPELINE_VERSION={requested} needs a newer paddleocr (installed: {installed}, which has v1 only)"
            )
        return "v1"
    return requested or str(parameter.default)


def pipeline_kwargs(
    settings: Settings, device: str, *, supports_version: bool, model_name: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``PaddleOCRVL(...)`` from the settings (not ``paddlex_config``); ``model_name`` is
    the one the server was found to serve. The bearer credential is set by the engine's HTTP transport."""
    s = settings
    kwargs: dict[str, Any] = {
        "vl_rec_backend": s.vl_backend,
        "use_layout_detection": s.vl_use_layout_detection,
        "use_doc_orientation_classify": s.vl_use_doc_orientation_classify,
        "use_doc_unwarping": s.vl_use_doc_unwarping,
        "device": device,
    }
    if supports_version and s.vl_pipeline_version:
        kwargs["pipeline_version"] = s.vl_pipeline_version
    if s.vl_backend in SERVER_BACKENDS:
        kwargs["vl_rec_server_url"] = normalise_server_url(s.vl_server_url)
        if model_name or s.vl_model_name:
            kwargs["vl_rec_api_model_name"] = model_name or s.vl_model_name
    return kwargs


def required_models(config: dict[str, Any], settings: Settings) -> list[str]:
    """Names of the models this configuration loads in-process (from the paddlex pipeline config)."""
    s = settings
    sub = config.get("SubModules", {})
    pre = config.get("SubPipelines", {}).get("DocPreprocessor", {}).get("SubModules", {})
    wanted = [
        (s.vl_use_doc_orientation_classify, pre.get("DocOrientationClassify", {})),
        (s.vl_use_doc_unwarping, pre.get("DocUnwarping", {})),
        (s.vl_use_layout_detection, sub.get("LayoutDetection", {})),
        (s.vl_backend not in SERVER_BACKENDS, sub.get("VLRecognition", {})),
    ]
    return [str(part["model_name"]) for use, part in wanted if use and part.get("model_name")]


def missing_models(models_dir: Path, names: Sequence[str]) -> list[str]:
    """The models of ``names`` that have no non-empty folder under ``models_dir``."""
    return [name for name in names if not (models_dir / name).is_dir() or not any((models_dir / name).iterdir())]


def resolve_device(requested: str) -> str:
    """``OCR_DEVICE`` checked against what paddle sees; empty means ``gpu:0`` when there is one, else ``cpu``."""
    import paddle

    cuda_build = bool(paddle.device.is_compiled_with_cuda())
    count = int(paddle.device.cuda.device_count()) if cuda_build else 0
    if not requested:
        return "gpu:0" if count else "cpu"
    kind, _, index = requested.partition(":")
    if kind == "gpu":
        if not cuda_build:
            raise EngineLoadError(
                f"OCR_DEVICE={requested}, but the installed paddlepaddle is a CPU build: use the GPU image "
                "(paddlepaddle-gpu), or set OCR_DEVICE=cpu"
            )
        if count == 0:
            raise EngineLoadError(
                f"OCR_DEVICE={requested}, but no CUDA GPU is visible: give the container a GPU "
                "(docker --gpus all; check nvidia-smi and the NVIDIA driver), or set OCR_DEVICE=cpu"
            )
        if index and (not index.isdigit() or int(index) >= count):
            raise EngineLoadError(f"OCR_DEVICE={requested}, but paddle sees {count} GPU(s): gpu:0..gpu:{count - 1}")
    return requested


def request_limit(settings: Settings) -> Limit:
    """``VL_MAX_CONCURRENCY``: ``auto`` adapts up to ``VL_AUTO_CONCURRENCY_MAX``; a number is fixed."""
    if settings.vl_max_concurrency == "auto":
        return GradientLimit(settings.vl_auto_concurrency_max)
    return FixedLimit(settings.vl_max_concurrency)


def page_processes(settings: Settings, cores: int) -> int:
    """``VL_PAGE_PROCESSES``: processes that build and send the VLM requests (:mod:`.processes`); 0 = this one.
    ``auto``: one per four of the ``cores`` this service may use, at most four; none below four cores, where the
    service process alone is about as fast and spends less CPU per page (BENCHMARKS.md, vl-cpu). The native backend
    runs the VLM in this process: always 0."""
    if settings.vl_backend not in SERVER_BACKENDS:
        return 0
    if settings.vl_page_processes == "auto":
        return min(4, cores // 4)
    return settings.vl_page_processes


def server_label(url: str) -> str:
    """The server URL without credentials or query, for logs and /health."""
    parts = urlsplit(normalise_server_url(url))
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def parameters(pipeline_class: Any) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(pipeline_class.__init__).parameters)
    except (TypeError, ValueError):
        return {}
