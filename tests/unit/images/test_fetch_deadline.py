"""Issue 20.4: ``url_timeout`` is one deadline for the whole fetch, whatever the server does.

Real servers on 127.0.0.1 speak HTTP/1.0, close the connection, drip status lines, headers,
bodies, chunks and trailers, send ``100 Continue`` forever, or stall the TLS handshake; the
fetcher dials the vetted public address and the test routes that dial to loopback (DNS
and the dial are the boundaries the test controls). Every fetch must end within its
deadline plus a margin for a loaded machine: that bound is the correctness claim (without
the deadline these fetches would run for as long as the server drips), not a benchmark.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from safeclip_guardrail import ImageInputError, ImageOptions
from safeclip_guardrail.images import _fetch
from safeclip_guardrail.images.decode import decode_image
from safeclip_guardrail.testing.pictures import encode, noise

PUBLIC = "93.184.216.34"
HOST = "images.example.com"
DEADLINE = 0.6
MARGIN = 1.5  # generous for a loaded 2-core machine; a dripping server would run for minutes
OPTS = ImageOptions(allow_urls=True, allowed_hosts=(HOST,), max_bytes=100_000,
                    url_timeout=DEADLINE)
BODY = encode(noise(8, 8))
_DIAL = socket.create_connection

Wrap = Callable[[socket.socket], socket.socket]


@contextlib.contextmanager
def _server(head: bytes, *, drip: bytes = b"", every: float = 0.05,
            wrap: Wrap | None = None, answer: bool = True) -> Iterator[int]:
    """A server on 127.0.0.1 for one connection: ``wrap`` it (TLS), read the request, send
    ``head``, then ``drip`` every ``every`` seconds until the client hangs up or the test
    ends (``drip=b""``: then close). ``answer=False``: accept and never say a word."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            with contextlib.suppress(OSError, ssl.SSLError), conn:
                if not answer:
                    conn.recv(65536)  # the request, or a TLS ClientHello
                    stop.wait()
                    return
                conn.settimeout(5)
                peer = wrap(conn) if wrap is not None else conn
                peer.recv(65536)
                peer.sendall(head)
                while drip and not stop.wait(every):
                    peer.sendall(drip)
            return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        srv.close()


def _route(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """DNS answers the public address; dialling it reaches the local server instead."""
    def resolve(host: str, p: int) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, p))]

    def dial(address: tuple[str, int], *a: Any, **k: Any) -> socket.socket:
        assert address[0] == PUBLIC  # the fetcher dials the vetted address, nothing else
        return _DIAL(("127.0.0.1", port), *a, **k)

    monkeypatch.setattr(_fetch, "_resolve", resolve)
    monkeypatch.setattr(socket, "create_connection", dial)


def _fetch_times_out(url: str) -> float:
    started = time.monotonic()
    with pytest.raises(ImageInputError, match=rf"within url_timeout={DEADLINE}s"):
        decode_image(url, OPTS)
    return time.monotonic() - started


STALLS = {
    "HTTP/1.0 body until close": (b"HTTP/1.0 200 OK\r\n\r\n", b"x"),
    "Connection: close body": (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"x"),
    "HTTP/1.0 with length": (b"HTTP/1.0 200 OK\r\nContent-Length: 90000\r\n\r\n", b"x"),
    "Content-Length body": (b"HTTP/1.1 200 OK\r\nContent-Length: 90000\r\n\r\n", b"x"),
    "status line": (b"HTTP/1.1 200 ", b"O"),
    "headers never end": (b"HTTP/1.1 200 OK\r\n", b"X-A: b\r\n"),
    "HTTP/1.0 headers never end": (b"HTTP/1.0 200 OK\r\nConnection: close\r\n", b"X: y\r\n"),
    "chunks": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\nx\r\n"),
    "chunked, close": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                       b"Connection: close\r\n\r\n", b"1\r\nx\r\n"),
    "chunk trailers": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
                       b"X-T: 1\r\n"),
    "endless 100 Continue": (b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
}


