"""The planted pictures of the trust suite and the encoder that remembers what it judged.

``benign`` (A) and ``flagged`` (B) are real PNGs whose embeddings a
:class:`~safeclip_guardrail.testing.PlantedEncoder` chooses; ``nonfinite`` embeds as NaN (it
must fail closed). What no model may ever receive is kept as pixel keys (``forbidden``), PDF
hashes (``forbidden_docs``) and planted file paths (``paths``), so the referee can tell.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.encoders.base import ImageEmbeddings
from safeclip_guardrail.guard import SafeCLIPGuard
from safeclip_guardrail.images.sources import EncodedImage
from safeclip_guardrail.testing._planted import PlantedEncoder
from safeclip_guardrail.testing.documents import pdf_of
from safeclip_guardrail.testing.pictures import encode

__all__ = ["JudgedEncoder", "TrustImages", "frames_of", "make_images", "pixel_key"]


def pixel_key(image: Image.Image) -> str:
    """Same key as the planted encoder: the RGB pixels and the size."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def frames_of(data: bytes) -> list[Image.Image] | None:
    """Every frame of ``data`` as Pillow decodes it, or None when it is no image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return [f.copy() for f in ImageSequence.Iterator(im)]
    except Exception:  # not a picture (any reader error): the caller records nothing
        return None


class JudgedEncoder(PlantedEncoder):
    """A planted encoder that remembers the pixels of every frame it encoded (= judged)."""

    def __init__(self, bank: ConceptBank | None = None) -> None:
        super().__init__(bank)
        self.judged: set[str] = set()

    def encode_images(self, images: Sequence[Image.Image]) -> ImageEmbeddings:
        for im in images:
            self.judged.add(pixel_key(im))
        return super().encode_images(images)


@dataclass
class TrustImages:
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
        """A new planted PNG of class ``target`` (``"neutral"``, ``"gun"``...)."""
        return self.encoder.plant_bytes(target)

    def path_of(self, data: bytes, name: str) -> str:
        """Write ``data`` to a planted file and return its path (which must never be read)."""
        p = self.tmp / name
        p.write_bytes(data)
        self.paths.add(str(p))
        return str(p)

    def forbid(self, data: bytes) -> None:
        """No frame of ``data`` may reach a model."""
        for f in frames_of(data) or []:
            self.forbidden.add(pixel_key(f))

    def pdf(self, picture: bytes) -> bytes:
        """A one-page PDF of ``picture``; forbidden when the picture is."""
        out = pdf_of(picture)
        flagged = any(pixel_key(f) in self.forbidden for f in frames_of(picture) or [])
        if flagged:
            self.forbidden_docs.add(hashlib.sha256(out).hexdigest())
        # What the renderer makes of the picture (the page, the re-encoded embedded picture)
        # shows what the picture shows: plant those readings with the picture's class.
        target = self.encoder.embedding_for("gun" if flagged else "neutral")
        for frame in self.guard.decode(out).frames:
            self.encoder.register(frame, target)
        return out

    def judges_documents(self) -> bool:
        """Whether the guard judges PDFs (renders their pages) or finds them unreadable."""
        probe = EncodedImage(self.pdf(self.benign), "<probe>", "application/pdf")
        return self.guard.judge_batch([probe])[0].verdict is not None


def make_images(tmp: Path, *, frames: int = 1) -> TrustImages:
    """Fresh planted images (and a fresh guard) whose planted files live under ``tmp``."""
    encoder = JudgedEncoder(ConceptBank.default())
    guard = SafeCLIPGuard(encoder).with_options(images={"frames": frames})
    imgs = TrustImages(encoder, guard, tmp)
    imgs.benign = imgs.png("neutral")
    imgs.benign2 = imgs.png("neutral")
    imgs.flagged = imgs.png("gun")
    imgs.forbid(imgs.flagged)
    nan_img = Image.fromarray(np.full((24, 24, 3), 7, np.uint8), "RGB")
    encoder.register(nan_img, np.full(encoder.embed_dim, np.nan, np.float32))
    imgs.nonfinite = encode(nan_img)
    imgs.forbid(imgs.nonfinite)
    return imgs
