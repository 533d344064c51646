"""The paddleocr-vl engine's failures as sentences, pure: loading failures with the fix, VLM request failures as
:class:`~app.engines.errors.EngineError` (what :data:`app.errors.ENGINE_ERRORS` maps to HTTP)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from app.engines.errors import EngineError, VlmAuthFailed, VlmFailed, VlmTimeout, VlmUnavailable
from app.engines.paddleocr_vl.auth import VlmAuthError
from app.engines.paddleocr_vl.client import ATTEMPTS_HEADER, VlmConnectionFailed

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
    chain = list(_exception_chain(exc))
    if any(isinstance(error, VlmAuthError) for error in chain):  # no token: details in /health
        return VlmAuthFailed("no credential for the VLM server; retry later")
    failed = next((error for error in chain if isinstance(error, VlmConnectionFailed)), None)
    for error in chain:
        if isinstance(error, openai.APITimeoutError):
            return VlmTimeout(
                f"the VLM server did not answer within {timeout_s:g} s (VL_REQUEST_TIMEOUT_S); retry later"
            )
        if isinstance(error, (openai.APIConnectionError, VlmConnectionFailed)):
            tried = f" ({failed.attempts} attempts)" if failed is not None else ""
            return VlmUnavailable(f"the VLM server cannot be reached{tried}; retry later")
        if isinstance(error, openai.APIStatusError):
            attempts = error.response.headers.get(ATTEMPTS_HEADER)
            tried = f" ({attempts} attempts)" if attempts else ""
            return VlmFailed(f"the VLM server answered HTTP {error.status_code}{tried}", error.status_code)
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
