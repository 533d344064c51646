"""Fetching a document from a client-given URL without letting the client reach our own network (SSRF).

Guards, in order, for the first URL and again for every redirect:

* ``http`` and ``https`` only, with a host name;
* the host is resolved here, and every address it resolves to must be public: private, loopback,
  link-local (``169.254.169.254``), multicast, reserved and unspecified addresses are refused, IPv4 and
  IPv6 alike, including IPv4 addresses embedded in IPv6 (``::ffff:127.0.0.1``, 6to4, NAT64, Teredo),
  unless ``allow_private`` is set;
* the connection goes to the address that was checked (the URL's host is replaced by it; ``Host`` and,
  for https, the TLS server name keep the original name), so a second DNS answer cannot swap it
  (DNS rebinding); environment proxies are ignored for the same reason;
* redirects are followed by hand, at most ``max_redirects``, each hop checked as above;
* the body is capped at ``max_bytes`` while it streams (after decompression), and the whole fetch,
  redirects included, at ``timeout_s``.

Every refusal is a :class:`~app.errors.ServiceError` with a 4xx status and a reason; a remote server
that fails is a 502, one that is too slow a 504. Messages name the host, never the path or query
(pre-signed URLs carry credentials there).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx

from app import __version__
from app.errors import TimedOut, UpstreamFailed, bad_request, too_large

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> addresses``; blocking (it runs in a worker thread)."""
AddressCheck = Callable[[IPAddress], "str | None"]
"""``address -> reason it is refused``, or None when it may be contacted."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_CHUNK = 64 * 1024
_HEAD = 2048


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (system resolver), in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    return addresses


def non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public internet address (e.g. ``"loopback"``), or None when it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:  # the IPv4 address it carries decides
            reason = non_public_reason(embedded)
            return f"{reason} (IPv4 {embedded} inside IPv6)" if reason else None
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    for reason, matches in checks:
        if matches:
            return reason
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one fetch. ``resolver``, ``address_check`` and ``verify`` (the TLS trust: True for the
    system's CA bundle, or an ``ssl.SSLContext``) are replaceable (tests, embedding)."""

    max_bytes: int
    timeout_s: float
    allow_private: bool = False
    max_redirects: int = 5
    connect_timeout_s: float = 10.0
    resolver: Resolver = field(default=resolve_host)
    address_check: AddressCheck | None = None
    verify: ssl.SSLContext | bool = True

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be contacted, or None."""
        if self.address_check is not None:
            return self.address_check(address)
        return None if self.allow_private else non_public_reason(address)


@dataclass(frozen=True)
class Fetched:
    """A document fetched to disk: where it finally came from, its size and first bytes."""

    url: str
    size: int
    head: bytes
    declared_type: str | None


def parse_url(url: str) -> httpx.URL:
    """The URL if it is an absolute http(s) URL with a host; otherwise a 400 ``invalid_url``."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise bad_request("invalid_url", "the URL cannot be parsed") from None
    if parsed.scheme not in ("http", "https"):
        raise bad_request("invalid_url", "only http and https URLs are accepted")
    if not parsed.host:
        raise bad_request("invalid_url", "the URL has no host")
    return parsed


