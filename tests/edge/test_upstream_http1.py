"""`upstream/http1.py`, the edge's own HTTP/1.1 client: pool, framing, retries, limits.

The vendor here is a raw asyncio server that writes exactly the bytes a case needs (a
connection closed mid-answer, a `100 Continue`, a body delimited by the close), so every
path of the parser and the pool is driven over a real socket.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bytespike_common.errors import UpstreamTimeout, UpstreamUnavailable
from bytespike_edge.upstream import http1
from bytespike_edge.upstream.client import Timeouts
from bytespike_edge.upstream.http1 import Http1Upstream
from bytespike_edge.upstream.http1_exchange import MAX_HEAD_BYTES
from bytespike_edge.upstream.proxies import EnvProxies

FAST = Timeouts(connect=1.0, first_byte=1.0, total=None)
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


@dataclass
class Request:
    head: bytes
    body: bytes

    @property
    def line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    def header_lines(self) -> list[bytes]:
        return [line.lower() for line in self.head.split(b"\r\n")[1:] if line]


# A connection handler: (reader, writer, the connection's index, the vendor) -> None.
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int, "Vendor"], Awaitable[None]]


@dataclass
class Vendor:
    url: str = ""
    connections: int = 0
    requests: list[Request] = field(default_factory=list)

    async def read_request(self, reader: asyncio.StreamReader) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = Request(head, await reader.readexactly(length))
        self.requests.append(request)
        return request


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Vendor]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler, tls: ssl.SSLContext | None = None) -> Vendor:
        vendor = Vendor()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            index = vendor.connections
            vendor.connections += 1
            try:
                await handler(reader, writer, index, vendor)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=tls)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        vendor.url = f"{'https' if tls else 'http'}://localhost:{port}/v1/chat/completions"
        return vendor

    yield start
    for server in servers:
        server.close()


@pytest.fixture
async def client() -> AsyncIterator[Http1Upstream]:
    upstream = Http1Upstream(8, EnvProxies({}))
    try:
        yield upstream
    finally:
        await upstream.aclose()


def answering(*answers: bytes, keep_open: bool = True) -> Handler:
    """Answers the n-th request of each connection with `answers[n]` (the last repeats);
    with no answers, reads the request and stays silent."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int, vendor: Vendor
    ) -> None:
        served = 0
        while await vendor.read_request(reader) is not None:
            if not answers:  # a vendor that never answers
                await asyncio.sleep(30)
            writer.write(answers[min(served, len(answers) - 1)])
            await writer.drain()
            served += 1
            if not keep_open:
                return

    return handler


async def fetch(client: Http1Upstream, url: str, body: bytes = b"{}") -> tuple[int, bytes]:
    response = await client.send(url, {"content-type": "application/json"}, body, FAST)
    try:
        return response.status_code, await response.aread()
    finally:
        await response.aclose()


async def test_keep_alive_reuses_one_connection(serve, client) -> None:  # type: ignore[no-untyped-def]
    vendor = await serve(answering(OK))
    for _ in range(3):
        assert await fetch(client, vendor.url) == (200, b"{}")
    assert vendor.connections == 1
    request = vendor.requests[0]
    assert request.line == b"POST /v1/chat/completions HTTP/1.1"
    assert b"host: localhost:" + vendor.url.split(":")[2].split("/")[0].encode() in (
        request.header_lines()
    )
    assert request.body == b"{}"


async def test_an_answer_that_closes_is_not_reused(serve, client) -> None:  # type: ignore[no-untyped-def]
    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"
    vendor = await serve(answering(closing, keep_open=False))
    for _ in range(2):
        assert await fetch(client, vendor.url) == (200, b"{}")
    assert vendor.connections == 2


async def test_a_stale_pooled_connection_is_retried_once(serve, client) -> None:  # type: ignore[no-untyped-def]
    async def first_only(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int, vendor: Vendor
    ) -> None:
        # Answers one request, then drops the connection on reading the next one (a
        # keep-alive timeout racing the client's next request).
        await vendor.read_request(reader)
        writer.write(OK)
        await writer.drain()
        await vendor.read_request(reader)

    vendor = await serve(first_only)
    assert await fetch(client, vendor.url) == (200, b"{}")
    assert await fetch(client, vendor.url) == (200, b"{}")
    assert vendor.connections == 2
    assert len(vendor.requests) == 3


