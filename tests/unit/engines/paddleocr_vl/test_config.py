"""The paddleocr-vl engine's pure parts: settings -> pipeline arguments, error classification, messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from app.api.errors import http_headers, http_status
from app.engines.base import EngineLoadError
from app.engines.errors import EngineError, VlmAuthFailed, VlmFailed, VlmTimeout, VlmUnavailable
from app.engines.paddleocr_vl.auth import VlmAuthError
from app.engines.paddleocr_vl.config import (
    check_settings,
    missing_models,
    normalise_server_url,
    pipeline_kwargs,
    required_models,
    resolve_pipeline_version,
)
from app.engines.paddleocr_vl.failures import (
    explain_failure,
    explain_vlm_rejection,
    is_transient_vlm_error,
    short_error,
    vlm_service_error,
)
from app.engines.paddleocr_vl.pipeline import SerializedCalls
from app.errors import engine_failure
from app.settings import Settings

REQUEST = httpx.Request("POST", "http://vlm:8080/v1/chat/completions")


def status_error(status: int) -> openai.APIStatusError:
    classes = {500: openai.InternalServerError, 404: openai.NotFoundError, 401: openai.AuthenticationError}
    return classes[status](f"Error code: {status}", response=httpx.Response(status, request=REQUEST), body=None)


def server_settings(**values: Any) -> Settings:
    return Settings(vl_backend="vllm-server", vl_server_url="http://vlm:8080/v1", **values)


def test_contradictory_settings_are_refused_with_the_fix() -> None:
    with pytest.raises(EngineLoadError, match="needs VL_SERVER_URL"):
        check_settings(Settings(vl_backend="sglang-server"))
    with pytest.raises(EngineLoadError, match="set VL_BACKEND=vllm-server"):
        check_settings(Settings(vl_server_url="http://vlm:8080/v1"))
    with pytest.raises(EngineLoadError, match="one device"):
        check_settings(Settings(ocr_device="gpu:0,1"))
    with pytest.raises(EngineLoadError, match="set both VL_IAM_KEY_ID and VL_IAM_SECRET"):
        check_settings(server_settings(vl_iam_key_id="key-id"))
    with pytest.raises(EngineLoadError, match="not both"):
        check_settings(
            server_settings(vl_iam_key_id="k", vl_iam_secret="s", vl_api_key="a")
        )  # pragma: allowlist secret
    with pytest.raises(EngineLoadError, match="are for a VLM server"):
        check_settings(Settings(vl_iam_key_id="k", vl_iam_secret="s"))  # pragma: allowlist secret
    check_settings(server_settings())
    check_settings(server_settings(vl_iam_key_id="k", vl_iam_secret="s"))  # pragma: allowlist secret
    check_settings(Settings())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://vlm:8080", "http://vlm:8080/v1"),
        ("http://vlm:8080/", "http://vlm:8080/v1"),
        ("http://vlm:8080/v1/", "http://vlm:8080/v1"),
        (" https://gw.example/ocr/v1 ", "https://gw.example/ocr/v1"),
    ],
)
def test_server_url(url: str, expected: str) -> None:
    assert normalise_server_url(url) == expected


class Old:  # paddleocr 3.3: no pipeline_version
    def __init__(self, vl_rec_backend: str | None = None) -> None: ...


class New:  # paddleocr >= 3.4
    def __init__(self, pipeline_version: str = "v1.6") -> None: ...


def test_pipeline_version() -> None:
    assert resolve_pipeline_version("", Old, "3.3.3") == "v1"
    assert resolve_pipeline_version("v1", Old, "3.3.3") == "v1"
    with pytest.raises(EngineLoadError, match=r"VL_PIPELINE_VERSION=v1.5 needs a newer paddleocr \(installed: 3.3.3"):
        resolve_pipeline_version("v1.5", Old, "3.3.3")
    assert resolve_pipeline_version("", New, "3.7.0") == "v1.6"
    assert resolve_pipeline_version("v1.5", New, "3.7.0") == "v1.5"


def test_pipeline_kwargs_for_a_server() -> None:
    settings = server_settings(
        vl_model_name="paddleocr-vl",
        vl_api_key="sk-secret",  # pragma: allowlist secret
        vl_use_layout_detection=False,
        vl_pipeline_version="v1",
    )
    kwargs = pipeline_kwargs(settings, "cpu", supports_version=False, model_name="paddleocr-vl")
    assert kwargs == {  # the key is not among them: the engine's transport sends it
        "vl_rec_backend": "vllm-server",
        "vl_rec_server_url": "http://vlm:8080/v1",
        "vl_rec_api_model_name": "paddleocr-vl",
        "use_layout_detection": False,
        "use_doc_orientation_classify": False,
        "use_doc_unwarping": False,
        "device": "cpu",
    }
    assert pipeline_kwargs(settings, "cpu", supports_version=True)["pipeline_version"] == "v1"
    # The name found on the server wins over an empty VL_MODEL_NAME.
    served = pipeline_kwargs(server_settings(), "cpu", supports_version=False, model_name="PaddlePaddle/PaddleOCR-VL")
    assert served["vl_rec_api_model_name"] == "PaddlePaddle/PaddleOCR-VL"


def test_pipeline_kwargs_native_leaves_server_options_out() -> None:
    kwargs = pipeline_kwargs(Settings(vl_use_doc_unwarping=True), "gpu:0", supports_version=True)
    assert kwargs["vl_rec_backend"] == "native" and kwargs["device"] == "gpu:0"
    assert kwargs["use_doc_unwarping"] is True
    assert not {"vl_rec_server_url", "vl_rec_api_key", "vl_rec_api_model_name", "pipeline_version"} & set(kwargs)


def test_required_and_missing_models(tmp_path: Path) -> None:
    from paddlex.inference import load_pipeline_config

    config = load_pipeline_config("PaddleOCR-VL")  # the installed paddlex's own pipeline config
    assert required_models(config, Settings()) == ["PP-DocLayoutV2", "PaddleOCR-VL-0.9B"]
    assert required_models(config, server_settings()) == ["PP-DocLayoutV2"]
    assert required_models(config, server_settings(vl_use_layout_detection=False)) == []
    everything = Settings(vl_use_doc_orientation_classify=True, vl_use_doc_unwarping=True)
    assert required_models(config, everything) == [
        "PP-LCNet_x1_0_doc_ori",
        "UVDoc",
        "PP-DocLayoutV2",
        "PaddleOCR-VL-0.9B",
    ]
    (tmp_path / "PP-DocLayoutV2").mkdir()
    (tmp_path / "PP-DocLayoutV2" / "inference.json").write_text("{}")
    (tmp_path / "UVDoc").mkdir()  # empty: an interrupted download
    assert missing_models(tmp_path, ["PP-DocLayoutV2", "UVDoc", "PaddleOCR-VL-0.9B"]) == ["UVDoc", "PaddleOCR-VL-0.9B"]


def http(error: EngineError | None) -> tuple[int, str, str | None]:
    """What the client gets for an engine error (through the one table in app.errors)."""
    assert error is not None
    answer = engine_failure(error, [1], "paddleocr-vl")
    return http_status(answer), answer.code, http_headers(answer).get("Retry-After")


def test_vlm_errors_become_502_and_504() -> None:
    timeout = vlm_service_error(openai.APITimeoutError(request=REQUEST), 7)
    assert isinstance(timeout, VlmTimeout) and http(timeout) == (504, "vlm_timeout", "30")
    assert "7 s" in timeout.message
    refused = vlm_service_error(openai.APIConnectionError(request=REQUEST), 7)
    assert isinstance(refused, VlmUnavailable) and http(refused) == (502, "vlm_unavailable", "10")
    failed = vlm_service_error(status_error(500), 7)
    assert isinstance(failed, VlmFailed) and http(failed) == (502, "vlm_error", None) and "500" in failed.message
    for error in (timeout, refused, failed):
        assert "vlm:8080" not in error.message  # the server's address is internal
        assert engine_failure(error, [1], "paddleocr-vl").message == error.message
    assert vlm_service_error(ValueError("bad page"), 7) is None


def test_vlm_error_found_in_the_cause_chain() -> None:
    try:
        try:
            raise openai.APIConnectionError(request=REQUEST)
        except openai.APIConnectionError as inner:
            raise RuntimeError("Exception from the 'vlm' worker: Connection error.") from inner
    except RuntimeError as outer:
        wrapped = outer
    error = vlm_service_error(wrapped, 7)
    assert isinstance(error, VlmUnavailable)


def test_no_token_for_the_vlm_server_is_its_own_502() -> None:
    """The transport's VlmAuthError reaches us wrapped by openai as a connection error: not 'unreachable'."""
    try:
        try:
            raise VlmAuthError("IAM refused the key pair (HTTP 401): check VL_IAM_KEY_ID", refused=True)
        except VlmAuthError as inner:
            raise openai.APIConnectionError(request=REQUEST) from inner
    except openai.APIConnectionError as outer:
        error = vlm_service_error(outer, 7)
    assert isinstance(error, VlmAuthFailed) and http(error) == (502, "vlm_auth", "60")
    assert "VL_IAM" not in error.message  # the details are in /health


