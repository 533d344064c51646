"""The VLM server's credential: IAM tokens from the IAM stand-in (real HTTP, the documented contract), cached,
renewed before expiry and after a 401, and a refused key that does not turn into a storm of exchanges."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from app.engines.paddleocr_vl.auth import IamTokens, StaticKey, VlmAuthError, VlmCredentials, credentials_for
from app.iam import refresh_margin
from app.settings import Settings
from tests.support.cloud import IAM_PATH, IamState, iam_app
from tests.support.server import ThreadServer

KEY_ID = "vl-key-id"
SECRET = "vl-secret-4b1d"  # pragma: allowlist secret


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Iam:
    state: IamState
    url: str


@pytest.fixture(scope="module")
def iam() -> Iterator[Iam]:
    state = IamState(KEY_ID, SECRET, ttl_s=3600)
    with ThreadServer(iam_app(state)) as server:
        yield Iam(state, server.url + IAM_PATH)


def test_a_token_is_cached_and_renewed_before_it_expires(iam: Iam) -> None:
    clock = Clock()
    tokens = IamTokens(KEY_ID, SECRET, iam.url, clock=clock)
    assert tokens.cached() is None  # nothing yet: the caller must exchange (off the event loop)
    first = tokens.token()
    assert iam.state.valid(first) and tokens.cached() == first
    clock.now += 3600 - refresh_margin(3600) - 1
    assert tokens.token() == first and tokens.renewals == 1
    clock.now += 2  # within the margin (300 s) before expiry
    assert tokens.cached() is None
    second = tokens.token()
    assert second != first and iam.state.valid(second) and tokens.renewals == 2
    state = tokens.state()
    assert state.mode == "iam" and state.valid_until and state.renewed_at and state.last_error is None
    assert first not in repr(state) and second not in repr(state) and SECRET not in repr(state)


def test_after_a_401_one_renewal_serves_every_request(iam: Iam) -> None:
    clock = Clock()
    tokens = IamTokens(KEY_ID, SECRET, iam.url, clock=clock)
    old = tokens.token()
    clock.now += 60  # not brand new: a 401 means it is no longer accepted
    issued = iam.state.issued
    fresh = tokens.renew_after_rejection(old)
    assert fresh is not None and fresh != old
    assert tokens.renew_after_rejection(old) == fresh  # the other requests that got a 401 for `old`
    assert iam.state.issued == issued + 1
    assert tokens.renew_after_rejection(fresh) is None  # refused while brand new: access, not expiry


def test_a_refused_key_fails_clearly_and_is_not_retried_at_once(iam: Iam) -> None:
    clock = Clock()
    wrong = "not-the-secret"  # pragma: allowlist secret
    tokens = IamTokens(KEY_ID, wrong, iam.url, clock=clock)
    calls = iam.state.requests
    with pytest.raises(VlmAuthError, match=r"HTTP 401.*VL_IAM_KEY_ID and VL_IAM_SECRET") as failure:
        tokens.token()
    assert failure.value.refused and wrong not in str(failure.value)
    for _ in range(50):  # every page would ask: within the backoff nobody calls IAM
        with pytest.raises(VlmAuthError):
            tokens.token()
    assert iam.state.requests == calls + 1
    clock.now += 1.0  # the first backoff (1 s) is over: one more try, then 2 s
    with pytest.raises(VlmAuthError):
        tokens.token()
    clock.now += 1.5
    with pytest.raises(VlmAuthError):
        tokens.token()
    assert iam.state.requests == calls + 2
    state = tokens.state()
    assert state.last_error and "HTTP 401" in state.last_error and state.valid_until is None


def test_an_unreachable_iam_is_not_a_refusal() -> None:
    tokens = IamTokens(KEY_ID, SECRET, "http://127.0.0.1:9/api/v1/auth/token", timeout=2)
    with pytest.raises(VlmAuthError, match="unreachable") as failure:
        tokens.token()
    assert not failure.value.refused


def test_a_token_still_valid_is_used_while_renewal_fails(iam: Iam) -> None:
    clock = Clock()
    tokens = IamTokens(KEY_ID, SECRET, iam.url, clock=clock)
    first = tokens.token()
    tokens.url = "http://127.0.0.1:9/api/v1/auth/token"  # IAM goes away
    clock.now += 3600 - 100  # due for renewal, 100 s of life left
    assert tokens.token() == first  # renewal failed; the old token still works
    assert tokens.state().last_error is not None
    clock.now += 200  # now it has expired, and the backoff is over: the failure shows
    with pytest.raises(VlmAuthError, match="unreachable"):
        tokens.token()


def test_credentials_from_settings() -> None:
    server = {"vl_backend": "vllm-server", "vl_server_url": "http://vlm:8000/v1"}
    assert type(credentials_for(Settings(**server))) is VlmCredentials
    static = credentials_for(Settings(**server, vl_api_key="sk-1"))  # pragma: allowlist secret
    assert isinstance(static, StaticKey) and static.cached() == "sk-1" and static.state().mode == "api_key"
    iam = credentials_for(Settings(**server, vl_iam_key_id="k", vl_iam_secret="s"))  # pragma: allowlist secret
    assert isinstance(iam, IamTokens) and iam.url == "https://iam.api.cloud.ru/api/v1/auth/token"