async def test_a_new_connection_closed_without_an_answer_is_not_retried(serve, client) -> None:  # type: ignore[no-untyped-def]
    async def drop(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int, vendor: Vendor
    ) -> None:
        await vendor.read_request(reader)

    vendor = await serve(drop)
    with pytest.raises(UpstreamUnavailable):
        await fetch(client, vendor.url)
    assert vendor.connections == 1


async def test_framing_by_close_chunks_and_informational_answers(serve, client) -> None:  # type: ignore[no-untyped-def]
    until_close = await serve(answering(b"HTTP/1.1 200 OK\r\n\r\nhello, world", keep_open=False))
    assert await fetch(client, until_close.url) == (200, b"hello, world")

    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n"
    )
    vendor = await serve(answering(chunked))
    assert await fetch(client, vendor.url) == (200, b"hello!!!")

    continued = await serve(answering(b"HTTP/1.1 100 Continue\r\n\r\n" + OK))
    assert await fetch(client, continued.url) == (200, b"{}")
    # 204 has no body even without a length, and the connection stays usable.
    empty = await serve(answering(b"HTTP/1.1 204 No Content\r\n\r\n"))
    assert await fetch(client, empty.url) == (204, b"")
    assert await fetch(client, empty.url) == (204, b"")
    assert empty.connections == 1


async def test_broken_answers_fail_the_attempt(serve, client) -> None:  # type: ignore[no-untyped-def]
    truncated = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello"
    vendor = await serve(answering(truncated, keep_open=False))
    with pytest.raises(UpstreamUnavailable):
        await fetch(client, vendor.url)

    garbage = await serve(answering(b"SMTP ready\r\n\r\n"))
    with pytest.raises(UpstreamUnavailable, match="malformed"):
        await fetch(client, garbage.url)

    huge_head = b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n\r\n"
    oversized = await serve(answering(huge_head))
    with pytest.raises(UpstreamUnavailable, match="too large"):
        await fetch(client, oversized.url)

    brotli = b"HTTP/1.1 200 OK\r\ncontent-encoding: br\r\ncontent-length: 2\r\n\r\n{}"
    coded = await serve(answering(brotli))
    with pytest.raises(UpstreamUnavailable, match="coding"):
        await fetch(client, coded.url)


async def test_gzip_answers_are_decoded(serve, client) -> None:  # type: ignore[no-untyped-def]
    packed = gzip.compress(b'{"id":"chatcmpl-1"}' * 100)
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(
        packed
    )
    vendor = await serve(answering(answer + packed))
    assert await fetch(client, vendor.url) == (200, b'{"id":"chatcmpl-1"}' * 100)


