"""Shared pieces of the trust-boundary tests: planted images, a recording model, surfaces.

The recording model is the referee: it decodes EVERY image it can find in what it
receives — every string that is a data URL or base64 of an image, every bytes value, in
content, nested blocks and additional kwargs, every frame, the pictures inside ZIP archives
(office documents) and the data URLs inside SVG/HTML — notes every PDF it receives, and
every http(s) URL and every string naming a planted file (a provider would fetch or read
those). A test then asserts that no received image is a forbidden one (the flagged image,
an image whose embedding was non-finite, hidden pixels), no received PDF is one holding a
forbidden picture, and that every received frame was judged: every view of it (the frame
itself for a square, else its padded whole-picture view and its tiles,
``safeclip_guardrail.views``) went through the guard's encoder.

Surfaces are objects with ``name``, ``styles`` and ``run(conversation, style)``; see
``tests/test_trust_matrix.py`` for how to add one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import itertools
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from PIL import Image, ImageSequence
from pydantic import Field

from safeclip_guardrail import ConceptBank, SafeCLIPGuard
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.views import picture_views

ANSWER = "a helpful answer"


def pixel_key(image: Image.Image) -> str:
    """Same key as the planted encoder: the RGB pixels and the size."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def frames_of(data: bytes) -> list[Image.Image] | None:
    """Every frame of ``data`` as Pillow decodes it, or None when it is no image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return [f.copy() for f in ImageSequence.Iterator(im)]
    except Exception:
        return None


class JudgedEncoder(PlantedEncoder):
    """A planted encoder that remembers the pixels of every frame it encoded (= judged)."""

    def __init__(self, bank: ConceptBank | None = None) -> None:
        super().__init__(bank)
        self.judged: set[str] = set()

    def encode_images(self, images: Sequence[Image.Image]) -> Any:
        for im in images:
            self.judged.add(pixel_key(im))
        return super().encode_images(images)


@dataclass
class Images:
    """Planted test images: ``benign`` (A), ``flagged`` (B), and what must never be seen."""

    encoder: JudgedEncoder
    guard: SafeCLIPGuard
    tmp: Path
    benign: bytes = b""
    benign2: bytes = b""
    flagged: bytes = b""
    nonfinite: bytes = b""
    forbidden: set[str] = field(default_factory=set)
    """Pixel keys no model may ever receive."""
    forbidden_docs: set[str] = field(default_factory=set)
    """SHA-256 of documents (PDFs) holding a forbidden picture: no model may receive them."""
    paths: set[str] = field(default_factory=set)
    """Planted file paths (as written into messages); none may reach a model or be opened."""

    def png(self, target: str) -> bytes:
        return self.encoder.plant_bytes(target)

    def path_of(self, data: bytes, name: str) -> str:
        p = self.tmp / name
        p.write_bytes(data)
        self.paths.add(str(p))
        return str(p)

    def forbid(self, data: bytes) -> None:
        for f in frames_of(data) or []:
            self.forbidden.add(pixel_key(f))

    def pdf(self, picture: bytes) -> bytes:
        """A one-page PDF of ``picture``; forbidden when the picture is."""
        buf = io.BytesIO()
        Image.open(io.BytesIO(picture)).convert("RGB").save(buf, format="PDF")
        out = buf.getvalue()
        flagged = any(pixel_key(f) in self.forbidden for f in frames_of(picture) or [])
        if flagged:
            self.forbidden_docs.add(hashlib.sha256(out).hexdigest())
        # What the renderer makes of the picture (the page, the re-encoded embedded picture)
        # shows what the picture shows: plant those readings with the picture's class.
        target = self.encoder.embedding_for("gun" if flagged else "neutral")
        for frame in self.guard.decode(out).frames:
            self.encoder.register(frame, target)
        return out


def make_images(tmp: Path, *, frames: int = 1) -> Images:
    encoder = JudgedEncoder(ConceptBank.default())
    guard = SafeCLIPGuard(encoder).with_options(images={"frames": frames})
    imgs = Images(encoder, guard, tmp)
    imgs.benign = imgs.png("neutral")
    imgs.benign2 = imgs.png("neutral")
    imgs.flagged = imgs.png("gun")
    imgs.forbid(imgs.flagged)
    nan_img = Image.fromarray(np.full((24, 24, 3), 7, np.uint8), "RGB")
    encoder.register(nan_img, np.full(encoder.embed_dim, np.nan, np.float32))
    buf = io.BytesIO()
    nan_img.save(buf, format="PNG")
    imgs.nonfinite = buf.getvalue()
    imgs.forbid(imgs.nonfinite)
    return imgs


# ---------------------------------------------------------------------- the referee
@dataclass
class Received:
    """What reached a model: decoded frames, URLs and path strings."""

    frames: list[str] = field(default_factory=list)
    views: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Frame key -> the pixel keys of the views the guard judges it as (a frame recorded
    without them must have been judged as itself, as a square picture is)."""
    urls: list[str] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    """SHA-256 of every PDF received."""


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
    if isinstance(value, BaseMessage):
        scan(value.content, into, depth + 1)
        scan(value.additional_kwargs, into, depth + 1)
        return
    if isinstance(value, str):
        into.strings.append(value)
        low = value.strip().lower()
        if low.startswith(("http://", "https://", "file:")):
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
            _record(f, into)
    elif b"%PDF-" in data[:1024]:  # a reader skips up to 1 KiB before the header
        into.documents.append(hashlib.sha256(data[data.index(b"%PDF-"):]).hexdigest())
    elif depth < 4 and data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for name in z.namelist():
                    scan_bytes(z.read(name), into, depth + 1)
        except (zipfile.BadZipFile, OSError, ValueError):
            pass
    elif depth < 4 and b"<" in data[:1024]:  # markup: pictures as embedded data URLs
        for m in _EMBEDDED.finditer(data):
            decoded = _decode_string(m.group(1).decode())
            if decoded is not None:
                scan_bytes(decoded, into, depth + 1)