def _redirect_target(current: httpx.URL, location: str) -> httpx.URL:
    try:
        joined = current.join(location)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UpstreamFailed("url_fetch_failed", f"{current.host} redirected to an invalid URL") from None
    return parse_url(str(joined))


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def checked_addresses(url: httpx.URL, policy: FetchPolicy) -> list[IPAddress]:
    """The addresses to connect to for ``url``; 400 when any of them is refused or the host does not resolve.

    All resolved addresses must pass, so a host cannot mix a public and a private answer.
    """
    literal = _ip_literal(url.host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            found = await anyio.to_thread.run_sync(policy.resolver, url.host, _port(url), abandon_on_cancel=True)
        except (OSError, UnicodeError):
            raise bad_request("url_unresolvable", f"the host {url.host} cannot be resolved") from None
        addresses = [ipaddress.ip_address(a) for a in found]
        if not addresses:
            raise bad_request("url_unresolvable", f"the host {url.host} cannot be resolved")
    for address in addresses:
        reason = policy.refusal(address)
        if reason:
            log.warning("url refused: host=%s address=%s (%s)", url.host, address, reason)
            raise bad_request(
                "url_refused",
                f"the URL's host {url.host} resolves to {address}, a {reason} address; "
                "only public addresses may be fetched (ALLOW_PRIVATE_URLS)",
            )
    return addresses


async def fetch_to_file(url: str, target: Path, policy: FetchPolicy) -> Fetched:
    """GET ``url`` into ``target`` under the guards of the module docstring.

    Raises :class:`ServiceError`: 400 (invalid, refused, unresolvable, too many redirects), 413 (over
    ``max_bytes``), 502 (connection failed or the server answered an error status), 504 (over
    ``timeout_s``). ``target`` may hold partial data after an error; the caller removes it.
    """
    current = parse_url(url)
    timeout = httpx.Timeout(policy.timeout_s, connect=min(policy.connect_timeout_s, policy.timeout_s))
    headers = {"User-Agent": f"paddleocr-vl-service/{__version__}", "Accept": "*/*"}
    try:
        with anyio.fail_after(policy.timeout_s):
            async with httpx.AsyncClient(
                timeout=timeout, trust_env=False, follow_redirects=False, verify=policy.verify
            ) as client:
                for _hop in range(policy.max_redirects + 1):
                    addresses = await checked_addresses(current, policy)
                    got = await _get_once(client, current, addresses, headers=headers, target=target, policy=policy)
                    if isinstance(got, Fetched):
                        return got
                    current = _redirect_target(current, got)
    except TimeoutError:
        raise TimedOut("url_timeout", f"fetching from {current.host} took longer than {policy.timeout_s:g} s") from None
    raise bad_request("too_many_redirects", f"the URL redirected more than {policy.max_redirects} times")


async def _get_once(
    client: httpx.AsyncClient,
    url: httpx.URL,
    addresses: list[IPAddress],
    *,
    headers: dict[str, str],
    target: Path,
    policy: FetchPolicy,
) -> Fetched | str:
    """One GET to the first address that accepts a connection: the document, or a redirect's Location."""
    request_headers = {**headers, "Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" and _ip_literal(url.host) is None else {}
    failure = "no address to connect to"
    for address in addresses:
        pinned = url.copy_with(host=str(address))
        try:
            async with client.stream("GET", pinned, headers=request_headers, extensions=extensions) as response:
                if response.status_code in REDIRECT_STATUSES and response.headers.get("location"):
                    return response.headers["location"]
                if response.status_code >= 300:
                    raise UpstreamFailed(
                        "url_fetch_failed", f"{url.host} answered HTTP {response.status_code} for the URL"
                    )
                return await _save_body(response, url, target, policy.max_bytes)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.ConnectError as exc:
            failure = str(exc)[:200] or type(exc).__name__
            continue  # try the next checked address
        except httpx.HTTPError as exc:
            raise UpstreamFailed("url_fetch_failed", f"fetching from {url.host} failed: {type(exc).__name__}") from None
    raise UpstreamFailed("url_fetch_failed", f"cannot connect to {url.host} ({failure})")


async def _save_body(response: httpx.Response, url: httpx.URL, target: Path, limit: int) -> Fetched:
    limit_message = f"the document at the URL exceeds the limit of {limit / 1024 / 1024:g} MB"
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large("upload_too_large", limit_message)
    size = 0
    head = b""
    async with await anyio.open_file(target, "wb") as out:
        async for chunk in response.aiter_bytes(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise too_large("upload_too_large", limit_message)
            if len(head) < _HEAD:
                head += chunk[: _HEAD - len(head)]
            await out.write(chunk)
    content_type = response.headers.get("content-type")
    log.info("fetched %d bytes from host=%s", size, url.host)
    return Fetched(url=str(url), size=size, head=head, declared_type=content_type)