@pytest.mark.allow_hosts(["127.0.0.1"])
@pytest.mark.parametrize(("head", "drip"), list(STALLS.values()), ids=list(STALLS))
def test_a_dripping_server_is_cut_at_the_total_deadline(
        monkeypatch: pytest.MonkeyPatch, head: bytes, drip: bytes) -> None:
    with _server(head, drip=drip) as port:
        _route(monkeypatch, port)
        # every read gets a byte well within any per-read timeout: only a total deadline
        # ends this exchange
        assert _fetch_times_out(f"http://{HOST}/slow.png") < DEADLINE + MARGIN


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_silent_server_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    with _server(b"", answer=False) as port:
        _route(monkeypatch, port)
        assert _fetch_times_out(f"http://{HOST}/silent.png") < DEADLINE + MARGIN


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_stalled_tls_handshake_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    with _server(b"", answer=False) as port:  # takes the ClientHello, never answers it
        _route(monkeypatch, port)
        assert _fetch_times_out(f"https://{HOST}/tls.png") < DEADLINE + MARGIN


def test_a_stalled_dns_lookup_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def slow(host: str, port: int) -> list[Any]:
        release.wait(30)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, port))]

    monkeypatch.setattr(_fetch, "_resolve", slow)
    try:
        assert _fetch_times_out(f"http://{HOST}/dns.png") < DEADLINE + MARGIN
    finally:
        release.set()


PROMPT = {
    "HTTP/1.0 until close": b"HTTP/1.0 200 OK\r\n\r\n" + BODY,
    "Connection: close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY,
    "chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n"),
    "after 100 Continue": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY),
}


@pytest.mark.allow_hosts(["127.0.0.1"])
@pytest.mark.parametrize("reply", list(PROMPT.values()), ids=list(PROMPT))
def test_prompt_servers_of_every_framing_are_fetched(monkeypatch: pytest.MonkeyPatch,
                                                     reply: bytes) -> None:
    with _server(reply) as port:
        _route(monkeypatch, port)
        assert decode_image(f"http://{HOST}/ok.png", OPTS).image.size == (8, 8)


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_body_until_close_is_capped_while_it_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    with _server(b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 150_000) as port:
        _route(monkeypatch, port)
        with pytest.raises(ImageInputError, match="over the limit of 100000 bytes"):
            decode_image(f"http://{HOST}/big.png", OPTS)


# ---------------------------------------------------------------------- TLS with a test CA
@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Wrap, ssl.SSLContext]:
    """A server wrapper with a self-signed certificate for HOST, and a client context that
    trusts only it (the system trust store is the boundary the test replaces)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder: Path = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    client = ssl.create_default_context(cafile=str(folder / "cert.pem"))

    def wrap(conn: socket.socket) -> socket.socket:
        return server.wrap_socket(conn, server_side=True)

    return wrap, client


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_tls_fetches_and_a_tls_body_drip_is_cut(monkeypatch: pytest.MonkeyPatch,
                                                tls_pair: tuple[Wrap, ssl.SSLContext]) -> None:
    wrap, client = tls_pair
    monkeypatch.setattr(_fetch, "_tls_context", lambda: client)
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
    with _server(ok, wrap=wrap) as port:
        _route(monkeypatch, port)
        assert decode_image(f"https://{HOST}/ok.png", OPTS).image.size == (8, 8)
    with _server(b"HTTP/1.0 200 OK\r\n\r\n", drip=b"x", wrap=wrap) as port:
        _route(monkeypatch, port)
        assert _fetch_times_out(f"https://{HOST}/slow.png") < DEADLINE + MARGIN


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_certificate_for_another_name_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                   tls_pair: tuple[Wrap, ssl.SSLContext]) -> None:
    wrap, client = tls_pair
    monkeypatch.setattr(_fetch, "_tls_context", lambda: client)
    other = ImageOptions(allow_urls=True, allowed_hosts=("cdn.example.org",), url_timeout=5)
    with _server(b"HTTP/1.1 200 OK\r\n\r\n", wrap=wrap) as port:
        _route(monkeypatch, port)
        with pytest.raises(ImageInputError, match=r"CERTIFICATE_VERIFY_FAILED|hostname"):
            decode_image("https://cdn.example.org/x.png", other)
