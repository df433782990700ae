"""The fused guard: score LLaVA's own vision pass, then generate from the same output.

LLaVA-1.5 trained with CLIP's tower frozen, so its tower *is* CLIP ViT-L/14-336. Its
``get_image_features`` runs every layer (and post-layernorm) but keeps only layer -2 patch
tokens; the CLS the guard needs is in the same output. So per image the tower runs once:

1. ``enc = model.model.get_image_features(pixel_values, return_dict=True)``
2. CLS: ``final`` = ``post_layernorm(enc.last_hidden_state[:, 0])`` (``enc.pooler_output``
   is overwritten with the projected patches in transformers 5.x), ``penultimate`` =
   ``enc.hidden_states[-2][:, 0]`` - of every view the tower encoded: LLaVA-1.5 encodes one
   per image (what llava-hf's processor made of it), LLaVA-NeXT a whole-picture base view
   plus its any-resolution tiles, all in the same pass
3. ``guard.embed_cls(cls)`` (CLIP's visual projection) -> ``guard.score_embeddings``; per
   image the worst view decides and the verdict names it (``decided_by``)
4. on pass: ``model.generate(..., mm_encoder_outputs={"image": enc})`` - no second pass.

Only CLIP's visual projection and text tower are loaded besides LLaVA (``guard="auto"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from safeclip_guardrail.config import GuardConfig
from safeclip_guardrail.encoders.registry import MODEL_ALIASES
from safeclip_guardrail.errors import ConfigurationError, ModelLoadError
from safeclip_guardrail.guard import SafeCLIPGuard
from safeclip_guardrail.langchain.chat_models._loading import LoadedLlava
from safeclip_guardrail.result import ImageVerdict

__all__ = ["ViewCLS", "auto_guard", "can_fuse", "encode_images", "image_cls", "keep_images",
           "score_fused"]


def auto_guard(loaded: LoadedLlava, *, guard_model: str | None, config: GuardConfig | None,
               device: str | None, dtype: str | None) -> SafeCLIPGuard:
    """The guard for ``guard="auto"``: the tower's CLIP without its vision tower.

    The CLIP checkpoint is, in order: ``guard_model`` (hub id, alias or local directory,
    e.g. a tiny CLIP in tests); ``config.model`` when set to something other than the
    default; the CLIP the checkpoint records (``mm_vision_tower``, the vision config's
    ``_name_or_path``; a relative record is read beside the checkpoint); the registry's CLIP
    for this LLaVA id (``llava-hf/llava-1.5-7b-hf`` -> ``openai/clip-vit-large-patch14-336``);
    or that same CLIP when the tower has its exact shape (ViT-L/14 at 336 px), which covers
    local copies of LLaVA-1.5 / NeXT.
    """
    from safeclip_guardrail.encoders._checkpoint import find_recorded_clip
    from safeclip_guardrail.encoders.hf import TransformersCLIPEncoder

    default_model = GuardConfig().model
    clip_id = guard_model
    if clip_id is None and config is not None and config.model != default_model:
        clip_id = config.model
    recorded = None if clip_id is not None else find_recorded_clip(loaded.model_id,
                                                                    loaded.model.config)
    if recorded is not None:
        clip_id = recorded.clip_id
    if clip_id is None:
        clip_id = MODEL_ALIASES.get(loaded.model_id.strip().lower())
    if clip_id is None and _is_vit_l14_336(loaded.model.config.vision_config):
        clip_id = MODEL_ALIASES[default_model]
    if clip_id is None:
        msg = (f"guard='auto' does not know which CLIP the tower of {loaded.model_id!r} is; pass "
               "guard_model='openai/clip-vit-large-patch14-336' (LLaVA-1.5 / NeXT) or a local "
               "CLIP directory")
        raise ConfigurationError(msg)
    clip_id = MODEL_ALIASES.get(clip_id.strip().lower(), clip_id)
    base = config or GuardConfig()
    cfg = base.replace(model=clip_id, device=device or base.device, dtype=dtype or base.dtype)
    try:
        encoder = TransformersCLIPEncoder.from_pretrained(clip_id, device=cfg.device,
                                                          dtype=cfg.dtype, load_vision=False)
    except ModelLoadError as exc:
        if recorded is None:
            raise
        msg = (f"guard='auto': {loaded.model_id!r} records the CLIP of its tower as "
               f"{recorded.value!r} ({recorded.key}), and that CLIP could not be loaded: {exc}")
        raise ModelLoadError(msg) from None
    guard = SafeCLIPGuard(encoder, config=cfg)
    if not can_fuse(guard, loaded):
        msg = (f"the CLIP {clip_id!r} does not fit the vision tower of {loaded.model_id!r} "
               f"(projection input {encoder.model.visual_projection.in_features}, tower width "
               f"{loaded.model.config.vision_config.hidden_size}); pass the tower's own CLIP")
        raise ConfigurationError(msg)
    return guard


def _is_vit_l14_336(vision_config: Any) -> bool:
    return (getattr(vision_config, "model_type", "") == "clip_vision_model"
            and vision_config.hidden_size == 1024 and vision_config.patch_size == 14
            and vision_config.image_size == 336 and vision_config.num_hidden_layers == 24)


def can_fuse(guard: SafeCLIPGuard, loaded: LoadedLlava) -> bool:
    """True when the guard can project this LLaVA's CLS (a CLIP projection of the right width)."""
    model = getattr(guard.encoder, "model", None)
    projection = getattr(model, "visual_projection", None)
    if projection is None or not hasattr(guard.encoder, "project_cls"):
        return False
    width = int(loaded.model.config.vision_config.hidden_size)
    return int(projection.in_features) == width