def test_transient_errors_are_retried_at_start_and_4xx_are_not() -> None:
    assert is_transient_vlm_error(openai.APIConnectionError(request=REQUEST))
    assert is_transient_vlm_error(openai.APITimeoutError(request=REQUEST))
    assert is_transient_vlm_error(status_error(500))
    assert not is_transient_vlm_error(status_error(404))
    assert not is_transient_vlm_error(status_error(401))
    assert not is_transient_vlm_error(RuntimeError("CUDA error"))


def test_rejections_name_the_setting_to_fix() -> None:
    assert "VL_API_KEY" in explain_vlm_rejection(status_error(401), "http://vlm:8080/v1")
    not_found = explain_vlm_rejection(status_error(404), "http://vlm:8080/v1")
    assert "VL_MODEL_NAME" in not_found and "VL_SERVER_URL" in not_found and "HTTP 404" in not_found


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("(External) CUDA error(209), no kernel image is available for execution on the device.", "sm120 image"),
        ("Mismatched GPU architecture: paddle was built for sm_80, the GPU is sm_120", "CUDA/architecture mismatch"),
        ("CUDA driver version is insufficient for CUDA runtime version", "driver is too old"),
        ("(ResourceExhausted) Out of memory error on GPU 0", "ran out of memory"),
    ],
)
def test_load_failures_are_explained(message: str, expected: str) -> None:
    text = explain_failure(RuntimeError(message))
    assert expected in text and message[:30] in text


