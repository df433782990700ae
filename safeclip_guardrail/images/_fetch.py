"""Fetching remote images, only when allowed, without becoming an SSRF vector.

Rules: http(s) only; the host must be on ``ImageOptions.allowed_hosts``; every address the
name resolves to must be globally reachable by the IANA special-purpose registries, with
the IPv4 address inside mapped, translated, NAT64, 6to4 and ISATAP forms judged too
(:mod:`safeclip_guardrail.images._addresses`). The connection goes to the vetted address (no
second DNS lookup that a rebinding attack could change); redirects are not followed (a 3xx
is an error, so no hop escapes these checks); the body is capped at ``max_bytes`` while it
streams; and ``url_timeout`` is one total deadline for DNS, connect, TLS, headers and body
(:mod:`safeclip_guardrail.images._deadline`: every socket call bounded by what is left, and a
watchdog that holds the exchange's sockets itself), so no server, HTTP/1.0 or
``Connection: close``, chunked, dripping headers or body, endless ``100 Continue``
responses or a stalled TLS handshake, holds a fetch past it. Every step, URL parsing
included, fails with ImageInputError.

The client is the standard library's ``http.client`` over those sockets. httpx was
considered: it is not a dependency of the core, its timeouts are per operation too (a total
deadline still needs the watchdog), and pinning the address means a custom network backend;
it would add a dependency without removing any of the code above.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.images._addresses import address_verdict
from safeclip_guardrail.images._deadline import Deadline, DeadlineSocket, DeadlineSSLSocket

__all__ = ["HttpFetcher", "ParsedURL", "Target", "check_url", "check_url_policy", "fetch_url",
           "host_allowed"]

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
        msg = (f"remote image URL {short} not fetched: URL fetching is off. Pass the image as "
               "bytes/base64, or set ImageOptions(allow_urls=True, allowed_hosts=(...))")
        raise ImageInputError(msg, source=short)
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
        msg = f"malformed image URL {short}: {exc}; send a valid http(s) URL or the image bytes"
        raise ImageInputError(msg, source=short) from None
    if scheme not in {"http", "https"}:
        msg = f"only http(s) URLs can be fetched, not {scheme!r}"
        raise ImageInputError(msg, source=short)
    if not host:
        msg = f"URL {short} has no host"
        raise ImageInputError(msg, source=short)
    if parts.username is not None or parts.password is not None:
        msg = f"URL {short} carries credentials; they are never sent"
        raise ImageInputError(msg, source=short)
    if not host_allowed(host, opts.allowed_hosts) and not host_allowed(ascii_host,
                                                                       opts.allowed_hosts):
        msg = f"host {host!r} is not in allowed_hosts {list(opts.allowed_hosts)}"
        raise ImageInputError(msg, source=short)
    return ParsedURL(scheme, host, ascii_host, port or (443 if scheme == "https" else 80), path)


def check_url(url: str, opts: ImageOptions) -> Target:
    """:func:`check_url_policy`, then resolve the host (within ``url_timeout``) to vetted,
    globally reachable addresses; ImageInputError otherwise."""
    return _check_url(url, opts, Deadline(opts.url_timeout))


def _check_url(url: str, opts: ImageOptions, deadline: Deadline) -> Target:
    parsed = check_url_policy(url, opts)
    short = _short(url)
    try:
        infos = _resolve_within(parsed.ascii_host, parsed.port, deadline)
    except TimeoutError:
        raise _timed_out(short, opts) from None
    except (OSError, UnicodeError) as exc:
        msg = f"cannot resolve host {parsed.host!r}: {exc}"
        raise ImageInputError(msg, source=short) from None
    addrs = sorted({str(info[4][0]) for info in infos})  # type: ignore[index]
    if not addrs:
        msg = f"host {parsed.host!r} resolved to no address"
        raise ImageInputError(msg, source=short)
    for addr in addrs:
        verdict = address_verdict(addr)
        if not verdict.reachable:
            msg = (f"host {parsed.host!r} resolves to a non-public address {addr} "
                   f"({verdict.reason}); only globally reachable addresses are fetched")
            raise ImageInputError(msg, source=short)
    return Target(parsed.scheme, parsed.ascii_host, parsed.port, addrs[0], parsed.path)


def _resolve(host: str, port: int) -> list[tuple[object, ...]]:
    """DNS, in one place (tests answer here instead of patching the socket module)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)  # type: ignore[return-value]