def _post_layernorm(tower: Any) -> Any:
    ln = getattr(tower, "post_layernorm", None)
    if ln is None:  # transformers <= 5.5 wrapped the tower in .vision_model
        ln = tower.vision_model.post_layernorm
    return ln


@torch.inference_mode()
def encode_images(loaded: LoadedLlava, inputs: dict[str, Any]) -> Any:
    """One tower pass over the prompt's images, in the form ``generate`` accepts back."""
    cfg = loaded.model.config
    kwargs: dict[str, Any] = {
        "pixel_values": inputs["pixel_values"].to(loaded.device, loaded.dtype),
        "vision_feature_layer": cfg.vision_feature_layer,
        "vision_feature_select_strategy": cfg.vision_feature_select_strategy,
        "return_dict": True,
    }
    if "image_sizes" in inputs:
        kwargs["image_sizes"] = inputs["image_sizes"]
    return loaded.model.model.get_image_features(**kwargs)


@dataclass(frozen=True)
class ViewCLS:
    """CLS features of every view the tower encoded, and which image each view belongs to."""

    cls: torch.Tensor
    """(views, hidden) CLS features, the images' views in order."""
    labels: list[list[str]]
    """Per image, what each of its views is (``"whole picture"``, ``"tile 2 of 4"``)."""


def _view_labels(loaded: LoadedLlava, inputs: dict[str, Any], n_images: int) -> list[list[str]]:
    """Per image, its views in tower-output order: LLaVA-1.5 one (the processor's square),
    LLaVA-NeXT the whole-picture base view then its any-resolution tiles."""
    if loaded.model_type != "llava_next":
        return [["model view"] for _ in range(n_images)]
    from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

    cfg = loaded.model.config
    labels = []
    for size in inputs["image_sizes"]:
        n = image_size_to_num_patches(image_size=size, grid_pinpoints=cfg.image_grid_pinpoints,
                                      patch_size=cfg.vision_config.image_size)
        labels.append(["whole picture", *(f"tile {k} of {n - 1}" for k in range(1, n))])
    return labels


@torch.inference_mode()
def image_cls(loaded: LoadedLlava, enc: Any, inputs: dict[str, Any], *, n_images: int,
              source: str) -> ViewCLS:
    """CLS features of ``source`` (``final`` / ``penultimate``) of every view of every image:
    all rows of the tower output, which already holds them (no extra vision pass)."""
    labels = _view_labels(loaded, inputs, n_images)
    rows = sum(len(views) for views in labels)
    if source == "final":
        ln = _post_layernorm(loaded.vision_tower)
        return ViewCLS(ln(enc.last_hidden_state[:rows, 0]), labels)
    hidden = getattr(enc, "hidden_states", None)
    if not hidden or hidden[-2] is None:
        msg = ("this transformers version did not return the tower's hidden states; use "
               "cls_source='final'")
        raise ConfigurationError(msg)
    return ViewCLS(hidden[-2][:rows, 0], labels)


@torch.inference_mode()
def score_fused(guard: SafeCLIPGuard, views: ViewCLS,
                slots: Sequence[Any]) -> list[ImageVerdict]:
    """Per image, the verdict of its worst view (flagged first, then the highest toxic score)
    from LLaVA's own pass, naming that view, with the image's hash and source."""
    verdicts = guard.score_embeddings(guard.embed_cls(views.cls))
    out: list[ImageVerdict] = []
    start = 0
    for labels, slot in zip(views.labels, slots, strict=True):
        mine = list(zip(verdicts[start:start + len(labels)], labels, strict=True))
        start += len(labels)
        worst, label = max(mine, key=lambda vl: (vl[0].flagged, vl[0].toxic_score))
        out.append(worst.model_copy(update={
            "image_sha256": slot.decoded.sha256, "source": slot.source,
            "views_checked": len(labels), "decided_by": label}))
    return out


def keep_images(enc: Any, keep: Sequence[int]) -> Any:
    """An encoder output holding only the kept images' features (redacted images leave)."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    features = list(enc.pooler_output)
    return BaseModelOutputWithPooling(
        pooler_output=[features[i] for i in keep])  # type: ignore[arg-type]