def _record(frame: Image.Image, into: Received) -> None:
    key = pixel_key(frame)
    into.frames.append(key)
    rgb = frame if frame.mode == "RGB" else frame.convert("RGB")
    into.views[key] = tuple(pixel_key(v) for v in picture_views(rgb))  # the planted geometry


class RecordingChatModel(GenericFakeChatModel):
    """langchain-core's GenericFakeChatModel recording every request (sync, async, stream)."""

    messages: Any = Field(default_factory=lambda: itertools.cycle([ANSWER]))
    requests: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.requests.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> RecordingChatModel:
        return self

    def received(self) -> Received:
        out = Received()
        scan(self.requests, out)
        return out


def assert_only_judged(received: Received, imgs: Images, where: str) -> None:
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


# ---------------------------------------------------------------------- surfaces
@dataclass
class Outcome:
    """What a surface did with one conversation."""

    blocked: bool
    """The request was refused (refusal answer, GuardrailViolation, rail refusal, dropped)."""
    received: Received
    """Everything the recording model received."""
    called: bool
    """Whether the model was called at all."""


Conversation = list[Any]  # LangChain messages or provider dict messages


Runner = Callable[[Conversation, str], Outcome]


@dataclass
class Surface:
    """One way an image can reach a model: a name, its call styles, and a runner factory.

    ``build(imgs)`` returns ``run(conversation, style) -> Outcome``; the runner owns a fresh
    :class:`RecordingChatModel` per call (or resets it), so outcomes never mix.
    """

    name: str
    styles: tuple[str, ...]
    build: Callable[[Images], Runner]
    supports: Callable[[Conversation], bool] = lambda conv: True
    """False for conversations the framework itself cannot represent (say why where set)."""
    forwards_images: bool = True
    """False for surfaces whose model never receives images (NeMo's prompt is text)."""
    forwards_documents: bool = True
    """False for surfaces whose model takes pixels only (LLaVA is shown a judged PDF's
    rendered page, never the file)."""
    marks: tuple[Any, ...] = ()
    """pytest marks its tests need (a served surface: sockets to loopback)."""


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def drain(iterable: Iterable[Any]) -> list[Any]:
    return list(iterable)


async def adrain(aiterable: Any) -> list[Any]:
    return [x async for x in aiterable]
