"""Explicit image sources: where encoded image bytes come from, and who may name a path.

The trust boundary starts here. Two kinds of caller hand the guard images:

- **The application itself** (``guard.check("photo.jpg")``, the CLI, document metadata keys
  an ingestion pipeline sets): it may name files on disk — :func:`from_path`.
- **Message content** (a chat message, a request body, a tool result): whoever wrote it is
  not trusted, so a string there is only ever a ``data:`` URL, base64, or an ``http(s)`` URL
  (fetched only when :class:`~safeclip_guardrail.config.ImageOptions` allows it) —
  :func:`from_untrusted_string`. It is never opened as a path, so message content cannot
  make a server read, classify or probe its own files.

Every constructor returns an :class:`EncodedImage`: the exact bytes that will be judged,
and — after judging — the exact bytes that are forwarded to the model.

Remote images come through an :class:`ImageFetcher` (by default :class:`HttpFetcher`);
tests and applications with their own HTTP stack inject another one. Whatever the fetcher,
the URL policy of :class:`~safeclip_guardrail.config.ImageOptions` (``allow_urls``,
http(s), ``allowed_hosts``) is checked first, so no fetcher is asked for a forbidden URL.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from safeclip_guardrail._sniff import sniff_document, sniff_format
from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.images._fetch import HttpFetcher, check_url_policy

__all__ = [
    "DEFAULT_FETCHER",
    "EncodedImage",
    "HttpFetcher",
    "ImageFetcher",
    "fetch_remote",
    "from_application_string",
    "from_base64",
    "from_bytes",
    "from_data_url",
    "from_path",
    "from_untrusted_string",
    "from_url",
    "inline_bytes",
    "sniff_format",
    "to_base64",
    "to_data_url",
]

_DEFAULT_OPTIONS = ImageOptions()
_GENERIC_MIMES = frozenset({"application/octet-stream", "application/pdf"})
_LONGEST_PATH = 4096
"""Longer strings are never file names (PATH_MAX on Linux): they are data."""


@runtime_checkable
class ImageFetcher(Protocol):
    """Gets the bytes of a remote image URL.

    ``fetch`` is only called for URLs that already passed the policy of ``options``
    (``allow_urls``, http(s), ``allowed_hosts``); it still receives ``options`` for its own
    limits (``url_timeout``, ``max_bytes``). Failures raise
    :class:`~safeclip_guardrail.errors.ImageInputError`, never anything else.
    """

    def fetch(self, url: str, options: ImageOptions) -> bytes: ...


DEFAULT_FETCHER: ImageFetcher = HttpFetcher()
"""The fetcher used when none is given."""


@dataclass(frozen=True)
class EncodedImage:
    """Encoded image bytes and a short, safe description of where they came from."""

    data: bytes
    """The encoded image (PNG, JPEG, ...), exactly as judged or forwarded."""
    source: str = "<bytes>"
    """For messages and verdicts: a path, a URL host, ``<data URL, n chars>``; never a payload."""
    mime_type: str | None = None
    """The media type the bytes really have (sniffed), or None when not yet known."""

    def __repr__(self) -> str:
        return f"EncodedImage({len(self.data)} bytes, source={self.source!r}, mime_type={self.mime_type!r})"


def from_bytes(data: bytes | bytearray | memoryview, *, source: str | None = None,
               options: ImageOptions | None = None) -> EncodedImage:
    """Bytes the application already holds."""
    raw = bytes(data)
    desc = source or f"<{len(raw)} bytes>"
    return EncodedImage(_checked_size(raw, desc, options or _DEFAULT_OPTIONS), desc)


def from_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes], *,
              options: ImageOptions | None = None) -> EncodedImage:
    """A file named by the application itself (never by message content).

    A regular file only, capped at ``max_bytes``. It is opened non-blocking and checked with
    ``fstat`` on the open descriptor, so a FIFO or a device cannot stall the guard and a
    file swapped after a check is still caught; every OS failure is an ImageInputError."""
    opts = options or _DEFAULT_OPTIONS
    try:
        raw = os.fspath(path)
        name = os.fsdecode(raw)
    except (TypeError, ValueError, UnicodeError) as exc:
        shown = _short(repr(path))
        msg = f"invalid image path {shown}: {exc}"
        raise ImageInputError(msg, source=shown) from None
    shown = _short(name if name.isprintable() else repr(name)[1:-1])  # no control characters
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(raw, flags)
    except FileNotFoundError:
        msg = f"image file not found: {shown}"
        raise ImageInputError(msg, source=shown) from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        msg = f"cannot open image file {shown}: {reason}; check the path and its permissions"
        raise ImageInputError(msg, source=shown) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            msg = f"not a regular file: {shown}"
            raise ImageInputError(msg, source=shown)
        if st.st_size > opts.max_bytes:
            msg = (f"image file {shown} is {st.st_size} bytes, over the limit of {opts.max_bytes}; "
                   "raise ImageOptions.max_bytes if this is expected")
            raise ImageInputError(msg, source=shown)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(opts.max_bytes + 1)
    except OSError as exc:
        msg = f"cannot read image file {shown}: {exc.strerror or exc}"
        raise ImageInputError(msg, source=shown) from None
    finally:
        os.close(fd)
    if len(data) > opts.max_bytes:
        msg = (f"image file {shown} grew over the limit of {opts.max_bytes} bytes while it was "
               "read")
        raise ImageInputError(msg, source=shown)
    return EncodedImage(_checked_size(data, shown, opts), shown)


def from_data_url(url: str, *, options: ImageOptions | None = None) -> EncodedImage:
    """A ``data:[<mime>];base64,<payload>`` URL whose media type is an image's, none,
    ``application/octet-stream`` or ``application/pdf``.

    The declared type is never trusted either way (the bytes are sniffed and judged), so a
    generic type is accepted; a type that says "not a picture" (``text/plain``...) is
    refused, as its sender says it is something else."""
    desc = f"<data URL, {len(url)} chars>"
    header, sep, payload = url.strip().partition(",")
    if not sep or header[:5].lower() != "data:":
        msg = ("malformed data URL: no ',' separating header and data (expected "
               "'data:<mime>;base64,<data>')")
        raise ImageInputError(msg, source=desc)
    mime = header[5:].split(";", 1)[0].strip().lower()
    if mime and not mime.startswith("image/") and mime not in _GENERIC_MIMES:
        msg = f"data URL has media type {mime!r}, not an image"
        raise ImageInputError(msg, source=desc)
    if ";base64" not in header.lower():
        msg = "data URL is not base64-encoded (';base64' missing)"
        raise ImageInputError(msg, source=desc)
    data = _b64decode(payload, desc, what="data URL payload")
    return EncodedImage(_checked_size(data, desc, options or _DEFAULT_OPTIONS), desc)


def from_base64(text: str, *, options: ImageOptions | None = None) -> EncodedImage:
    """Plain base64 image data (no ``data:`` header)."""
    desc = f"<base64, {len(text)} chars>"
    data = _b64decode(text, desc, what="base64 image data")
    return EncodedImage(_checked_size(data, desc, options or _DEFAULT_OPTIONS), desc)


def fetch_remote(url: str, *, options: ImageOptions | None = None,
                 fetcher: ImageFetcher | None = None) -> bytes:
    """The bytes at ``url``: the URL policy of ``options`` first (no network), then
    ``fetcher`` (default :class:`HttpFetcher`), then the size limit. The one path every
    remote image takes, trusted (``guard.check(url)``) or from message content."""
    opts = options or _DEFAULT_OPTIONS
    check_url_policy(url, opts)
    data = (DEFAULT_FETCHER if fetcher is None else fetcher).fetch(url, opts)
    if not isinstance(data, bytes):
        msg = (f"the image fetcher {type(fetcher).__name__} returned {type(data).__name__} for "
               f"{_url_desc(url)}, not bytes; an ImageFetcher.fetch must return bytes")
        raise ImageInputError(msg, source=_url_desc(url))
    return _checked_size(data, _url_desc(url), opts)


def from_url(url: str, *, options: ImageOptions | None = None,
             fetcher: ImageFetcher | None = None) -> EncodedImage:
    """An ``http(s)`` URL, fetched once (only when ``allow_urls`` and the host is allowed)
    by ``fetcher`` (default :class:`HttpFetcher`)."""
    return EncodedImage(fetch_remote(url, options=options, fetcher=fetcher), _url_desc(url))


def from_untrusted_string(value: str, *, options: ImageOptions | None = None,
                          fetcher: ImageFetcher | None = None) -> EncodedImage:
    """A string found in message content: a data URL, an http(s) URL, or base64 — never a path.

    Anything else (a file path, another URL scheme, text) is an :class:`ImageInputError`
    whose message is the same whether or not such a file exists, so it is no oracle either.
    An http(s) URL goes through :func:`fetch_remote` with ``fetcher``.
    """
    if not isinstance(value, str):
        msg = f"expected an image string (data URL, base64 or http(s) URL), got {type(value).__name__}"
        raise ImageInputError(msg, source=f"<{type(value).__name__}>")
    s = value.strip()
    if not s:
        msg = "image string is empty"
        raise ImageInputError(msg, source="<empty string>")
    head = s[:16].lower()
    if head.startswith("data:"):
        return from_data_url(s, options=options)
    if head.startswith(("http://", "https://")):
        return from_url(s, options=options, fetcher=fetcher)
    if "://" in s[:32] or s.startswith(("/", "\\", "~", ".")) or ":\\" in s[:4]:
        msg = ("an image in message content must be a data URL, base64 data or an http(s) URL; "
               "file paths and other URL schemes are never read from messages (load the file in "
               "your application and send its bytes)")
        raise ImageInputError(msg, source="<untrusted string>")
    return from_base64(s, options=options)


def from_application_string(value: str, *, options: ImageOptions | None = None,
                            fetcher: ImageFetcher | None = None) -> EncodedImage:
    """A string the application itself passes (``guard.check("photo.jpg")``, the CLI): a data
    URL, an http(s) URL, base64 data, or a file path.

    The same rules as :func:`from_untrusted_string` for data and URLs; a string that is not
    one of those is a path (:func:`from_path`). A string is base64 data when it decodes to
    bytes that sniff as a picture or a document, or is longer than any path can be.
    """
    s = value.strip()
    if not s:
        msg = "image string is empty"
        raise ImageInputError(msg, source="<empty string>")
    head = s[:16].lower()
    if head.startswith(("data:", "http://", "https://")):
        return from_untrusted_string(s, options=options, fetcher=fetcher)
    if "://" in s[:32]:
        scheme = s.split("://", 1)[0][:16]
        msg = (f"unsupported URL scheme {scheme!r}; only http(s) URLs (when allowed), data URLs, "
               "paths, bytes and base64 are accepted")
        raise ImageInputError(msg, source=_short(s))
    data = _maybe_base64(s)
    if data is not None and (len(s) > _LONGEST_PATH or sniff_format(data[:32]) is not None
                             or sniff_document(data[:1024]) is not None):
        return EncodedImage(_checked_size(data, f"<base64, {len(s)} chars>",
                                          options or _DEFAULT_OPTIONS), f"<base64, {len(s)} chars>")
    if len(s) > _LONGEST_PATH:
        msg = f"string of {len(s)} chars is neither base64 image data nor a path"
        raise ImageInputError(msg, source=f"<string, {len(s)} chars>")
    try:
        return from_path(s, options=options)
    except ImageInputError as exc:
        if "not found" not in str(exc):
            raise
        msg = (f"image file not found: {exc.source} (the string is not an existing file, a data "
               "URL, an http(s) URL or base64 image data)")
        raise ImageInputError(msg, source=exc.source) from None


def to_base64(image: EncodedImage) -> str:
    return base64.b64encode(image.data).decode("ascii")


def to_data_url(image: EncodedImage) -> str:
    return f"data:{image.mime_type or 'application/octet-stream'};base64,{to_base64(image)}"


def inline_bytes(value: str) -> bytes | None:
    """The bytes of a ``data:`` URL or a base64 string, or None when it is neither."""
    s = value.strip()
    if s[:5].lower() == "data:":
        header, sep, payload = s.partition(",")
        if not sep or ";base64" not in header.lower():
            return None
        s = payload
    compact = "".join(s.split())
    if not compact:
        return None
    try:
        return _b64decode(compact, "<inline>", what="base64")
    except ImageInputError:
        return None


# ---------------------------------------------------------------------- helpers
def _maybe_base64(text: str) -> bytes | None:
    try:
        return _b64decode(text, "<string>", what="base64")
    except ImageInputError:
        return None



def _b64decode(text: str, desc: str, *, what: str) -> bytes:
    """Standard or URL-safe base64, whitespace and missing padding tolerated. Both alphabets
    are accepted (some clients send URL-safe): the decoded bytes are sniffed and judged, so
    the alphabet changes nothing about what is checked."""
    compact = "".join(text.split())
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        try:  # URL-safe alphabet, as some clients send
            return base64.b64decode(compact, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            msg = f"{what} is not valid base64"
            raise ImageInputError(msg, source=desc) from None


def _checked_size(data: bytes, desc: str, opts: ImageOptions) -> bytes:
    if not data:
        msg = f"image {desc} is empty (0 bytes)"
        raise ImageInputError(msg, source=desc)
    if len(data) > opts.max_bytes:
        msg = (f"image {desc} is {len(data)} bytes, over the limit of {opts.max_bytes}; raise "
               "ImageOptions.max_bytes if this is expected")
        raise ImageInputError(msg, source=desc)
    return data


def _url_desc(url: str) -> str:
    return _short(url)


def _short(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."
