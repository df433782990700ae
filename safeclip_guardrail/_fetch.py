"""Fetching remote images, only when allowed, without becoming an SSRF vector.

Rules: http(s) only; the host must be on ``ImageOptions.allowed_hosts``; every address the
name resolves to must be globally routable, judged after unwrapping the IPv6 forms that
carry an IPv4 address (IPv4-mapped and -compatible, 6to4, Teredo, NAT64), so
``100.100.100.200`` (a cloud metadata address in the shared 100.64.0.0/10 range),
``2002:a00:1::`` (6to4 of 10.0.0.1) and ``fec0::1`` (site-local) are all refused. The
connection goes to the vetted address (no second DNS lookup that a rebinding attack could
change); redirects are not followed; the body is capped at ``max_bytes``; and
``url_timeout`` is a total deadline for connect + TLS + headers + body, enforced by a
watchdog that closes the socket, so a server dripping one byte at a time cannot hold a
request longer than that. Every step, URL parsing included, fails with ImageInputError.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError

__all__ = ["HttpFetcher", "ParsedURL", "Target", "check_url", "check_url_policy", "fetch_url",
           "host_allowed", "is_public_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_BLOCKED = tuple(ipaddress.ip_network(n) for n in (
    # IPv4 special-purpose ranges (RFC 6890 and successors), checked besides is_global
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    # IPv6: unwrapped forms are judged by their IPv4 address; these never are fetched
    "::/128", "::1/128", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
))
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_TEREDO = ipaddress.ip_network("2001::/32")
_PATH_SAFE = "/%:@!$&'()*+,;=-._~?"


@dataclass(frozen=True)
class Target:
    """A URL that passed :func:`check_url`: what to connect to and what to ask for."""

    scheme: str
    host: str
    port: int
    address: str
    """The vetted IP address the connection goes to."""
    path: str
    """Path and query, percent-encoded ASCII."""


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


def _embedded(ip: IPAddress) -> list[IPAddress]:
    """The addresses a packet to ``ip`` really reaches: IPv4 inside IPv6 forms, else ``ip``."""
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip in _TEREDO and ip.teredo is not None:
        return list(ip.teredo)
    if any(ip in net for net in _NAT64):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return [ipaddress.IPv4Address(int(ip))]
    return [ip]


def is_public_address(addr: str) -> bool:
    """Whether ``addr`` (an IP literal, with or without an IPv6 zone) is globally routable,
    after unwrapping IPv4-mapped/-compatible, 6to4, Teredo and NAT64 forms."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    if "%" in addr:  # a scoped address is link-local by definition
        return False
    for inner in {ip, *_embedded(ip)}:
        if not inner.is_global or inner.is_multicast or any(inner in n for n in _BLOCKED):
            return False
    return True


@dataclass(frozen=True)
class ParsedURL:
    """A URL that passed :func:`check_url_policy` (no DNS lookup made yet)."""

    scheme: str
    host: str
    """The host as written (lower-cased by ``urlsplit``)."""
    ascii_host: str
    """The IDNA-encoded host, what DNS and the ``Host`` header see."""
    port: int
    path: str
    """Path and query, percent-encoded ASCII."""


def check_url_policy(url: str, opts: ImageOptions) -> ParsedURL:
    """What ``opts`` allows, checked without touching the network: ``allow_urls``, http(s),
    a host, no credentials, ``allowed_hosts``. Runs before any fetcher, injected or not, so
    a fetcher is never asked for a URL the options forbid. ImageInputError otherwise."""
    short = _short(url)
    if not opts.allow_urls:
        raise ImageInputError(
            f"remote image URL {short} not fetched: URL fetching is off. Pass the image as "
            "bytes/base64, or set ImageOptions(allow_urls=True, allowed_hosts=(...))",
            source=short,
        )
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port
        path = quote(parts.path or "/", safe=_PATH_SAFE, encoding="utf-8")
        if parts.query:
            path += "?" + quote(parts.query, safe=_PATH_SAFE, encoding="utf-8")
        ascii_host = host.encode("idna").decode("ascii") if host else ""
    except (ValueError, UnicodeError) as exc:
        raise ImageInputError(
            f"malformed image URL {short}: {exc}; send a valid http(s) URL or the image bytes",
            source=short,
        ) from None
    if scheme not in {"http", "https"}:
        raise ImageInputError(f"only http(s) URLs can be fetched, not {scheme!r}", source=short)
    if not host:
        raise ImageInputError(f"URL {short} has no host", source=short)
    if parts.username is not None or parts.password is not None:
        raise ImageInputError(f"URL {short} carries credentials; they are never sent",
                              source=short)
    if not host_allowed(host, opts.allowed_hosts) and not host_allowed(ascii_host,
                                                                       opts.allowed_hosts):
        raise ImageInputError(
            f"host {host!r} is not in allowed_hosts {list(opts.allowed_hosts)}", source=short
        )
    return ParsedURL(scheme, host, ascii_host, port or (443 if scheme == "https" else 80), path)


