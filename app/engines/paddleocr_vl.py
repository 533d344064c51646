"""``paddleocr-vl``: the PaddleOCR-VL document pipeline (``paddleocr.PaddleOCRVL``).

Layout detection (PP-DocLayoutV2) and the optional orientation / unwarping models run in this process
on ``OCR_DEVICE``; the 0.9B vision-language model runs either here (``VL_BACKEND=native``) or in an
OpenAI-compatible server (vLLM, SGLang, FastDeploy) at ``VL_SERVER_URL``.

Concurrency. ``native``: one pipeline call at a time (``max_parallel`` 1), the GPU is the bottleneck.
Server backends: ``VL_MAX_CONCURRENCY`` pages at once through **one shared pipeline instance**. That is
safe in paddlex 3.3 (checked in its source, ``inference/pipelines/paddleocr_vl/pipeline.py`` and
``inference/models/doc_vlm/predictor.py``): with ``use_queues=False`` a ``predict`` call keeps all of its
state in locals (batch sampler generators, the crops, a per-call lock); the VLM client submits each
request to paddlex's single asyncio loop thread with ``run_coroutine_threadsafe`` and limits them with
an ``asyncio.Semaphore`` used only on that loop; the shared ``ThreadPoolExecutor`` that encodes crops is
thread-safe. What is *not* safe to share is a local Paddle Inference predictor (it owns its input and
output tensors), i.e. the layout and preprocessing models: those calls are serialised with one lock
(:class:`SerializedCalls`) while the VLM requests of all pages stay concurrent.

Deadline. paddlex passes ``timeout=600`` with every VLM request (and the OpenAI client retries twice),
so a hung server could hold a page for half an hour. The pipeline gets its own HTTP client instead,
through ``SubModules.VLRecognition.genai_config.client_kwargs`` of a full paddlex config: ``max_retries=0``
and an httpx transport (:class:`DeadlineTransport`) that replaces each request's timeouts with
``VL_REQUEST_TIMEOUT_S``. The request is then really cancelled (its connection closed, its semaphore
slot freed), which a timer around ``predict`` could not do, and the error reaches us as
``openai.APITimeoutError`` -> 504. The deadline applies to each VLM request: one per page with layout
detection off, one per layout block (sent concurrently) with it on.
"""

from __future__ import annotations

import inspect
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
from PIL import Image, ImageDraw

from app.engines.base import EngineLoadError, EnginePage, OcrEngine
from app.engines.errors import EngineError, VlmFailed, VlmTimeout, VlmUnavailable
from app.engines.vl_mapping import page_from_vl_result
from app.settings import Settings

log = logging.getLogger(__name__)

SERVER_BACKENDS = ("vllm-server", "sglang-server", "fastdeploy-server")
#: Seconds between attempts to reach the VLM server at start: 1, 2, 4, 8, 15, 15, ...
_RETRY_CAP_S = 15.0
#: paddlex's pipeline config for each ``pipeline_version`` (paddleocr >= 3.4 has more than v1).
_CONFIG_NAMES = {"v1": "PaddleOCR-VL"}


