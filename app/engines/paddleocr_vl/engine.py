"""``paddleocr-vl``: the PaddleOCR-VL document pipeline (``paddleocr.PaddleOCRVL``).

Layout detection (PP-DocLayoutV2) and the optional orientation / unwarping models run in this process
on ``OCR_DEVICE``; the 0.9B vision-language model runs either here (``VL_BACKEND=native``) or in an
OpenAI-compatible server (vLLM, SGLang, FastDeploy) at ``VL_SERVER_URL``.

Concurrency. ``native``: one pipeline call at a time (``max_parallel`` 1), the GPU is the bottleneck.
Server backends: pages run concurrently through **one shared pipeline instance**, and the number of VLM
requests in flight is ``VL_MAX_CONCURRENCY`` (``auto``: adapted to the server, :mod:`app.engines.paddleocr_vl.limiter`;
the page workers are sized for its upper bound, and :attr:`page_gate` admits a page only while the server
has room). Sharing the pipeline is safe in paddlex 3.3 (checked in its source,
``inference/pipelines/paddleocr_vl/pipeline.py`` and ``inference/models/doc_vlm/predictor.py``): with
``use_queues=False`` a ``predict`` call keeps all of its state in locals (batch sampler generators, the
crops, a per-call lock); the VLM client submits each request to paddlex's single asyncio loop thread with
``run_coroutine_threadsafe``; the shared ``ThreadPoolExecutor`` that encodes crops is thread-safe. What is
*not* safe to share is a local Paddle Inference predictor (it owns its input and output tensors), i.e. the
layout and preprocessing models: those calls are serialised with one lock (:class:`SerializedCalls`) while
the VLM requests of all pages stay concurrent. With ``VL_PAGE_PROCESSES`` the pipelines run in page processes
instead (:mod:`.processes`): this process keeps the limit, the credential and the pages' decoding.

HTTP. The pipeline gets its own HTTP client through ``SubModules.VLRecognition.genai_config.client_kwargs``
of a full paddlex config: ``max_retries=0`` and :class:`~app.engines.paddleocr_vl.client.VlmTransport`, which puts in
the bearer credential (``VL_API_KEY``, or Cloud.ru IAM tokens renewed before they expire), waits for a slot
of the request limit and replaces each request's timeouts with ``VL_REQUEST_TIMEOUT_S`` (paddlex asks for
600 s and the OpenAI client would retry twice). A timed-out request is really cancelled (its connection
closed, its slot freed) and reaches us as ``openai.APITimeoutError`` -> 504. The deadline applies to each
VLM request: one per page with layout detection off, one per layout block (sent concurrently) with it on.

Start. Before the pipeline is built, ``GET /models`` on the server says which model to name
(``VL_MODEL_NAME`` or the only one served) and that the server and the credential work; the engine stays
``initializing`` (``/ready`` 503) while the server cannot be reached, and fails with the fix on a 4xx
(:mod:`.startup`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from app.cpu_turns import page_preparation, usable_cores
from app.engines.base import EngineLoadError, EnginePage, OcrEngine
from app.engines.context import EngineContext
from app.engines.paddleocr_vl.auth import VlmCredentials, credentials_for
from app.engines.paddleocr_vl.block_images import BlockImages
from app.engines.paddleocr_vl.buffers import reuse_page_buffers
from app.engines.paddleocr_vl.client import VlmTransport
from app.engines.paddleocr_vl.config import (
    SERVER_BACKENDS,
    check_settings,
    missing_models,
    normalise_server_url,
    page_processes,
    parameters,
    pipeline_kwargs,
    request_limit,
    required_models,
    resolve_device,
    resolve_pipeline_version,
    server_label,
)
from app.engines.paddleocr_vl.failures import (
    explain_failure,
    explain_vlm_rejection,
    is_transient_vlm_error,
    short_error,
    vlm_service_error,
)
from app.engines.paddleocr_vl.fleet import LimitKeeper
from app.engines.paddleocr_vl.limiter import GradientLimit
from app.engines.paddleocr_vl.mapping import page_from_vl_result
from app.engines.paddleocr_vl.memory import memory_for
from app.engines.paddleocr_vl.pipeline import (
    serialise_local_models,
    spare_size_copies,
    vl_recognition_model,
    warmup_page,
)
from app.engines.paddleocr_vl.processes import PageProcesses
from app.engines.paddleocr_vl.server_queue import QueueWatcher, metrics_url
from app.engines.paddleocr_vl.slots import PageGate, RequestSlots, SlotSource
from app.engines.paddleocr_vl.startup import ServerAtStart
from app.engines.paddleocr_vl.status import VlmStatus
from app.engines.pixels import bgr_array
from app.settings import Settings

log = logging.getLogger("app.engines.paddleocr_vl")  # one name for the whole engine (the guide quotes it)

#: paddlex's pipeline config for each ``pipeline_version`` (paddleocr >= 3.4 has more than v1).
_CONFIG_NAMES = {"v1": "PaddleOCR-VL"}


class PaddleOcrVlEngine(OcrEngine):
    name = "paddleocr-vl"

    def __init__(
        self,
        settings: Settings,
        context: EngineContext | None = None,
        *,
        slots: SlotSource | None = None,
        credentials: VlmCredentials | None = None,
        model: str | None = None,
    ) -> None:
        """``slots``, ``credentials`` and ``model``: a page process's engine (:mod:`.page_process`), whose requests
        take their slots and bearer values from the service process and name the model it found."""
        self._settings = settings
        self._server = settings.vl_backend in SERVER_BACKENDS
        self._credentials = credentials or (credentials_for(settings) if self._server else VlmCredentials())
        self._slots = RequestSlots(request_limit(settings))
        self._transport_slots: SlotSource = slots or self._slots
        self._page_processes = page_processes(settings, usable_cores())
        self._processes: PageProcesses | None = None
        self._gate = PageGate(self._slots) if self._server else None
        self._block_images = BlockImages() if self._server else None
        self._keeper = self._limit_keeper(context or EngineContext())
        self._watcher = self._queue_watcher()
        self._model: str | None = model  # the name requests carry, found at start
        self._one_call_at_a_time: threading.Lock | None = None  # set when the local models cannot be guarded
        self._pipeline: Any = None
        self._stop = threading.Event()
        self._at_start = ServerAtStart(settings, self._credentials, self._say, self._stop)
        self._timeout_s = settings.vl_request_timeout_s
        self.device = settings.ocr_device or "auto"

    def _say(self, detail: str) -> None:
        self.detail = detail

    def _limit_keeper(self, context: EngineContext) -> LimitKeeper | None:
        """With an adaptive limit and ``VL_LIMIT_SYNC_S`` > 0: what remembers and shares it (:mod:`.fleet`)."""
        s = self._settings
        if not self._server or not isinstance(self._slots.policy, GradientLimit) or s.vl_limit_sync_s <= 0:
            return None
        memory = memory_for(context, self._server_label())
        return None if memory is None else LimitKeeper(self._slots, memory, context.replica, s.vl_limit_sync_s)

    def _queue_watcher(self) -> QueueWatcher | None:
        """With an adaptive limit: what reads the server's queue (:mod:`.server_queue`), unless it is ``off``."""
        s = self._settings
        url = metrics_url(s.vl_server_metrics_url, normalise_server_url(s.vl_server_url)) if self._server else None
        if url is None or not isinstance(self._slots.policy, GradientLimit):
            return None
        slots = self._slots
        return QueueWatcher(url, slots.observe_queue, lambda: slots.in_flight > 0, self._credentials.cached)

    @property
    def max_parallel(self) -> int:
        """Server backends: pages for the largest request limit (a page sends at least one request)."""
        return self._slots.policy.maximum if self._server else 1

    @property
    def page_gate(self) -> PageGate | None:
        return self._gate

    @property
    def batch_size(self) -> int:
        """Native: ``VL_BATCH_PAGES`` pages of a document per pipeline call (the GPU batches them).
        Server backends: one page per call; pages of all requests run concurrently instead."""
        return 1 if self._server else self._settings.vl_batch_pages

    def _request_built_here(self, pages: int) -> bool:
        """Whether the call's one VLM request is built in this thread and leaves through the transport, so that its
        CPU turn may be held until then: a server backend, one page, no model in this process (no layout detection:
        one block, built in the calling thread, where several are built in paddlex's own thread pool; no local
        model: nothing waits for ``_one_call_at_a_time`` while holding the turn; the native backend sends nothing)."""
        return pages == 1 and not self.needs_local_models

    @property
    def needs_local_models(self) -> bool:
        """Whether any model runs in this process (then ``OCR_DEVICE`` matters)."""
        s = self._settings
        return (
            not self._server or s.vl_use_layout_detection or s.vl_use_doc_orientation_classify or s.vl_use_doc_unwarping
        )

    def vlm_status(self) -> VlmStatus | None:
        if not self._server:
            return None
        return VlmStatus(
            server=self._server_label(),
            model=self._model,
            models_offered=self._at_start.offered,
            auth=self._credentials.state(),
            concurrency=self._slots.state(),
            processes=None if self._processes is None else self._processes.state(),
        )

    # --- loading -------------------------------------------------------------------------------
    def load(self) -> None:
        s = self._settings
        check_settings(s)
        if self._page_processes:
            self._load_page_processes()
            return
        self.detail = "importing paddleocr"
        try:
            import paddleocr
            from paddleocr import PaddleOCRVL
        except ImportError as exc:
            raise EngineLoadError(
                "paddleocr is not installed: use the GPU image, or pip install 'paddleocr[doc-parser]' "
                "and paddlepaddle(-gpu); or set OCR_ENGINE=pp-ocr"
            ) from exc
        if self._keeper is not None:
            self._keeper.join()  # before the slow part, so replicas starting together see each other
        version = resolve_pipeline_version(s.vl_pipeline_version, PaddleOCRVL, paddleocr.__version__)
        local_device = resolve_device(s.ocr_device) if self.needs_local_models else (s.ocr_device or "cpu")
        self.device = f"{local_device}; VLM: {s.vl_backend}" if self._server else local_device
        if not self._server and local_device == "cpu":
            log.warning("paddleocr-vl: the VLM runs natively on the CPU; expect minutes per page")
        if self._server and self._model is None:
            self._model = self._at_start.find_model()

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
            genai["max_concurrency"] = 1000  # paddlex's own semaphore (200) must not cap our limit

        supports_version = "pipeline_version" in parameters(PaddleOCRVL)
        kwargs = pipeline_kwargs(s, local_device, supports_version=supports_version, model_name=self._model)
        self.detail = f"creating the pipeline (paddleocr {paddleocr.__version__}, {version}) on {local_device}"
        log.info("paddleocr-vl: %s", self.detail)
        try:
            self._pipeline = PaddleOCRVL(paddlex_config=config, **kwargs)
            self._prepare_pipeline()
            self._start_limit()
            self._warm_up()
        except EngineLoadError:
            raise
        except Exception as exc:
            if self._stop.is_set():
                raise EngineLoadError("stopped while initialising") from exc
            raise EngineLoadError(explain_failure(exc, missing=missing, models_dir=models_dir)) from exc
        finally:
            self.detail = None

    def _load_page_processes(self) -> None:
        """The pipelines in page processes (:mod:`.processes`); this process keeps the limit and its helpers."""
        if self._keeper is not None:
            self._keeper.join()
        self._model = self._at_start.find_model()
        self._start_limit()
        count = self._page_processes
        self.detail = f"starting {count} page process{'es' if count > 1 else ''} (paddleocr-vl pipelines)"
        log.info("paddleocr-vl: %s", self.detail)
        processes = PageProcesses(count, self._settings, self._model, self._slots, self._credentials)
        self._processes = processes
        try:
            processes.start(self._stop)
        finally:
            self.detail = None
        self.device = processes.processes[0].info.get("device", self.device)  # /health shows the processes apart

    def _prepare_pipeline(self) -> None:
        """Its local models guarded for concurrent pages (server backends), needless copies spared: block images
        encoded by the engine (:mod:`.block_images`), block sizes read, not copied."""
        if not spare_size_copies():
            log.info("paddleocr-vl: this paddlex's calc_merged_wh is left as it is")
        if self._block_images is not None:
            model = vl_recognition_model(self._pipeline)
            if model is None or not self._block_images.install(model, self._settings.vl_backend):
                log.info("paddleocr-vl: paddlex encodes the block images (this version cannot be handed them)")
        if self._server and self.needs_local_models and not serialise_local_models(self._pipeline):
            log.warning("paddleocr-vl: cannot guard the local models of this paddlex version; one call at a time")
            self._one_call_at_a_time = threading.Lock()

    def _start_limit(self) -> None:
        """Server backends: page buffers kept for reuse (pages stream through this process); where the limit starts
        (the fleet's share, the last run's, or the default), then keep it shared and watch the server's queue."""
        if not self._server:
            return
        kept = reuse_page_buffers()
        if kept:
            log.info("paddleocr-vl: page buffers reused: %s", "; ".join(kept))
        for helper in (self._keeper, self._watcher):
            if helper is not None:
                helper.start()

    def _client_kwargs(self) -> dict[str, Any]:
        if not log.isEnabledFor(logging.DEBUG):  # httpx logs every VLM request (one per block) at INFO
            logging.getLogger("httpx").setLevel(logging.WARNING)
        transport = VlmTransport(
            self._timeout_s,
            self._credentials,
            self._transport_slots,
            attempts=self._settings.vl_request_attempts,
            block_images=self._block_images,
        )
        return {"max_retries": 0, "http_client": httpx.AsyncClient(transport=transport, timeout=self._timeout_s)}

    def _warm_up(self) -> None:
        """One inference on a small generated page, so the first request does not pay for compilation.

        With a server backend this is also the check that completions work. Connection errors, 5xx and
        timeouts mean "not up yet": retried with backoff for as long as it takes, ``/health`` showing what
        we wait for. A 4xx is a configuration error: failed.
        """
        page = [bgr_array(warmup_page())]
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
                self._at_start.wait_to_retry(attempt, short_error(exc))
        if self.needs_local_models:
            self._pipeline.predict(page, use_queues=False)  # the layout / preprocessing models too
        log.info("paddleocr-vl: warm-up done")

    def _server_label(self) -> str:
        return server_label(self._settings.vl_server_url)

    # --- recognition ---------------------------------------------------------------------------
    def recognize(self, images: Sequence[Image.Image], languages: Sequence[str]) -> list[EnginePage]:
        """All pages in one pipeline call (it batches them, and their VLM requests run concurrently); the
        VLM reads every language, so ``languages`` is not needed.

        VLM server failures raise :class:`VlmUnavailable`, :class:`VlmFailed`, :class:`VlmTimeout` or
        :class:`VlmAuthFailed` (no token for the server); other failures propagate.
        """
        if self._processes is not None:
            with page_preparation.turn():  # CPU turns (app.cpu_turns): the conversions
                arrays = [bgr_array(image) for image in images]
            return self._processes.recognize(arrays)
        return self._recognize(images)

    def recognize_arrays(self, arrays: Sequence[np.ndarray]) -> list[EnginePage]:
        """:meth:`recognize` for pages already made BGR arrays (a page process's pages)."""
        return self._recognize(arrays)

    def _recognize(self, pages: Sequence[Image.Image] | Sequence[np.ndarray]) -> list[EnginePage]:
        turn = page_preparation.take()  # CPU turns (app.cpu_turns): the conversions below, then building the request
        try:
            if self._pipeline is None:
                raise RuntimeError("the paddleocr-vl engine is not loaded")
            arrays = [page if isinstance(page, np.ndarray) else bgr_array(page) for page in pages]
            if not self._request_built_here(len(arrays)):
                turn.release()
            with turn.until_request_leaves():  # the VLM transport gives the turn back as the request leaves
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
        finally:
            turn.release()
        if len(results) != len(arrays):
            raise RuntimeError(f"the pipeline returned {len(results)} results for {len(arrays)} pages")
        return [page_from_vl_result(result.json["res"], result.markdown) for result in results]

    def close(self) -> None:
        self._stop.set()
        if self._processes is not None:
            self._processes.close()
        for helper in (self._watcher, self._keeper):
            if helper is not None:
                helper.stop()
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            try:
                pipeline.close()
            except Exception as exc:  # shutting down: report, do not raise
                log.warning("paddleocr-vl: close failed: %r", exc)
