"""The guarded URL fetcher: address checks, pinned connections, redirects, size and time caps.

Refusals of private addresses need no network. The rest runs against a real HTTP server on
127.0.0.1; where a test needs 127.0.0.1 to count as "public" (so that the next hop is what gets
checked), it says so with ``address_check``.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import trustme

from app.api.errors import http_status
from app.errors import ServiceError
from app.intake.url_fetch import Fetched, FetchPolicy, IPAddress, fetch_to_file, non_public_reason, parse_url
from tests.support.http_source import DocumentSource
from tests.support.server import free_port

MB = 1024 * 1024
LOOPBACK_V4 = ipaddress.ip_address("127.0.0.1")


@pytest.fixture(scope="module")
def source() -> Iterator[DocumentSource]:
    with DocumentSource() as server:
        yield server


def only_127_0_0_1(address: IPAddress) -> str | None:
    """Treat 127.0.0.1 (the test server) as public; everything else as the real check does."""
    return None if address == LOOPBACK_V4 else non_public_reason(address)


def fetch(url: str, target: Path, **policy: object) -> Fetched:
    settings: dict[str, object] = {"max_bytes": MB, "timeout_s": 10.0, **policy}
    return anyio.run(fetch_to_file, url, target, FetchPolicy(**settings))  # type: ignore[arg-type]


def refused(url: str, target: Path, status: int = 400, **policy: object) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        fetch(url, target, **policy)
    assert http_status(caught.value) == status, caught.value.message
    return caught.value


@pytest.mark.parametrize(
    "address,reason",
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "not globally routable"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "private"),
        ("255.255.255.255", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ],
)
def test_non_public_addresses_are_named(address: str, reason: str) -> None:
    found = non_public_reason(ipaddress.ip_address(address))
    assert found is not None and found.startswith(reason), found


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert non_public_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("url", ["ftp://example.com/a.pdf", "file:///etc/passwd", "http://", "gopher://x", "//x/y"])
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(ServiceError) as caught:
        parse_url(url)
    assert http_status(caught.value) == 400 and caught.value.code == "invalid_url"


@pytest.mark.parametrize(
    "url,reason",
    [
        ("http://127.0.0.1:{port}/doc/hello", "loopback"),
        ("http://10.0.0.7/doc.pdf", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]:{port}/doc/hello", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/doc/hello", "loopback"),
        ("http://0.0.0.0:{port}/doc/hello", "unspecified"),
        ("http://localhost:{port}/doc/hello", "loopback"),  # a name that resolves to loopback
        ("https://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number
    ],
)
def test_private_destinations_are_refused_before_connecting(
    url: str, reason: str, tmp_path: Path, source: DocumentSource
) -> None:
    hits = len(source.hosts)
    error = refused(url.format(port=source.port), tmp_path / "doc")
    assert error.code == "url_refused" and reason in error.message
    assert "ALLOW_PRIVATE_URLS" in error.message
    assert len(source.hosts) == hits, "the server must not have been contacted"
    assert not (tmp_path / "doc").exists()


def test_allowed_when_private_urls_are_allowed(tmp_path: Path, source: DocumentSource) -> None:
    url = source.add("pdf", b"%PDF-1.7 test bytes")
    fetched = fetch(url, tmp_path / "doc", allow_private=True)
    assert (tmp_path / "doc").read_bytes() == b"%PDF-1.7 test bytes"
    assert fetched.size == 19 and fetched.head.startswith(b"%PDF")


def test_connects_to_the_checked_address_and_keeps_the_host_name(tmp_path: Path, source: DocumentSource) -> None:
    """The name is resolved once, by the guard; the connection goes to that address (no second lookup
    that a rebinding DNS server could answer differently), and the server still sees the name."""
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    url = f"http://docs.example.test:{source.port}/doc/hello"  # a name no real DNS knows
    fetch(url, tmp_path / "doc", resolver=resolver, address_check=only_127_0_0_1)
    assert lookups == ["docs.example.test"]
    assert source.hosts[-1] == f"docs.example.test:{source.port}"
    assert (tmp_path / "doc").read_bytes() == b"hello"


def test_a_name_with_any_private_address_is_refused(tmp_path: Path) -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["8.8.8.8", "10.0.0.5"]

    error = refused("http://mixed.example.test/doc", tmp_path / "doc", resolver=resolver)
    assert error.code == "url_refused" and "10.0.0.5" in error.message


def test_unresolvable_host(tmp_path: Path) -> None:
    error = refused("http://no-such-host.invalid/doc.pdf", tmp_path / "doc")
    assert error.code == "url_unresolvable"


@pytest.mark.parametrize(
    "target", ["http://10.0.0.1/doc.pdf", "http://[::1]:{port}/doc/hello", "http://169.254.169.254/latest/meta-data/"]
)
def test_every_redirect_is_checked(target: str, tmp_path: Path, source: DocumentSource) -> None:
    """The first hop (127.0.0.1, allowed here) redirects to a private address: refused before following."""
    hits = len(source.hosts)
    url = f"{source.url}/redirect?to={target.format(port=source.port)}"
    error = refused(url, tmp_path / "doc", address_check=only_127_0_0_1)
    assert error.code == "url_refused"
    assert len(source.hosts) == hits + 1, "only the first hop may have reached a server"


def test_redirects_are_followed_up_to_five(tmp_path: Path, source: DocumentSource) -> None:
    fetched = fetch(f"{source.url}/hops/5", tmp_path / "doc", allow_private=True)
    assert fetched.url.endswith("/doc/hello")
    assert (tmp_path / "doc").read_bytes() == b"hello"
    error = refused(f"{source.url}/hops/6", tmp_path / "doc2", allow_private=True)
    assert error.code == "too_many_redirects"


@pytest.mark.parametrize("chunked", ["0", "1"])
def test_size_is_capped_while_streaming(chunked: str, tmp_path: Path, source: DocumentSource) -> None:
    error = refused(f"{source.url}/big?mb=3&chunked={chunked}", tmp_path / "doc", status=413, allow_private=True)
    assert error.code == "upload_too_large"
    written = tmp_path / "doc"
    assert not written.exists() or written.stat().st_size <= MB


def test_total_timeout(tmp_path: Path, source: DocumentSource) -> None:
    began = time.perf_counter()
    error = refused(f"{source.url}/slow?s=5", tmp_path / "doc", status=504, allow_private=True, timeout_s=0.5)
    assert error.code == "url_timeout"
    assert time.perf_counter() - began < 3


def test_remote_errors_are_502(tmp_path: Path, source: DocumentSource) -> None:
    error = refused(f"{source.url}/missing", tmp_path / "doc", status=502, allow_private=True)
    assert error.code == "url_fetch_failed" and "404" in error.message
    closed = f"http://127.0.0.1:{free_port()}/doc.pdf"
    assert refused(closed, tmp_path / "doc", status=502, allow_private=True).code == "url_fetch_failed"


def test_messages_do_not_leak_the_query(tmp_path: Path) -> None:
    error = refused("http://169.254.169.254/x?X-Amz-Signature=secret-signature", tmp_path / "doc")
    assert "secret-signature" not in error.message


@pytest.fixture(scope="module")
def tls_source() -> Iterator[tuple[DocumentSource, ssl.SSLContext]]:
    """An https server whose certificate names docs.example.test, and a client context that trusts it."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("docs.example.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    with DocumentSource(tls=server_context) as server:
        yield server, client_context


def test_https_to_the_checked_address_verifies_the_original_name(
    tmp_path: Path, tls_source: tuple[DocumentSource, ssl.SSLContext]
) -> None:
    """The connection goes to the pinned IP, yet TLS sends and verifies the URL's host name (SNI)."""
    source, trust = tls_source

    def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    policy = {"resolver": resolver, "address_check": only_127_0_0_1, "verify": trust}
    fetch(f"https://docs.example.test:{source.port}/doc/hello", tmp_path / "doc", **policy)
    assert (tmp_path / "doc").read_bytes() == b"hello"
    assert source.hosts[-1] == f"docs.example.test:{source.port}"
    # The same address under a name the certificate does not carry: the TLS check fails.
    error = refused(f"https://other.example.test:{source.port}/doc/hello", tmp_path / "doc2", status=502, **policy)
    assert error.code == "url_fetch_failed" and "certificate" in error.message.lower()
