"""Remote URLs: off by default; when on, only allowed public hosts, pinned to the vetted IP."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import pytest

from safeclip_guardrail import ImageInputError, ImageOptions
from safeclip_guardrail.images import _fetch
from safeclip_guardrail.images._fetch import check_url, host_allowed
from safeclip_guardrail.images.decode import decode_image
from safeclip_guardrail.testing.pictures import encode, noise

ALLOWED = ImageOptions(allow_urls=True, allowed_hosts=("images.example.com", "*.cdn.example"),
                       max_bytes=100_000)


def _resolve_to(monkeypatch: pytest.MonkeyPatch, *addrs: str) -> None:
    """DNS is the third-party boundary: answer with the given addresses (at the fetcher's
    one resolver: patching ``socket.getaddrinfo`` itself would, on undo, restore the
    socket-blocking wrapper pytest-socket had installed, and break later tests)."""
    def fake(host: str, port: int) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a_, port)) for a_ in addrs]
    monkeypatch.setattr(_fetch, "_resolve", fake)


def test_wildcards() -> None:
    assert host_allowed("a.cdn.example", ("*.cdn.example",))
    assert not host_allowed("cdn.example", ("*.cdn.example",))
    assert not host_allowed("evil.com", ("images.example.com",))
    assert host_allowed("IMAGES.example.com.", ("images.example.com",))


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://evil.com/x.png", "not in allowed_hosts"),
        ("file:///etc/passwd", "unsupported URL scheme"),
        ("http:///x.png", "has no host"),
    ],
)
def test_rejected_urls(url: str, needle: str) -> None:
    with pytest.raises(ImageInputError, match=needle):
        decode_image(url, ALLOWED)


@pytest.mark.parametrize("addr", ["127.0.0.1", "10.0.0.5", "192.168.1.1", "169.254.169.254",
                                  "::1", "fe80::1", "0.0.0.0", "::ffff:127.0.0.1"])
def test_private_targets_rejected_after_resolution(monkeypatch: pytest.MonkeyPatch,
                                                   addr: str) -> None:
    _resolve_to(monkeypatch, "93.184.216.34", addr)  # one bad answer is enough to refuse
    with pytest.raises(ImageInputError, match="non-public address"):
        check_url("http://images.example.com/cat.png", ALLOWED)


def test_fetch_connects_to_the_vetted_address(monkeypatch: pytest.MonkeyPatch) -> None:
    body = encode(noise(16, 16))
    _resolve_to(monkeypatch, "93.184.216.34")
    seen: dict[str, Any] = {}

    def fake_connect(address: tuple[str, int], timeout: float | None = None, *a: Any) -> Any:
        seen["address"] = address
        ours, theirs = socket.socketpair()

        def serve() -> None:
            request = theirs.recv(65536)
            seen["request"] = request
            theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            theirs.close()

        threading.Thread(target=serve, daemon=True).start()
        return ours

    monkeypatch.setattr(socket, "create_connection", fake_connect)
    d = decode_image("http://images.example.com/cat.png?x=1", ALLOWED)
    assert d.image.size == (16, 16)
    assert seen["address"] == ("93.184.216.34", 80)
    assert b"GET /cat.png?x=1 " in seen["request"]
    assert b"Host: images.example.com" in seen["request"]


@pytest.mark.parametrize(("status", "size", "needle"),
                         [(302, 10, "HTTP 302"), (200, 200_000, "over the limit")])
def test_fetch_failures(monkeypatch: pytest.MonkeyPatch, status: int, size: int,
                        needle: str) -> None:
    _resolve_to(monkeypatch, "93.184.216.34")

    def fake_connect(address: tuple[str, int], timeout: float | None = None, *a: Any) -> Any:
        ours, theirs = socket.socketpair()

        def serve() -> None:
            theirs.recv(65536)
            head = b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (status, size)
            with contextlib.suppress(OSError):  # the client may hang up early
                theirs.sendall(head + b"x" * size)
            theirs.close()

        threading.Thread(target=serve, daemon=True).start()
        return ours

    monkeypatch.setattr(socket, "create_connection", fake_connect)
    with pytest.raises(ImageInputError, match=needle):
        decode_image("http://images.example.com/a.png", ALLOWED)