async def test_timeouts(serve, client) -> None:  # type: ignore[no-untyped-def]
    async def silent(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int, vendor: Vendor
    ) -> None:
        await vendor.read_request(reader)
        await asyncio.sleep(5)

    async def stalls(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int, vendor: Vendor
    ) -> None:
        await vendor.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async def drips(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int, vendor: Vendor
    ) -> None:
        await vendor.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(50):
            writer.write(b"1\r\n.\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)

    quick = Timeouts(connect=1.0, first_byte=0.2, total=None)
    vendor = await serve(silent)
    with pytest.raises(UpstreamTimeout):
        await client.send(vendor.url, {}, b"{}", quick)

    vendor = await serve(stalls)
    response = await client.send(vendor.url, {}, b"{}", quick)
    chunks = response.aiter_bytes()
    assert await anext(chunks) == b"first"
    with pytest.raises(UpstreamTimeout):
        await anext(chunks)
    await response.aclose()

    # Every read is on time, the whole exchange is not.
    vendor = await serve(drips)
    bounded = Timeouts(connect=1.0, first_byte=0.2, total=0.5)
    response = await client.send(vendor.url, {}, b"{}", bounded)
    with pytest.raises(UpstreamTimeout):
        await response.aread()
    await response.aclose()


async def test_connect_failures(client) -> None:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(UpstreamUnavailable):
        await fetch(client, f"http://127.0.0.1:{port}/v1/chat/completions")
    with pytest.raises(UpstreamUnavailable, match="scheme"):
        await fetch(client, "ftp://127.0.0.1/v1")


async def test_the_pool_is_bounded_and_frees_slots(serve, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(http1, "POOL_WAIT", 0.3)
    opened = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n"
    vendor = await serve(answering(opened))
    client = Http1Upstream(1, EnvProxies({}))
    try:
        held = await client.send(vendor.url, {}, b"{}", FAST)
        with pytest.raises(UpstreamTimeout, match="pool"):
            await client.send(vendor.url, {}, b"{}", FAST)
        # A waiting request gets the slot as soon as the holder lets go.
        waiting = asyncio.ensure_future(client.send(vendor.url, {}, b"{}", FAST))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await held.aclose()  # midway: its connection closes, the slot is free
        second = await waiting
        assert second.status_code == 200
        await second.aclose()

        # A cancelled request frees its slot too (its connection is closed, not pooled).
        silent = await serve(answering())
        pending = asyncio.ensure_future(client.send(silent.url, {}, b"{}", FAST))
        await asyncio.sleep(0.05)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        third = await client.send(vendor.url, {}, b"{}", FAST)
        await third.aclose()
    finally:
        await client.aclose()


async def test_large_bodies_both_ways(serve, client) -> None:  # type: ignore[no-untyped-def]
    async def echo_five_times(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int, vendor: Vendor
    ) -> None:
        while (request := await vendor.read_request(reader)) is not None:
            body = request.body * 5
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()

    vendor = await serve(echo_five_times)
    sent = bytes(range(256)) * 800  # 200 KB: written uncopied beside the head
    assert await fetch(client, vendor.url, sent) == (200, sent * 5)
    # Read slowly: the socket is paused above the high-water mark and resumed, bytes intact.
    response = await client.send(vendor.url, {}, sent, FAST)
    received = bytearray()
    async for chunk in response.aiter_bytes():
        received += chunk
        await asyncio.sleep(0.01)
    await response.aclose()
    assert bytes(received) == sent * 5
    assert vendor.connections == 1


async def test_request_headers(serve, client) -> None:  # type: ignore[no-untyped-def]
    vendor = await serve(answering(OK))
    headers = {"Authorization": "Bearer k", "Host": "evil", "Content-Length": "99"}
    response = await client.send(vendor.url, headers, b"{}", FAST)
    await response.aclose()
    lines = vendor.requests[0].header_lines()
    assert b"authorization: bearer k" in lines
    assert [line for line in lines if line.startswith(b"content-length")] == [b"content-length: 2"]
    assert not any(line.startswith(b"host: evil") for line in lines)
    with pytest.raises(UpstreamUnavailable, match="line break"):
        await client.send(vendor.url, {"x-a": "b\r\nx-injected: 1"}, b"{}", FAST)


async def test_origins_behind_a_proxy_go_through_aiohttp(serve) -> None:  # type: ignore[no-untyped-def]
    proxy = await serve(answering(OK))
    proxy_root = proxy.url.removesuffix("/v1/chat/completions")
    client = Http1Upstream(4, EnvProxies({"HTTP_PROXY": proxy_root}))
    try:
        assert await fetch(client, "http://vendor.example/v1/messages") == (200, b"{}")
    finally:
        await client.aclose()
    # The absolute form only a forward proxy is sent.
    assert proxy.requests[0].line == b"POST http://vendor.example/v1/messages HTTP/1.1"


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    trusting = ssl.create_default_context(cafile=str(cert_file))
    return server, trusting


async def test_https_checks_the_certificate(serve, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server_tls, trusting = _self_signed(tmp_path)
    vendor = await serve(answering(OK), tls=server_tls)
    client = Http1Upstream(4, EnvProxies({}), tls=trusting)
    untrusting = Http1Upstream(4, EnvProxies({}))
    try:
        for _ in range(2):
            assert await fetch(client, vendor.url) == (200, b"{}")
        assert vendor.connections == 1
        with pytest.raises(UpstreamUnavailable):
            await fetch(untrusting, vendor.url)
    finally:
        await client.aclose()
        await untrusting.aclose()
