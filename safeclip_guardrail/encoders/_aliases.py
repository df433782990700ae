"""Model names users type, matched to the CLIP encoder their LVLM actually uses.

The guard is only "free" when it reads the same vision tower as the downstream LVLM, so
the aliases are named after LVLMs as well as after CLIP checkpoints. A leaf module: the
registry and the backends both read it, neither imports the other for it.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["MODEL_ALIASES", "resolve_model_id"]

_LLAVA_CLIP = "openai/clip-vit-large-patch14-336"

MODEL_ALIASES = MappingProxyType({
    # LVLMs -> the CLIP tower they were trained with (frozen, so it is CLIP's own weights)
    "llava-1.5": _LLAVA_CLIP,
    "llava-v1.5": _LLAVA_CLIP,
    "llava-hf/llava-1.5-7b-hf": _LLAVA_CLIP,
    "llava-hf/llava-1.5-13b-hf": _LLAVA_CLIP,
    "llava-next": _LLAVA_CLIP,
    "llava-v1.6": _LLAVA_CLIP,
    "llava-hf/llava-v1.6-mistral-7b-hf": _LLAVA_CLIP,
    "llava-hf/llava-v1.6-vicuna-7b-hf": _LLAVA_CLIP,
    "llava-hf/llama3-llava-next-8b-hf": _LLAVA_CLIP,
    # CLIP checkpoints by short name
    "vit-l-14-336": _LLAVA_CLIP,
    "clip-vit-l-14-336": _LLAVA_CLIP,
    "vit-l-14": "openai/clip-vit-large-patch14",
    "clip-vit-l-14": "openai/clip-vit-large-patch14",
    "vit-b-16": "openai/clip-vit-base-patch16",
    "clip-vit-b-16": "openai/clip-vit-base-patch16",
    "vit-b-32": "openai/clip-vit-base-patch32",
    "clip-vit-b-32": "openai/clip-vit-base-patch32",
})
"""Alias (case-insensitive) -> hub id or ``open_clip:`` spec."""


def resolve_model_id(model: str) -> str:
    """Expand an alias; anything else (hub id, directory, open_clip spec) is returned as is."""
    return MODEL_ALIASES.get(model.strip().lower(), model.strip())
