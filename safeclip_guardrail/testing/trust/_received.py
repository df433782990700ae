"""The referee: every picture, URL, path and document a model received, and whether it may.

:func:`scan` is greedy on purpose. It decodes every string that is a data URL or base64 of
an image, every bytes value, in every field at every depth, every frame, the pictures
inside ZIP archives (office documents) and the data URLs inside SVG/HTML; it notes every
PDF, every http(s)/file URL and every string (a provider would fetch a URL, a tool could
read a path). :func:`assert_only_judged` then says whether what a surface let through keeps
the promise: no forbidden picture (also not as a view of a larger picture), no PDF holding
one, no URL, no planted path, and every frame judged view by view by the guard's encoder.

Framework objects are turned into plain values by their adapters first (the LangChain one:
:func:`safeclip_guardrail.langchain.testing.plain`), so this module imports no framework.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from safeclip_guardrail.images.views import picture_views
from safeclip_guardrail.testing.trust._images import TrustImages, frames_of, pixel_key
from safeclip_guardrail.testing.trust._messages import Message

__all__ = ["Received", "assert_only_judged", "scan", "scan_bytes"]


@dataclass
class Received:
    """What reached a model: decoded frames, URLs, strings and documents."""

    frames: list[str] = field(default_factory=list)
    """Pixel keys of every frame received."""
    views: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Frame key -> the pixel keys of the views the guard judges it as (a frame recorded
    without them must have been judged as itself, as a square picture is)."""
    urls: list[str] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    """SHA-256 of every PDF received."""

    def add_frame(self, frame: Image.Image) -> None:
        """Record one picture a model was shown, with the views the guard would judge."""
        key = pixel_key(frame)
        self.frames.append(key)
        rgb = frame if frame.mode == "RGB" else frame.convert("RGB")
        self.views[key] = tuple(pixel_key(v) for v in picture_views(rgb))


def _decode_string(s: str) -> bytes | None:
    t = s.strip()
    if t[:5].lower() == "data:":
        _, sep, payload = t.partition(",")
        t = payload if sep else ""
    compact = "".join(t.split())
    if len(compact) < 16:
        return None
    compact += "=" * (-len(compact) % 4)
    for alt in (None, b"-_"):
        try:
            return base64.b64decode(compact, altchars=alt, validate=True)
        except (binascii.Error, ValueError):
            continue
    return None


def scan(value: Any, into: Received, depth: int = 0) -> None:
    """Find every image, URL and string in ``value`` (greedy: all fields, all nesting)."""
    if depth > 40:
        return
    if isinstance(value, Message):
        scan(value.content, into, depth + 1)
        scan(value.extras, into, depth + 1)
    elif isinstance(value, str):
        into.strings.append(value)
        if value.strip().lower().startswith(("http://", "https://", "file:")):
            into.urls.append(value)
        data = _decode_string(value)
        if data is not None:
            scan_bytes(data, into)
    elif isinstance(value, (bytes, bytearray)):
        scan_bytes(bytes(value), into)
    elif isinstance(value, dict):
        for v in value.values():
            scan(v, into, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            scan(v, into, depth + 1)


_EMBEDDED = re.compile(rb"data:[\w/+.-]*;base64,([A-Za-z0-9+/=]+)")


def scan_bytes(data: bytes, into: Received, depth: int = 0) -> None:
    """Every picture in ``data``: its frames, or a PDF's hash, or what a ZIP archive or a
    markup document (SVG, HTML) holds."""
    frames = frames_of(data)
    if frames:
        for f in frames:
            into.add_frame(f)
    elif b"%PDF-" in data[:1024]:  # a reader skips up to 1 KiB before the header
        into.documents.append(hashlib.sha256(data[data.index(b"%PDF-"):]).hexdigest())
    elif depth < 4 and data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for name in z.namelist():
                    scan_bytes(z.read(name), into, depth + 1)
        except (zipfile.BadZipFile, OSError, ValueError):
            pass  # not an archive after all: nothing a reader could show
    elif depth < 4 and b"<" in data[:1024]:  # markup: pictures as embedded data URLs
        for m in _EMBEDDED.finditer(data):
            decoded = _decode_string(m.group(1).decode())
            if decoded is not None:
                scan_bytes(decoded, into, depth + 1)


def assert_only_judged(received: Received, imgs: TrustImages, where: str) -> None:
    """No forbidden image, URL or planted path reached the model; every frame was judged."""
    assert not received.urls, f"{where}: a URL reached the model: {received.urls[0][:80]}"
    leaked = [s for s in received.strings if s.strip() in imgs.paths
              or any(s.strip().endswith(p) for p in imgs.paths)]
    assert not leaked, f"{where}: a file path reached the model: {leaked[:2]}"
    bad = [k for k in received.frames if k in imgs.forbidden
           or any(v in imgs.forbidden for v in received.views.get(k, ()))]  # e.g. as a tile
    assert not bad, f"{where}: the model received a forbidden image ({len(bad)} frames)"
    docs = [d for d in received.documents if d in imgs.forbidden_docs]
    assert not docs, f"{where}: the model received a PDF holding a forbidden picture"
    unjudged = [k for k in received.frames
                if not all(v in imgs.encoder.judged for v in received.views.get(k, (k,)))]
    assert not unjudged, f"{where}: the model received {len(unjudged)} frames nobody judged"