class PaddleOcrVlEngine(OcrEngine):
    name = "paddleocr-vl"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._server = settings.vl_backend in SERVER_BACKENDS
        self._parallel = settings.vl_max_concurrency if self._server else 1
        self._one_call_at_a_time: threading.Lock | None = None  # set when the local models cannot be guarded
        self._pipeline: Any = None
        self._stop = threading.Event()
        self._timeout_s = settings.vl_request_timeout_s
        self.device = settings.ocr_device or "auto"

    @property
    def max_parallel(self) -> int:
        return self._parallel

    @property
    def batch_size(self) -> int:
        """Native: ``VL_BATCH_PAGES`` pages of a document per pipeline call (the GPU batches them).
        Server backends: one page per call; pages of all requests run concurrently instead."""
        return 1 if self._server else self._settings.vl_batch_pages

    @property
    def needs_local_models(self) -> bool:
        """Whether any model runs in this process (then ``OCR_DEVICE`` matters)."""
        s = self._settings
        return (
            not self._server or s.vl_use_layout_detection or s.vl_use_doc_orientation_classify or s.vl_use_doc_unwarping
        )

    # --- loading -------------------------------------------------------------------------------
    def load(self) -> None:
        s = self._settings
        check_settings(s)
        self.detail = "importing paddleocr"
        try:
            import paddleocr
            from paddleocr import PaddleOCRVL
        except ImportError as exc:
            raise EngineLoadError(
                "paddleocr is not installed: use the GPU image, or pip install 'paddleocr[doc-parser]' "
                "and paddlepaddle(-gpu); or set OCR_ENGINE=pp-ocr"
            ) from exc
        version = resolve_pipeline_version(s.vl_pipeline_version, PaddleOCRVL, paddleocr.__version__)
        local_device = resolve_device(s.ocr_device) if self.needs_local_models else (s.ocr_device or "cpu")
        self.device = f"{local_device}; VLM: {s.vl_backend}" if self._server else local_device
        if not self._server and local_device == "cpu":
            log.warning("paddleocr-vl: the VLM runs natively on the CPU; expect minutes per page")

        from paddlex.inference import load_pipeline_config
        from paddlex.utils.cache import CACHE_DIR

        config = load_pipeline_config(_CONFIG_NAMES.get(version, f"PaddleOCR-VL-{version.removeprefix('v')}"))
        models_dir = Path(CACHE_DIR) / "official_models"
        missing = missing_models(models_dir, required_models(config, s))
        if missing:
            log.warning("paddleocr-vl: not in %s, paddlex will try to download: %s", models_dir, ", ".join(missing))
        config["use_queues"] = False  # the queue threads add ~1.5 s to every call
        if self._server:
            genai = config["SubModules"]["VLRecognition"]["genai_config"]
            genai["client_kwargs"] = {**(genai.get("client_kwargs") or {}), **self._client_kwargs()}

        kwargs = pipeline_kwargs(s, local_device, supports_version="pipeline_version" in _parameters(PaddleOCRVL))
        self.detail = f"creating the pipeline (paddleocr {paddleocr.__version__}, {version}) on {local_device}"
        log.info("paddleocr-vl: %s", self.detail)
        try:
            self._pipeline = PaddleOCRVL(paddlex_config=config, **kwargs)
            if self._server and self.needs_local_models and not self._serialise_local_models():
                log.warning("paddleocr-vl: cannot guard the local models of this paddlex version; one call at a time")
                self._one_call_at_a_time = threading.Lock()
            self._warm_up()
        except EngineLoadError:
            raise
        except Exception as exc:
            if self._stop.is_set():
                raise EngineLoadError("stopped while initialising") from exc
            raise EngineLoadError(explain_failure(exc, missing=missing, models_dir=models_dir)) from exc
        finally:
            self.detail = None

    def _client_kwargs(self) -> dict[str, Any]:
        if not log.isEnabledFor(logging.DEBUG):  # httpx logs every VLM request (one per block) at INFO
            logging.getLogger("httpx").setLevel(logging.WARNING)
        client = httpx.AsyncClient(transport=DeadlineTransport(self._timeout_s), timeout=self._timeout_s)
        return {"max_retries": 0, "http_client": client}

    def _serialise_local_models(self) -> bool:
        """Put one lock around the in-process models (see the module docstring); False when not found."""
        outer = self._pipeline.paddlex_pipeline
        inner = vars(outer).get("_pipeline", outer)  # paddlex wraps the pipeline for multi-device use
        lock = threading.Lock()
        found = False
        for attribute in ("layout_det_model", "doc_preprocessor_pipeline"):
            model = vars(inner).get(attribute)
            if model is not None:
                setattr(inner, attribute, SerializedCalls(model, lock))
                found = True
        return found

    def _warm_up(self) -> None:
        """One inference on a small generated page, so the first request does not pay for compilation.

        With a server backend this is also the check that the server answers. Connection errors, 5xx
        and timeouts mean "not up yet" (it may still be loading its model): retried with backoff for as
        long as it takes, ``/health`` showing what we wait for. A 4xx is a configuration error: failed.
        """
        page = [to_bgr(warmup_page())]
        attempt = 0
        while True:
            self.detail = "warming up" + (f" (VLM server at {self._server_label()})" if self._server else "")
            try:
                # Layout detection off: exactly one VLM request, whatever the layout model would find.
                self._pipeline.predict(page, use_layout_detection=False, use_queues=False)
                break
            except Exception as exc:
                if not self._server or vlm_service_error(exc, 0) is None:
                    raise
                if not is_transient_vlm_error(exc):
                    raise EngineLoadError(explain_vlm_rejection(exc, self._server_label())) from exc
                attempt += 1
                wait = min(_RETRY_CAP_S, 2.0 ** (attempt - 1))
                self.detail = (
                    f"waiting for the VLM server at {self._server_label()}: {short_error(exc)} "
                    f"(attempt {attempt}, next in {wait:.0f} s)"
                )
                log.warning("paddleocr-vl: %s", self.detail)
                if self._stop.wait(wait):
                    raise
        if self.needs_local_models:
            self._pipeline.predict(page, use_queues=False)  # the layout / preprocessing models too
        log.info("paddleocr-vl: warm-up done")

    def _server_label(self) -> str:
        """The server URL without credentials or query, for logs and /health."""
        parts = urlsplit(normalise_server_url(self._settings.vl_server_url))
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit((parts.scheme, host + port, parts.path, "", ""))

    # --- recognition ---------------------------------------------------------------------------
    def recognize(self, images: Sequence[Image.Image], languages: Sequence[str]) -> list[EnginePage]:
        """All pages in one pipeline call (it batches them, and their VLM requests run concurrently); the
        VLM reads every language, so ``languages`` is not needed.

        VLM server failures raise :class:`VlmUnavailable`, :class:`VlmFailed` or :class:`VlmTimeout`;
        other failures propagate.
        """
        if self._pipeline is None:
            raise RuntimeError("the paddleocr-vl engine is not loaded")
        arrays = [to_bgr(image) for image in images]
        try:
            if self._one_call_at_a_time is None:
                results = self._pipeline.predict(arrays, use_queues=False)
            else:
                with self._one_call_at_a_time:
                    results = self._pipeline.predict(arrays, use_queues=False)
        except Exception as exc:
            error = vlm_service_error(exc, self._timeout_s)
            if error is None:
                raise
            log.warning("paddleocr-vl: VLM server %s: %s", self._server_label(), short_error(exc))
            raise error from exc
        if len(results) != len(arrays):
            raise RuntimeError(f"the pipeline returned {len(results)} results for {len(arrays)} pages")
        return [page_from_vl_result(result.json["res"], result.markdown) for result in results]

    def close(self) -> None:
        self._stop.set()
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            try:
                pipeline.close()
            except Exception as exc:  # shutting down: report, do not raise
                log.warning("paddleocr-vl: close failed: %r", exc)