def check_url(url: str, opts: ImageOptions) -> Target:
    """:func:`check_url_policy`, then resolve the host to a vetted (globally routable)
    address; ImageInputError otherwise."""
    parsed = check_url_policy(url, opts)
    short = _short(url)
    scheme, host, ascii_host, port, path = (parsed.scheme, parsed.host, parsed.ascii_host,
                                            parsed.port, parsed.path)
    try:
        infos = _resolve(ascii_host, port)
    except (OSError, UnicodeError) as exc:
        raise ImageInputError(f"cannot resolve host {host!r}: {exc}", source=short) from None
    addrs = sorted({str(info[4][0]) for info in infos})  # type: ignore[index]
    if not addrs:
        raise ImageInputError(f"host {host!r} resolved to no address", source=short)
    bad = [a for a in addrs if not is_public_address(a)]
    if bad:
        raise ImageInputError(
            f"host {host!r} resolves to a non-public address ({', '.join(bad)}); only "
            "globally routable addresses are fetched (no loopback, private, shared, "
            "link-local, site-local or special-purpose ranges, also not wrapped in IPv6)",
            source=short,
        )
    return Target(scheme, ascii_host, port, addrs[0], path)


def _resolve(host: str, port: int) -> list[tuple[object, ...]]:
    """DNS, in one place (tests answer here instead of patching the socket module)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)  # type: ignore[return-value]


def fetch_url(url: str, opts: ImageOptions) -> bytes:
    """Download ``url`` after :func:`check_url`, within ``max_bytes`` and the ``url_timeout``
    deadline for the whole exchange."""
    target = check_url(url, opts)
    short = _short(url)
    deadline = time.monotonic() + opts.url_timeout
    conn = _PinnedHTTPS(target, deadline) if target.scheme == "https" else _Pinned(target, deadline)
    watchdog = threading.Timer(opts.url_timeout, conn.abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("GET", target.path,
                     headers={"Host": target.host, "User-Agent": "safeclip-guardrail"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise ImageInputError(
                f"fetching {short} gave HTTP {resp.status} (redirects are not followed)",
                source=short,
            )
        chunks: list[bytes] = []
        size = 0
        while size <= opts.max_bytes:
            conn.tighten()
            block = resp.read1(min(65536, opts.max_bytes + 1 - size))
            if not block:
                break
            chunks.append(block)
            size += len(block)
        if conn.aborted:  # the watchdog's shutdown reads as an early end of the body
            raise TimeoutError("deadline passed")
        if size <= opts.max_bytes and resp.length:  # Content-Length promised more
            raise http.client.IncompleteRead(b"", resp.length)
        data = b"".join(chunks)
    except ImageInputError:
        raise
    except Exception as exc:  # OSError, HTTPException, ValueError from a hostile peer
        if conn.aborted or time.monotonic() >= deadline:
            raise ImageInputError(
                f"fetching {short} did not finish within url_timeout={opts.url_timeout}s "
                "(connect, headers and body together); the server is too slow or stalling",
                source=short,
            ) from None
        raise ImageInputError(f"fetching {short} failed: {type(exc).__name__}: {exc}",
                              source=short) from None
    finally:
        watchdog.cancel()
        conn.close()
    if size > opts.max_bytes:
        raise ImageInputError(
            f"remote image {short} is over the limit of {opts.max_bytes} bytes", source=short
        )
    return data


class HttpFetcher:
    """The default :class:`~safeclip_guardrail.sources.ImageFetcher`: :func:`fetch_url`
    (http(s) only, allowed hosts, globally routable addresses after DNS, one total
    deadline, a size cap). Stateless; one instance can serve every guard and thread."""

    def fetch(self, url: str, options: ImageOptions) -> bytes:
        return fetch_url(url, options)

    def __repr__(self) -> str:
        return "HttpFetcher()"


def _short(url: str) -> str:
    text = url if len(url) <= 120 else url[:117] + "..."
    return text if text.isprintable() else repr(text)[1:-1]


class _Pinned(http.client.HTTPConnection):
    """Connects to the address vetted by :func:`check_url`, never to a fresh DNS answer, and
    keeps every socket operation inside one deadline."""

    def __init__(self, target: Target, deadline: float) -> None:
        super().__init__(target.host, target.port, timeout=max(0.001, deadline - time.monotonic()))
        self._address = target.address
        self._deadline = deadline
        self._abort_lock = threading.Lock()
        self.aborted = False

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left

    def _raw_socket(self) -> socket.socket:
        return socket.create_connection((self._address, self.port), self._remaining())

    def connect(self) -> None:
        self.sock = self._raw_socket()

    def tighten(self) -> None:
        """Shrink the per-read timeout to what is left of the deadline."""
        if self.sock is not None:
            self.sock.settimeout(self._remaining())

    def abort(self) -> None:
        """Watchdog: the deadline passed; unblock any read by shutting the socket down."""
        with self._abort_lock:
            self.aborted = True
            sock = self.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _PinnedHTTPS(_Pinned):
    default_port = http.client.HTTPS_PORT

    def __init__(self, target: Target, deadline: float) -> None:
        super().__init__(target, deadline)
        self._context = ssl.create_default_context()

    def connect(self) -> None:
        raw = self._raw_socket()
        raw.settimeout(self._remaining())
        self.sock = raw  # the watchdog can cut a stalled handshake
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)
