"""Fetching remote images, only when allowed, without becoming an SSRF vector.

Rules: http(s) only; the host must be on ``ImageOptions.allowed_hosts``; every address the
name resolves to must be public (no loopback, private, link-local, multicast, reserved or
unspecified), and the connection goes to the vetted address (no second DNS lookup that a
rebinding attack could change); redirects are not followed; size and time are capped.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError

__all__ = ["check_url", "fetch_url", "host_allowed"]


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowed:
        p = pattern.lower().rstrip(".")
        if p.startswith("*."):
            if host.endswith(p[1:]) and host != p[2:]:
                return True
        elif host == p:
            return True
    return False


def _public(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified
    )


def check_url(url: str, opts: ImageOptions) -> tuple[str, str, int, str]:
    """Validate ``url`` and resolve it: returns (scheme, host, port, vetted IP address)."""
    short = url if len(url) <= 120 else url[:117] + "..."
    if not opts.allow_urls:
        raise ImageInputError(
            f"remote image URL {short} not fetched: URL fetching is off. Pass the image as "
            "bytes/base64, or set ImageOptions(allow_urls=True, allowed_hosts=(...))",
            source=short,
        )
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise ImageInputError(f"only http(s) URLs can be fetched, not {parts.scheme!r}", source=short)
    host = parts.hostname or ""
    if not host:
        raise ImageInputError(f"URL {short} has no host", source=short)
    if not host_allowed(host, opts.allowed_hosts):
        raise ImageInputError(
            f"host {host!r} is not in allowed_hosts {list(opts.allowed_hosts)}", source=short
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageInputError(f"cannot resolve host {host!r}: {exc}", source=short) from None
    addrs = sorted({str(info[4][0]) for info in infos})
    if not addrs:
        raise ImageInputError(f"host {host!r} resolved to no address", source=short)
    bad = [a for a in addrs if not _public(a)]
    if bad:
        raise ImageInputError(
            f"host {host!r} resolves to a non-public address ({', '.join(bad)}); loopback, "
            "private and link-local targets are never fetched",
            source=short,
        )
    return parts.scheme, host, port, addrs[0]


def fetch_url(url: str, opts: ImageOptions) -> bytes:
    """Download ``url`` after :func:`check_url`, capped at ``max_bytes`` and ``url_timeout``."""
    scheme, host, port, ip = check_url(url, opts)
    short = url if len(url) <= 120 else url[:117] + "..."
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = _PinnedHTTPS(host, ip, port, timeout=opts.url_timeout)
    else:
        conn = _PinnedHTTP(host, ip, port, timeout=opts.url_timeout)
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": "safeclip-guardrail"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise ImageInputError(
                f"fetching {short} gave HTTP {resp.status} (redirects are not followed)",
                source=short,
            )
        data = resp.read(opts.max_bytes + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise ImageInputError(f"fetching {short} failed: {exc}", source=short) from None
    finally:
        conn.close()
    if len(data) > opts.max_bytes:
        raise ImageInputError(
            f"remote image {short} is over the limit of {opts.max_bytes} bytes", source=short
        )
    return data


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address vetted by :func:`check_url`, not to a fresh DNS answer."""

    def __init__(self, host: str, ip: str, port: int, *, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, ip: str, port: int, *, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
