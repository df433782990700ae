"""Test doubles and tiny real models for safeclip-guardrail's tests and for users' own.

- :func:`build_tiny_clip` saves a tiny real CLIP that ``SafeCLIPGuard.from_pretrained(dir)`` loads.
- :func:`build_tiny_llava` saves a tiny real LLaVA that ``ChatLlava.from_pretrained(dir)`` loads.
- :class:`PlantedEncoder` is an encoder whose image/text embeddings a test chooses.
- :class:`FakeFetcher` serves remote image URLs from a dict (``SafeCLIPGuard(..., fetcher=)``).
"""

from safeclip_guardrail.testing._clip import TINY_IMAGE_SIZE, build_tiny_clip, hf_vision_to_open_clip
from safeclip_guardrail.testing._fetcher import FakeFetcher
from safeclip_guardrail.testing._llava import build_tiny_llava
from safeclip_guardrail.testing._planted import PlantedEncoder

__all__ = ["TINY_IMAGE_SIZE", "FakeFetcher", "PlantedEncoder", "build_tiny_clip", "build_tiny_llava",
           "hf_vision_to_open_clip"]