def test_missing_models_are_named_with_the_folder() -> None:
    text = explain_failure(
        RuntimeError("No available model hosting platforms detected"),
        missing=["PP-DocLayoutV2"],
        models_dir=Path("/home/paddleocr/.paddlex/official_models"),
    )
    assert "models missing under /home/paddleocr/.paddlex/official_models: PP-DocLayoutV2" in text
    assert "PADDLE_PDX_CACHE_HOME" in text
    assert explain_failure(ValueError("plain")) == "ValueError: plain"


def test_short_error_is_one_bounded_line() -> None:
    assert short_error(RuntimeError("a\n  b")) == "RuntimeError: a b"
    assert len(short_error(RuntimeError("x" * 1000))) == 300
    assert short_error(KeyError()) == "KeyError"


def test_serialized_calls_run_one_at_a_time_and_forward_attributes() -> None:
    running = 0
    most = 0
    guard = threading.Lock()

    class Model:
        batch_size = 8

        def __call__(self, items: list[int]) -> Iterator[int]:
            nonlocal running, most
            with guard:
                running += 1
                most = max(most, running)
            time.sleep(0.02)
            yield from items
            with guard:
                running -= 1

    model = SerializedCalls(Model(), threading.Lock())
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(model([1, 2]))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1
    assert results == [[1, 2]] * 6  # generators are consumed under the lock
    assert model.batch_size == 8
