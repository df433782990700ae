"""One fake public image host for URL tests: DNS and the TCP connection are the boundary."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest


def serve_image(monkeypatch: pytest.MonkeyPatch, body: bytes) -> list[bytes]:
    """Answer every http(s) connection with ``body``; returns the requests, one per fetch."""
    requests: list[bytes] = []

    def resolve(host: str, port: int, *a: Any, **k: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    def connect(address: tuple[str, int], timeout: float | None = None, *a: Any) -> Any:
        ours, theirs = socket.socketpair()

        def serve() -> None:
            requests.append(theirs.recv(65536))
            theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            theirs.close()

        threading.Thread(target=serve, daemon=True).start()
        return ours

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(socket, "create_connection", connect)
    return requests
