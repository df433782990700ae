"""Model names users type, matched to the CLIP encoder their LVLM actually uses.

The guard is only "free" when it reads the same vision tower as the downstream LVLM, so
the aliases are named after LVLMs as well as after CLIP checkpoints.
"""

from __future__ import annotations

from safeclip_guardrail.encoders._aliases import MODEL_ALIASES, resolve_model_id
from safeclip_guardrail.encoders.base import ImageTextEncoder

__all__ = ["MODEL_ALIASES", "load_encoder", "resolve_model_id"]

def load_encoder(model: str, *, device: str | None = None, dtype: str | None = None,
                 revision: str | None = None) -> ImageTextEncoder:
    """Load the encoder for ``model`` with the matching backend."""
    from safeclip_guardrail.errors import ConfigurationError

    if not model or not model.strip():
        msg = "model must be a non-empty name, hub id, directory or spec"
        raise ConfigurationError(msg)
    resolved = resolve_model_id(model)
    if _is_open_clip_dir(resolved):
        resolved = f"open_clip:local-dir:{resolved}"
    if resolved.startswith("open_clip:"):
        from safeclip_guardrail.encoders.openclip import OpenClipEncoder

        return OpenClipEncoder.from_spec(resolved, device=device, dtype=dtype)
    from safeclip_guardrail.encoders.hf import TransformersCLIPEncoder

    return TransformersCLIPEncoder.from_pretrained(resolved, revision=revision, device=device,
                                                   dtype=dtype)


def _is_open_clip_dir(model: str) -> bool:
    """A local directory laid out as an open_clip checkpoint (and not as a transformers one)."""
    from pathlib import Path

    p = Path(model)
    return p.is_dir() and (p / "open_clip_config.json").is_file() and not (p / "config.json").is_file()
