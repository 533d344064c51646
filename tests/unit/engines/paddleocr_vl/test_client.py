"""HTTP to the VLM server: the start-up model check and the pipeline's transport (token, slot, deadline,
outcome), against the VLM stand-in and the IAM stand-in over real HTTP."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.engines.base import EngineLoadError
from app.engines.paddleocr_vl.auth import IamTokens, StaticKey, VlmCredentials
from app.engines.paddleocr_vl.block_images import PLACEHOLDER_PREFIX, BlockImages, UnknownBlockImage
from app.engines.paddleocr_vl.client import (
    ATTEMPTS_HEADER,
    BACKOFF_CAP_S,
    BACKOFF_S,
    VlmConnectionFailed,
    VlmServerNotReady,
    VlmTransport,
    backoff_s,
    choose_model,
    list_models,
    outcome_of,
)
from app.engines.paddleocr_vl.limiter import FixedLimit, GradientLimit
from app.engines.paddleocr_vl.slots import RequestSlots
from tests.support.cloud import IAM_PATH, IamState, iam_app
from tests.support.server import ThreadServer
from tests.support.vlm_standin import VlmStandin

KEY_ID, SECRET = "client-key", "client-secret-77"  # pragma: allowlist secret
MODEL = "PaddlePaddle/PaddleOCR-VL"
PAGE = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
)


def test_choose_model() -> None:
    assert choose_model("", [MODEL]) == MODEL
    assert choose_model("PaddleOCR-VL-0.9B", ["PaddleOCR-VL-0.9B", "other"]) == "PaddleOCR-VL-0.9B"
    assert choose_model("", ["qwen", "my-PaddleOCR-VL"]) == "my-PaddleOCR-VL"
    with pytest.raises(EngineLoadError, match=f"VL_MODEL_NAME=PaddleOCR-VL-0.9B .* offers: {MODEL}"):
        choose_model("PaddleOCR-VL-0.9B", [MODEL])
    with pytest.raises(EngineLoadError, match=r"several models \(a, b\): set VL_MODEL_NAME"):
        choose_model("", ["a", "b"])
    with pytest.raises(VlmServerNotReady):
        choose_model("", [])  # still loading


def test_outcomes() -> None:
    assert [outcome_of(s) for s in (200, 400, 401, 404, 429, 500, 502, 503, 504)] == [
        "ok", "error", "error", "error", "overload", "error", "overload", "overload", "overload"
    ]  # fmt: skip


@pytest.fixture(scope="module")
def iam() -> Iterator[tuple[IamState, str]]:
    state = IamState(KEY_ID, SECRET, ttl_s=1.0)
    with ThreadServer(iam_app(state)) as server:
        yield state, server.url + IAM_PATH


@pytest.fixture
def vlm(iam: tuple[IamState, str]) -> Iterator[VlmStandin]:
    with VlmStandin(model_id=MODEL, reply="stand-in text", authorize=iam[0].valid) as server:
        yield server


def test_models_are_listed_with_an_iam_token(iam: tuple[IamState, str], vlm: VlmStandin) -> None:
    tokens = IamTokens(KEY_ID, SECRET, iam[1])
    assert list_models(vlm.url, tokens, 10) == [MODEL]


def test_model_check_failures_say_what_to_fix(vlm: VlmStandin) -> None:
    with pytest.raises(EngineLoadError, match=r"refused our credentials .*HTTP 401.*VL_API_KEY"):
        list_models(vlm.url, StaticKey("wrong"), 10)
    with pytest.raises(EngineLoadError, match="wants a credential: set VL_API_KEY, or VL_IAM_KEY_ID"):
        list_models(vlm.url, VlmCredentials(), 10)
    with pytest.raises(EngineLoadError, match=r"HTTP 404: check VL_SERVER_URL"):
        list_models(vlm.url.removesuffix("/v1") + "/api", StaticKey("x"), 10)
    vlm.stop()
    with pytest.raises(VlmServerNotReady, match="ConnectError"):
        list_models(vlm.url, StaticKey("x"), 10)


def complete(transport: VlmTransport, url: str, requests: int, gap_s: float = 0.0, page: str = PAGE) -> list[int]:
    """``requests`` chat completions through the transport, ``gap_s`` apart; their HTTP statuses."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": page}},
                                                  {"type": "text", "text": "OCR:"}]}],
    }  # fmt: skip

    async def run() -> list[int]:
        statuses = []
        async with httpx.AsyncClient(transport=transport, base_url=url) as client:
            for _ in range(requests):
                statuses.append((await client.post("/chat/completions", json=body, timeout=600)).status_code)
                await asyncio.sleep(gap_s)
        return statuses

    return asyncio.run(run())


def test_tokens_that_expire_every_second_are_renewed_in_time(iam: tuple[IamState, str], vlm: VlmStandin) -> None:
    state, url = iam
    issued = state.issued
    tokens = IamTokens(KEY_ID, SECRET, url)
    slots = RequestSlots(GradientLimit(16))
    statuses = complete(VlmTransport(30, tokens, slots), vlm.url, requests=16, gap_s=0.2)  # ~3.5 s: 3+ tokens
    assert statuses == [200] * 16
    assert state.issued - issued >= 3  # renewed before expiry (a 401 on a heavily loaded machine is recovered)
    assert vlm.rejected <= 2
    assert slots.state().requests == {"ok": 16, "overload": 0, "error": 0} and slots.in_flight == 0


