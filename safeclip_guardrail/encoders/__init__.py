"""Image-text encoders behind one protocol (transformers, open_clip, planted test encoders)."""

from safeclip_guardrail.encoders.base import ImageEmbeddings, ImageTextEncoder, l2_normalize
from safeclip_guardrail.encoders.registry import MODEL_ALIASES, load_encoder, resolve_model_id

__all__ = [
    "MODEL_ALIASES",
    "ImageEmbeddings",
    "ImageTextEncoder",
    "l2_normalize",
    "load_encoder",
    "resolve_model_id",
]
