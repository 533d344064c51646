"""Local stand-ins for the two Cloud.ru pieces in front of a Model RUN, speaking their documented contracts.

- :func:`iam_app`: ``POST /api/v1/auth/token`` with JSON ``{"keyId", "secret"}`` answers what the Cloud.ru docs
  show ("Аутентификация в API", example response): ``{"access_token", "id_token", "refresh_token": "",
  "expires_in", "refresh_expires_in": 0, "scopes", "token_type": "Bearer", "not_before": 0}``; a wrong pair
  gets 401, a malformed body 400.
- :func:`gateway_app`: the platform's gateway with authentication on: every request needs
  ``Authorization: Bearer <a live token from the IAM stand-in>`` (else 401), and is then forwarded, headers
  included, to the container.

Serve them with :class:`tests.support.server.ThreadServer`.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

IAM_PATH = "/api/v1/auth/token"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


@dataclass
class IamState:
    """The one key pair the IAM stand-in accepts, the tokens it issued and their expiry."""

    key_id: str
    secret: str
    ttl_s: float = 3600.0
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expires at (monotonic)
    refused: int = 0
    requests: int = 0  # token requests received, refused or not
    exchanges: list[float] = field(default_factory=list)  # when each token was issued (monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def issue(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = time.monotonic() + self.ttl_s
        return token

    def valid(self, token: str) -> bool:
        with self._lock:
            expires = self.tokens.get(token)
        return expires is not None and time.monotonic() < expires

    @property
    def issued(self) -> int:
        return len(self.tokens)


def iam_app(state: IamState) -> Starlette:
    async def token(request: Request) -> Response:
        try:
            body = await request.json()
            key_id, secret = body["keyId"], body["secret"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"code": "bad_request", "message": "keyId and secret are required"}, 400)
        state.requests += 1
        if not (
            isinstance(key_id, str)
            and isinstance(secret, str)
            and secrets.compare_digest(key_id, state.key_id)
            and secrets.compare_digest(secret, state.secret)
        ):
            state.refused += 1
            return JSONResponse({"code": "unauthenticated", "message": "invalid credentials"}, 401)
        state.exchanges.append(time.monotonic())
        return JSONResponse(
            {
                "access_token": state.issue(),
                "id_token": secrets.token_urlsafe(16),
                "refresh_token": "",
                "expires_in": state.ttl_s,
                "refresh_expires_in": 0,
                "scopes": ["openid profile email roles"],
                "token_type": "Bearer",
                "not_before": 0,
            }
        )

    return Starlette(routes=[Route(IAM_PATH, token, methods=["POST"])])


@dataclass
class GatewayState:
    iam: IamState
    upstream: str
    rejected: int = 0
    forwarded: int = 0


def gateway_app(state: GatewayState) -> Starlette:
    client = httpx.AsyncClient(base_url=state.upstream, timeout=120)

    async def forward(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        if not (header[:7].lower() == "bearer " and state.iam.valid(header[7:].strip())):
            state.rejected += 1
            return JSONResponse({"message": "Unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"})
        state.forwarded += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = await client.request(
            request.method, request.url.path, params=request.query_params, headers=headers, content=await request.body()
        )
        reply = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP | {"content-encoding"}}
        return Response(upstream.content, upstream.status_code, headers=reply)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])