def test_a_401_is_answered_by_one_renewal_and_the_request_goes_again(
    iam: tuple[IamState, str], vlm: VlmStandin
) -> None:
    state, url = iam
    tokens = IamTokens(KEY_ID, SECRET, url)
    transport = VlmTransport(30, tokens, RequestSlots(FixedLimit(4)))
    assert complete(transport, vlm.url, 1) == [200]
    time.sleep(0.2)  # no longer brand new
    state.tokens.clear()  # IAM revokes it: the server answers 401 to the cached token
    issued = state.issued
    assert complete(transport, vlm.url, 1) == [200]
    assert vlm.rejected == 1 and state.issued == issued + 1


def test_overload_and_deadline_reach_the_limit(vlm: VlmStandin) -> None:
    vlm.api_key, vlm.authorize = "k", None
    slots = RequestSlots(FixedLimit(4))
    vlm.fail_status = 503
    assert complete(VlmTransport(30, StaticKey("k"), slots, attempts=1), vlm.url, 2) == [503, 503]
    vlm.fail_status, vlm.delay_s = None, 5
    began = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        complete(VlmTransport(0.5, StaticKey("k"), slots), vlm.url, 1)
    assert time.monotonic() - began < 4  # VL_REQUEST_TIMEOUT_S replaced the client's 600 s
    assert slots.state().requests == {"ok": 0, "overload": 3, "error": 0} and slots.in_flight == 0


def test_transient_faults_are_retried_and_counted_as_overload(vlm: VlmStandin) -> None:
    """A reset connection, a 502, a 503 and a 504 (server or gateway), each answered by another attempt after a
    backoff; each counts as overload for the limit; the page comes back."""
    vlm.api_key, vlm.authorize = "k", None
    slots = RequestSlots(FixedLimit(4))
    transport = VlmTransport(30, StaticKey("k"), slots, attempts=5, first_backoff_s=0.02)
    vlm.faults.extend(["reset", 502, 503, 504])
    assert complete(transport, vlm.url, 1) == [200]
    assert not vlm.faults and len(vlm.requests) == 1
    state = slots.state()
    assert state.requests == {"ok": 1, "overload": 4, "error": 0} and state.retries == 4 and slots.in_flight == 0


def test_retries_are_bounded_then_the_reason_comes_back(vlm: VlmStandin) -> None:
    vlm.api_key, vlm.authorize = "k", None
    slots = RequestSlots(FixedLimit(4))
    transport = VlmTransport(30, StaticKey("k"), slots, attempts=3, first_backoff_s=0.02)
    vlm.faults.extend([503, 503, 503, 503])

    async def one() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url=vlm.url) as client:
            return await client.post("/chat/completions", json={"model": MODEL, "messages": []})

    answer = asyncio.run(one())
    assert answer.status_code == 503 and answer.headers[ATTEMPTS_HEADER] == "3" and len(vlm.faults) == 1
    vlm.faults.clear()
    vlm.fail_status = 500  # not transient: one attempt
    assert complete(transport, vlm.url, 1) == [500] and slots.state().requests["error"] == 1
    vlm.stop()
    with pytest.raises(VlmConnectionFailed) as failed:
        complete(transport, vlm.url, 1)
    assert failed.value.attempts == 3
    assert slots.state().retries == 2 + 2 and slots.in_flight == 0


def test_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    rng = random.Random(1)
    waits = [backoff_s(attempt, rng=rng) for attempt in (1, 2, 3, 4, 5, 6)]
    for attempt, wait in enumerate(waits, start=1):
        base = min(BACKOFF_CAP_S, BACKOFF_S * 2 ** (attempt - 1))
        assert base / 2 <= wait <= base
    assert len({round(w, 6) for w in waits}) == len(waits)
    assert backoff_s(1, "5", rng=rng) == 5.0 and backoff_s(1, "600", rng=rng) == BACKOFF_CAP_S
    assert backoff_s(1, "Wed, 21 Oct 2015 07:28:00 GMT", rng=rng) <= 1.0


def test_the_transport_puts_parked_block_images_in_before_the_request_leaves(vlm: VlmStandin) -> None:
    """A placeholder (app.engines.paddleocr_vl.block_images) becomes the data URI in the body the server reads, with
    its length; one nobody parked fails the request before it is sent."""
    vlm.api_key, vlm.authorize = "k", None
    vlm.reset()
    images = BlockImages()
    transport = VlmTransport(30, StaticKey("k"), RequestSlots(FixedLimit(4)), block_images=images)
    assert complete(transport, vlm.url, 1, page=images.park(PAGE)) == [200]
    assert [request["size"] for request in vlm.requests] == [(1, 1)] and images.waiting == 0
    with pytest.raises(UnknownBlockImage):
        complete(transport, vlm.url, 1, page=PLACEHOLDER_PREFIX + "999")
    assert len(vlm.requests) == 1
