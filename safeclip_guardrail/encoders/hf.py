"""transformers backend: a ``CLIPModel`` checkpoint from the hub or a local directory."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from safeclip_guardrail.encoders._checkpoint import (
    RecordedClip,
    check_load_report,
    find_recorded_clip,
    refuse_non_clip,
)
from safeclip_guardrail.encoders._fingerprint import tensors_fingerprint
from safeclip_guardrail.encoders._hub import HubAccess, is_hub_id, probe_hub
from safeclip_guardrail.encoders._quiet import quiet_transformers
from safeclip_guardrail.encoders._torch import TorchClipEncoder, resolve_device, resolve_dtype
from safeclip_guardrail.encoders.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ClipPreprocess
from safeclip_guardrail.errors import ModelLoadError

__all__ = ["TransformersCLIPEncoder"]

log = logging.getLogger(__name__)

_LOAD_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError, SafetensorError)
"""What transformers, tokenizers and safetensors raise on missing or malformed checkpoint files
(a truncated ``model.safetensors`` is a SafetensorError, a ``tokenizer_config.json`` of the
wrong shape an AttributeError): all of it becomes a ModelLoadError."""


class TransformersCLIPEncoder(TorchClipEncoder):
    """CLIP through ``transformers.CLIPModel``.

    ``load_vision=False`` keeps only the visual projection and the text tower: that is what
    a fused guard inside LLaVA needs, since LLaVA already runs the vision tower.
    """

    def _attach(self) -> None:
        model = self.model
        self.embed_dim = int(model.config.projection_dim)
        self.max_text_length = int(model.config.text_config.max_position_embeddings)
        vision = getattr(model, "vision_model", None)
        self.vision = vision
        if vision is not None:
            self._install_hook(vision.encoder.layers[-2])

    @classmethod
    def from_pretrained(cls, model_id: str, *, revision: str | None = None,
                        device: str | None = None, dtype: str | None = None,
                        load_vision: bool = True) -> TransformersCLIPEncoder:
        """Load a whole ``CLIPModel`` checkpoint; anything less is a :class:`ModelLoadError`.

        Order: where to look (a hub id is probed once, so offline fails in seconds), what
        the config says it is (a LLaVA checkpoint is refused with the CLIP to use, or
        redirected to the CLIP it records), then the weights, whose load report must show
        nothing missing or re-initialised. Weights load from safetensors, or from a
        PyTorch file with ``weights_only=True``; transformers' bars and warnings are
        silenced for the duration (see :mod:`._quiet`).
        """
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        with quiet_transformers():
            loaded = _load_checked(model_id, revision=revision, torch_dtype=torch_dtype,
                                   load_vision=load_vision)
        model = loaded.model
        if not load_vision:
            del model.vision_model
            model.vision_model = None
        cache_key = _cache_key(model, loaded.tokenizer, torch_dtype)  # on the CPU copy
        model = model.to(dev).eval()
        name = model_id if loaded.source == model_id else f"{loaded.source} (via {model_id})"
        return cls(model, loaded.tokenizer, loaded.preprocess, name=name,
                   cache_key=cache_key, device=dev, dtype=torch_dtype)

    # ------------------------------------------------------------------ forward
    def _final_cls(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.vision is None:
            msg = (f"{self.name} was loaded without its vision tower (load_vision=False); it "
                   "can only project CLS features computed elsewhere")
            raise ModelLoadError(msg)
        pooled: torch.Tensor = self.vision(pixel_values=pixels).pooler_output
        return pooled

    def _project(self, cls_features: torch.Tensor) -> np.ndarray:
        return self._normalized(self.model.visual_projection(cls_features))

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        tok = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.max_text_length, return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items() if k in {"input_ids", "attention_mask"}}
        with self._lock:
            out = self.model.get_text_features(**tok)
        feats = getattr(out, "pooler_output", out)
        return self._normalized(feats)


@dataclass(frozen=True)
class _Loaded:
    model: Any
    tokenizer: Any
    preprocess: ClipPreprocess
    source: str
    """The checkpoint actually loaded (a LLaVA's recorded CLIP when redirected)."""


def _load_checked(model_id: str, *, revision: str | None, torch_dtype: torch.dtype,
                  load_vision: bool, redirected_from: str | None = None) -> _Loaded:
    from transformers import AutoConfig, AutoTokenizer, CLIPModel

    access = probe_hub(model_id, revision=revision) if is_hub_id(model_id) else HubAccess(False)
    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    if access.local_files_only:
        kwargs["local_files_only"] = True
    try:
        config = AutoConfig.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        config = _foreign_config(model_id, kwargs)  # e.g. original LLaVA's "llava_llama"
        if config is None:
            raise ModelLoadError(_load_help(model_id, exc, access)) from None
    if getattr(config, "model_type", None) != "clip":
        target = find_recorded_clip(model_id, config) if redirected_from is None else None
        if target is not None:
            return _load_recorded(model_id, target, torch_dtype=torch_dtype,
                                  load_vision=load_vision)
        refuse_non_clip(model_id, config)  # raises: not a CLIP, and no CLIP recorded
    try:
        loaded: Any = CLIPModel.from_pretrained(
            model_id, config=config, dtype=torch_dtype, weights_only=True,
            output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
        model, info = loaded  # (model, {"missing_keys", "unexpected_keys", ...})
        tokenizer = AutoTokenizer.from_pretrained(model_id, **kwargs)
    except _LOAD_ERRORS as exc:
        raise ModelLoadError(_load_help(model_id, exc, access)) from None
    check_load_report(model_id, info, load_vision=load_vision)
    preprocess = _preprocess_from(model_id, revision, model.config,
                                  local_files_only=access.local_files_only)
    return _Loaded(model=model, tokenizer=tokenizer, preprocess=preprocess, source=model_id)


def _foreign_config(model_id: str, kwargs: dict[str, Any]) -> Any:
    """A config transformers cannot build (an unknown ``model_type``), read as plain data so
    that it can still be recognised (original LLaVA repos: ``llava_llama``, with the CLIP
    recorded in ``mm_vision_tower``); None when there is no readable config."""
    from types import SimpleNamespace

    from transformers import PretrainedConfig

    try:
        raw, _ = PretrainedConfig.get_config_dict(model_id, **kwargs)
    except (OSError, ValueError, KeyError):
        return None
    if not isinstance(raw, dict) or raw.get("model_type") in (None, "clip"):
        return None
    vision = raw.get("vision_config")
    fields = {k: v for k, v in raw.items() if isinstance(k, str) and k.isidentifier()}
    fields["vision_config"] = SimpleNamespace(**vision) if isinstance(vision, dict) else None
    return SimpleNamespace(**fields)


def _load_recorded(llava_id: str, target: RecordedClip, *, torch_dtype: torch.dtype,
                   load_vision: bool) -> _Loaded:
    """A LLaVA checkpoint that records its CLIP (``mm_vision_tower``): load that CLIP."""
    log.info("%s is a LLaVA checkpoint built from the CLIP %s; the guard loads that CLIP",
             llava_id, target.clip_id)
    try:
        return _load_checked(target.clip_id, revision=None, torch_dtype=torch_dtype,
                             load_vision=load_vision, redirected_from=llava_id)
    except ModelLoadError as exc:
        msg = (f"{llava_id!r} is a LLaVA checkpoint whose config records its CLIP as "
               f"{target.value!r} ({target.key}), and that CLIP could not be loaded: {exc}")
        raise ModelLoadError(msg) from None


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    """The tokenizer's full serialised state (vocabulary, merges, normalisers, specials)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        return str(backend.to_str())
    vocab = sorted(tokenizer.get_vocab().items())
    return json.dumps([type(tokenizer).__name__, vocab], ensure_ascii=False)


def _cache_key(model: Any, tokenizer: Any, dtype: torch.dtype) -> str:
    """Content of what decides descriptor embeddings: text tower, text projection, tokenizer.

    Not the path, sizes or mtimes (see :mod:`._fingerprint` for why and what it costs).
    """
    text_side = [(name, t) for name, t in model.state_dict().items()
                 if name.startswith(("text_model.", "text_projection."))]
    max_len = int(model.config.text_config.max_position_embeddings)
    digest = tensors_fingerprint(text_side, f"dtype={dtype}", f"max_length={max_len}",
                                 _tokenizer_fingerprint(tokenizer))
    return "hf:" + digest[:32]


def _preprocess_from(model_id: str, revision: str | None, config: Any, *,
                     local_files_only: bool = False) -> ClipPreprocess:
    image_size = int(config.vision_config.image_size)
    size, crop = image_size, image_size
    mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    try:
        from transformers.utils import cached_file  # type: ignore[attr-defined]

        path = cached_file(model_id, "preprocessor_config.json", revision=revision,
                           local_files_only=local_files_only,
                           _raise_exceptions_for_missing_entries=False)
    except (OSError, ValueError):
        path = None
    if path:
        try:
            cfg = json.loads(Path(path).read_text(encoding="utf-8"))
            s = cfg.get("size", size)
            size = int(s.get("shortest_edge", size) if isinstance(s, dict) else s)
            c = cfg.get("crop_size", crop)
            crop = int(c.get("height", crop) if isinstance(c, dict) else c)
            mean = tuple(float(x) for x in cfg.get("image_mean", mean))  # type: ignore[assignment]
            std = tuple(float(x) for x in cfg.get("image_std", std))  # type: ignore[assignment]
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            msg = (f"could not load CLIP model {model_id!r}: its preprocessor_config.json ({path}) "
                   f"is not a valid image processor config ({type(exc).__name__}: "
                   f"{str(exc).splitlines()[0] if str(exc) else ''}); restore it from the "
                   "original checkpoint")
            raise ModelLoadError(msg) from None
    return ClipPreprocess(size=size, crop=crop, mean=mean, std=std)


def _load_help(model_id: str, exc: BaseException, access: HubAccess) -> str:
    """One line: what failed, where we looked, and how to fix it."""
    path = Path(model_id)
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not is_hub_id(model_id):
        if not path.is_dir():
            return (
                f"could not load CLIP model {model_id!r}: the directory {path.resolve()} does "
                "not exist. Pass a directory holding a CLIPModel checkpoint (config.json, "
                "model.safetensors, tokenizer and preprocessor_config.json), a hub id such as "
                "'openai/clip-vit-large-patch14-336', or an alias such as 'llava-1.5'."
            )
        looked = f"the local directory {path.resolve()} (exists)"
        return (f"could not load CLIP model {model_id!r}: looked in {looked}: {reason} To fix: "
                "pass a directory holding a complete CLIPModel checkpoint (config.json, "
                "model.safetensors, tokenizer files), e.g. one written by "
                "`CLIPModel.from_pretrained(...).save_pretrained(DIR)`.")
    download = (f"on a machine with network access run `hf download {model_id} --local-dir DIR` "
                "(or `CLIPModel.from_pretrained(...).save_pretrained(DIR)`) and pass DIR as the "
                "model")
    if access.local_files_only:
        offline_tip = ("" if access.reason == "HF_HUB_OFFLINE is set" else
                       "; set HF_HUB_OFFLINE=1 to skip the network check")
        return (f"could not load CLIP model {model_id!r}: {access.reason}, and it is not in the "
                f"local Hugging Face cache ({reason}). To fix: {download}{offline_tip}.")
    return (f"could not load CLIP model {model_id!r}: looked in the Hugging Face hub and its "
            f"local cache: {reason} To fix: check the id, or {download}.")
