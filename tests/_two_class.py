"""A guard on a tiny CLIP's real towers whose verdict is planted: ``flag`` is a gun.

The ChatLlava tests (unit, trust, cookbook) need the real vision tower and projection (the
fused guard reads LLaVA's own tower pass) but a known verdict: the two descriptor
embeddings are set from the two pictures' own embeddings, so ``flag`` scores "gun" and
``ok`` "neutral" whatever the random weights are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from safeclip_guardrail import ConceptBank, GuardConfig, SafeCLIPGuard
from safeclip_guardrail.encoders.hf import TransformersCLIPEncoder

BANK = {"classes": [
    {"name": "neutral", "kind": "benign", "descriptors": ["a safe picture"]},
    {"name": "gun", "kind": "toxic", "descriptors": ["a gun picture"]},
]}


def two_class_guard(clip_dir: Path, flag: Image.Image, ok: Image.Image,
                    **config: Any) -> SafeCLIPGuard:
    """``config`` goes to :class:`GuardConfig` (the bank is set here)."""
    standalone = SafeCLIPGuard.from_pretrained(str(clip_dir), device="cpu", dtype="float32")
    e_flag, e_ok = standalone.embed_images([flag, ok])
    encoder = TransformersCLIPEncoder.from_pretrained(str(clip_dir), device="cpu",
                                                      dtype="float32", load_vision=False)
    return SafeCLIPGuard(encoder, config=GuardConfig(concepts=ConceptBank.from_dict(BANK),
                                                     **config),
                         text_embeddings=np.stack([e_ok - e_flag, e_flag - e_ok]))