# --- configuration (pure) ---------------------------------------------------------------------------
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


def normalise_server_url(url: str) -> str:
    """The OpenAI base URL: ``http://vlm:8080`` -> ``http://vlm:8080/v1``; a URL with a path is kept."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme and parts.netloc and not parts.path:
        return url + "/v1"
    return url


def resolve_pipeline_version(requested: str, pipeline_class: Any, installed: str) -> str:
    """``VL_PIPELINE_VERSION`` checked against what the installed paddleocr offers (its default when empty)."""
    parameter = _parameters(pipeline_class).get("pipeline_version")
    if parameter is None:  # paddleocr 3.3 knows only the first PaddleOCR-VL
        if requested not in ("", "v1"):
            raise EngineLoadError(
                f"VL_PIPELINE_VERSION={requested} needs a newer paddleocr (installed: {installed}, which has v1 only)"
            )
        return "v1"
    return requested or str(parameter.default)


def pipeline_kwargs(settings: Settings, device: str, *, supports_version: bool) -> dict[str, Any]:
    """Keyword arguments for ``PaddleOCRVL(...)`` from the settings (not ``paddlex_config``)."""
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
        if s.vl_model_name:
            kwargs["vl_rec_api_model_name"] = s.vl_model_name
        if s.vl_api_key.get_secret_value():
            kwargs["vl_rec_api_key"] = s.vl_api_key.get_secret_value()
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


# --- errors (pure) --------------------------------------------------------------------------------
_ARCH_MISMATCH = re.compile(
    r"no kernel image|nokernelimagefordevice|not compatible with the current gpu|compute capability|\bsm_?\d{2,3}\b"
)
_DRIVER_TOO_OLD = ("driver version is insufficient", "insufficientdriver", "cuda driver version")


def explain_failure(exc: BaseException, *, missing: Sequence[str] = (), models_dir: Path | None = None) -> str:
    """An initialisation error as a sentence that says what to do."""
    text = short_error(exc)
    low = text.lower()
    if _ARCH_MISMATCH.search(low):
        return (
            "CUDA/architecture mismatch: the installed paddlepaddle-gpu has no kernels for this GPU. Use the image "
            "built for it (the sm120 image for Blackwell, e.g. RTX 50xx; the non-sm120 one for A100/H100). "
            f"Error: {text}"
        )
    if any(marker in low for marker in _DRIVER_TOO_OLD):
        return (
            "the NVIDIA driver is too old for the CUDA of this image: update the driver or use an older image. "
            f"Error: {text}"
        )
    if "out of memory" in low:
        return f"the GPU ran out of memory while loading: free the GPU or use a larger one. Error: {text}"
    if missing:
        return (
            f"models missing under {models_dir}: {', '.join(missing)}, and they could not be downloaded. "
            "Use the -offline image, mount the models there, or point PADDLE_PDX_CACHE_HOME at the folder "
            f"that holds official_models/. Error: {text}"
        )
    return text


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def vlm_service_error(exc: BaseException, timeout_s: float) -> EngineError | None:
    """The engine error for a failed VLM request, or ``None`` when ``exc`` is something else.

    Timeout -> :class:`VlmTimeout`; unreachable -> :class:`VlmUnavailable`; an HTTP error status from the
    server -> :class:`VlmFailed` (:data:`app.errors.ENGINE_ERRORS` maps them to 504/502). Messages name no
    host: the server's address is internal.
    """
    try:
        import openai
    except ImportError:  # pragma: no cover - openai comes with paddlex's VLM client
        return None
    for error in _exception_chain(exc):
        if isinstance(error, openai.APITimeoutError):
            return VlmTimeout(
                f"the VLM server did not answer within {timeout_s:g} s (VL_REQUEST_TIMEOUT_S); retry later"
            )
        if isinstance(error, openai.APIConnectionError):
            return VlmUnavailable("the VLM server cannot be reached; retry later")
        if isinstance(error, openai.APIStatusError):
            return VlmFailed(f"the VLM server answered HTTP {error.status_code}", error.status_code)
    return None


def explain_vlm_rejection(exc: BaseException, server: str) -> str:
    """What to fix when the VLM server refuses the warm-up request with a 4xx."""
    status = next((int(e.status_code) for e in _exception_chain(exc) if hasattr(e, "status_code")), 0)
    if status in (401, 403):
        hint = "check VL_API_KEY (sent as 'Authorization: Bearer ...')"
    elif status == 404:
        hint = (
            "check VL_SERVER_URL (the OpenAI base URL, usually ending in /v1) and VL_MODEL_NAME "
            "(it must be the server's --served-model-name; GET <VL_SERVER_URL>/models lists them)"
        )
    else:
        hint = "check VL_MODEL_NAME and that the server serves PaddleOCR-VL"
    return f"the VLM server at {server} rejected the warm-up request (HTTP {status}): {hint}. {short_error(exc)}"


def is_transient_vlm_error(exc: BaseException) -> bool:
    """Worth retrying at start: unreachable, timed out, or a 5xx (e.g. still loading); not a 4xx."""
    error = vlm_service_error(exc, 0)
    if error is None:
        return False
    if not isinstance(error, VlmFailed):
        return True
    return any(getattr(e, "status_code", 0) >= 500 for e in _exception_chain(exc))


def short_error(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 300 characters."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- helpers ----------------------------------------------------------------------------------------
class SerializedCalls:
    """A callable model run by one thread at a time; generators are consumed under the lock.

    Attribute access is forwarded, so the pipeline sees the same object otherwise.
    """

    def __init__(self, inner: Any, lock: threading.Lock) -> None:
        self._inner = inner
        self._lock = lock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            result = self._inner(*args, **kwargs)
            return list(result) if inspect.isgenerator(result) else result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class DeadlineTransport(httpx.AsyncBaseTransport):
    """An httpx transport that gives every request the same timeouts, whatever the caller asked for.

    httpx carries a request's timeouts in its ``timeout`` extension (httpx docs, "Request Extensions"),
    which the connection pool honours; replacing it here overrides the 600 s that paddlex asks for.
    """

    def __init__(self, timeout_s: float, connect_s: float = 10.0) -> None:
        # The connection pool of openai's own client (paddlex may have ~200 requests in flight).
        self._inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100))
        connect = min(connect_s, timeout_s)
        self._timeouts = {"connect": connect, "read": timeout_s, "write": timeout_s, "pool": timeout_s}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions = {**request.extensions, "timeout": self._timeouts}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _parameters(pipeline_class: Any) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(pipeline_class.__init__).parameters)
    except (TypeError, ValueError):
        return {}


def to_bgr(image: Image.Image) -> np.ndarray:
    """An RGB PIL page as the contiguous BGR ``uint8`` array paddlex reads (like ``cv2.imread``)."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def warmup_page() -> Image.Image:
    """A small page with a line of text."""
    image = Image.new("RGB", (480, 96), "white")
    ImageDraw.Draw(image).text((16, 36), "PaddleOCR-VL warm-up 0123456789", fill="black")
    return image
