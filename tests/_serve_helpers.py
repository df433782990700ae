"""Shared pieces of the service tests: planted guards and a gate on the encoder."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from PIL import Image

from safeclip_guardrail import ConceptBank, SafeCLIPGuard
from safeclip_guardrail.encoders.base import ImageEmbeddings
from safeclip_guardrail.testing import PlantedEncoder

LOOPBACK = ["127.0.0.1"]


class GatedEncoder(PlantedEncoder):
    """A planted encoder whose forwards wait while ``gate`` is cleared (to line requests up)."""

    def __init__(self) -> None:
        super().__init__(ConceptBank.default())
        self.gate = threading.Event()
        self.gate.set()

    def encode_images(self, images: Sequence[Image.Image]) -> ImageEmbeddings:
        if not self.gate.wait(timeout=60):
            raise RuntimeError("gate never opened")
        return super().encode_images(images)


def planted_guard(**options: object) -> tuple[PlantedEncoder, SafeCLIPGuard]:
    enc = GatedEncoder()
    guard = SafeCLIPGuard(enc)
    return enc, (guard.with_options(**options) if options else guard)