def _resolve_within(host: str, port: int, deadline: Deadline) -> list[tuple[object, ...]]:
    """:func:`_resolve` in a helper thread, waited for until the deadline: the system
    resolver has no timeout of its own that this module controls. A lookup that overruns
    is left to finish (or time out) in its daemon thread."""
    answer: list[list[tuple[object, ...]]] = []
    failure: list[BaseException] = []

    def lookup() -> None:
        try:
            answer.append(_resolve(host, port))
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    worker = threading.Thread(target=lookup, name="safeclip-dns", daemon=True)
    worker.start()
    worker.join(deadline.left())
    if failure:
        raise failure[0]
    if not answer:
        msg = "DNS lookup did not finish"
        raise TimeoutError(msg)
    return answer[0]


def fetch_url(url: str, opts: ImageOptions) -> bytes:
    """Download ``url`` after :func:`check_url`, within ``max_bytes`` and one ``url_timeout``
    deadline for the whole exchange, DNS included."""
    short = _short(url)
    deadline = Deadline(opts.url_timeout)
    with deadline.watch():
        target = _check_url(url, opts, deadline)
        conn: _Pinned | None = None
        try:
            conn = _Pinned(target, deadline)
            data = _download(conn, target, opts, short)
            if deadline.fired:  # a cut socket reads as an early end of the body
                msg = "deadline passed"
                raise TimeoutError(msg)
        except ImageInputError:
            raise
        except Exception as exc:  # OSError, HTTPException, ValueError from a hostile peer
            if isinstance(exc, TimeoutError) or deadline.expired:
                raise _timed_out(short, opts) from None
            msg = f"fetching {short} failed: {type(exc).__name__}: {exc}"
            raise ImageInputError(msg, source=short) from None
        finally:
            deadline.stop()
            if conn is not None:
                conn.close()
    return data


def _download(conn: _Pinned, target: Target, opts: ImageOptions, short: str) -> bytes:
    conn.request("GET", target.path,
                 headers={"Host": target.host, "User-Agent": "safeclip-guardrail"})
    resp = conn.getresponse()
    if resp.status != 200:
        msg = f"fetching {short} gave HTTP {resp.status} (redirects are not followed)"
        raise ImageInputError(msg, source=short)
    chunks: list[bytes] = []
    size = 0
    while size <= opts.max_bytes:
        block = resp.read1(min(65536, opts.max_bytes + 1 - size))
        if not block:
            break
        chunks.append(block)
        size += len(block)
    if size > opts.max_bytes:
        msg = f"remote image {short} is over the limit of {opts.max_bytes} bytes"
        raise ImageInputError(msg, source=short)
    if resp.length:  # Content-Length promised more than arrived (fetch_url words it)
        raise http.client.IncompleteRead(b"".join(chunks), resp.length)
    return b"".join(chunks)


def _timed_out(short: str, opts: ImageOptions) -> ImageInputError:
    return ImageInputError(
        f"fetching {short} did not finish within url_timeout={opts.url_timeout}s (DNS, "
        "connect, TLS, headers and body together); the server is too slow or stalling",
        source=short,
    )


class HttpFetcher:
    """The default :class:`~safeclip_guardrail.images.sources.ImageFetcher`: :func:`fetch_url`
    (http(s) only, allowed hosts, globally reachable addresses after DNS, one total
    deadline, a size cap). Stateless; one instance can serve every guard and thread."""

    def fetch(self, url: str, options: ImageOptions) -> bytes:
        return fetch_url(url, options)

    def __repr__(self) -> str:
        return "HttpFetcher()"


def _short(url: str) -> str:
    text = url if len(url) <= 120 else url[:117] + "..."
    return text if text.isprintable() else repr(text)[1:-1]


_TLS_LOCK = threading.Lock()
_TLS: list[ssl.SSLContext] = []


def _tls_context() -> ssl.SSLContext:
    """The system's default verifying context, built once (loading the CA store is slow)
    and shared: ``wrap_socket`` on one context is thread-safe."""
    with _TLS_LOCK:
        if not _TLS:
            _TLS.append(ssl.create_default_context())
        return _TLS[0]


class _Pinned(http.client.HTTPConnection):
    """Connects to the address vetted by :func:`check_url`, never to a fresh DNS answer,
    over sockets bound to the exchange's deadline (TLS for https, SNI and certificate
    checked against the host name)."""

    def __init__(self, target: Target, deadline: Deadline) -> None:
        super().__init__(target.host, target.port, timeout=deadline.left())
        self._address = target.address
        self._deadline = deadline
        self._https = target.scheme == "https"

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self._deadline.left())
        sock: socket.socket = DeadlineSocket(self._deadline, raw)
        if self._https:
            context = _tls_context()
            context.sslsocket_class = DeadlineSSLSocket
            tls = cast(DeadlineSSLSocket, context.wrap_socket(
                sock, server_hostname=self.host, do_handshake_on_connect=False))
            tls.bind_deadline(self._deadline)
            self.sock = tls
            tls.do_handshake()
        else:
            self.sock = sock
