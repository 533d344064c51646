"""The client's Cloud.ru auth against the IAM and gateway stand-ins: exchange, refresh before expiry,
recovery from a 401, both auth layers at once, and refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.client.api import DeploymentClient
from app.client.auth import AuthError, IamTokenSource, ServiceAuth
from tests.support.cloud import IAM_PATH, GatewayState, IamState, gateway_app, iam_app
from tests.support.server import ThreadServer

pytestmark = pytest.mark.integration

KEY_ID, SECRET = "auth-key-id", "auth-secret"  # pragma: allowlist secret
SERVICE_KEY = "service-key"  # pragma: allowlist secret


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {"authorization": request.headers.get("authorization"), "api_key": request.headers.get("x-api-key"),
         "body_bytes": len(body)}
    )  # fmt: skip


@dataclass
class Stand:
    iam: IamState
    iam_url: str
    gateway: GatewayState
    url: str


@pytest.fixture
def stand() -> Iterator[Stand]:
    iam = IamState(KEY_ID, SECRET, ttl_s=0.5)
    upstream_app = Starlette(routes=[Route("/echo", echo, methods=["GET", "POST"])])
    with ThreadServer(upstream_app) as upstream:
        gateway = GatewayState(iam, upstream.url)
        with ThreadServer(iam_app(iam)) as iam_server, ThreadServer(gateway_app(gateway)) as gateway_server:
            yield Stand(iam, iam_server.url + IAM_PATH, gateway, gateway_server.url)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_is_reused_then_replaced_before_expiry(stand: Stand) -> None:
    clock = FakeClock()
    source = IamTokenSource(KEY_ID, SECRET, stand.iam_url, clock=clock)
    first = source.token()
    assert stand.iam.valid(first) and source.expires_in == 0.5
    clock.now += 0.4  # within its life, before the refresh margin (0.05 s before expiry)
    assert source.token() == first
    clock.now += 0.06
    second = source.token()
    assert second != first and stand.iam.issued == 2 == source.issued


def test_a_401_gets_a_fresh_token_and_the_upload_is_sent_again(stand: Stand) -> None:
    frozen = FakeClock()  # the source never thinks its token is old: only the gateway's 401 tells it
    source = IamTokenSource(KEY_ID, SECRET, stand.iam_url, clock=frozen)
    with DeploymentClient(stand.url, ServiceAuth(source, SERVICE_KEY)) as client:
        first = client.request("GET", "/echo").json()
        assert first["authorization"].startswith("Bearer ") and first["api_key"] == SERVICE_KEY
        time.sleep(0.6)  # the token expires at the gateway
        response = client.request("POST", "/echo", files={"file": ("a.bin", b"x" * 5000)})
    assert response.status_code == 200
    assert response.json()["body_bytes"] > 5000  # the multipart body arrived whole on the second try
    assert response.json()["authorization"] != first["authorization"]
    assert stand.gateway.rejected == 1 and stand.iam.issued == 2


def test_a_wrong_secret_is_refused_with_the_variables_named(stand: Stand) -> None:
    source = IamTokenSource(KEY_ID, "wrong", stand.iam_url)
    with pytest.raises(AuthError, match=r"HTTP 401.*CLOUD_RU_IAM_KEY_ID and CLOUD_RU_IAM_SECRET"):
        source.token()
    with DeploymentClient(stand.url, ServiceAuth(source)) as client, pytest.raises(AuthError):
        client.request("GET", "/echo")
    assert stand.iam.refused == 2 and stand.gateway.forwarded == 0


def test_an_unreachable_token_service(stand: Stand) -> None:
    source = IamTokenSource(KEY_ID, SECRET, "http://127.0.0.1:9/api/v1/auth/token", timeout=2)
    with pytest.raises(AuthError, match="unreachable"):
        source.token()
