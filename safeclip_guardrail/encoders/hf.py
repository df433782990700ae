"""transformers backend: a ``CLIPModel`` checkpoint from the hub or a local directory."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safeclip_guardrail.encoders._torch import TorchClipEncoder, resolve_device, resolve_dtype
from safeclip_guardrail.encoders.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ClipPreprocess
from safeclip_guardrail.errors import ModelLoadError

__all__ = ["TransformersCLIPEncoder"]


class TransformersCLIPEncoder(TorchClipEncoder):
    """CLIP through ``transformers.CLIPModel``.

    ``load_vision=False`` keeps only the visual projection and the text tower: that is what
    a fused guard inside LLaVA needs, since LLaVA already runs the vision tower.
    """

    def __init__(self, model: Any, tokenizer: Any, preprocess: ClipPreprocess, *, name: str,
                 cache_key: str | None, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.name = name
        self.cache_key = cache_key
        self.device = device
        self.dtype = dtype
        self.logit_scale = float(model.logit_scale.detach().float().exp().item())
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
        from transformers import AutoTokenizer, CLIPModel

        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        try:
            kwargs: dict[str, Any] = {"revision": revision} if revision else {}
            model = CLIPModel.from_pretrained(model_id, dtype=torch_dtype, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(model_id, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(_load_help(model_id, exc)) from None
        if not load_vision:
            del model.vision_model
            model.vision_model = None
        model = model.to(dev).eval()  # type: ignore[arg-type]
        preprocess = _preprocess_from(model_id, revision, model.config)
        return cls(model, tokenizer, preprocess, name=model_id,
                   cache_key=_cache_key(model_id, revision, model, torch_dtype),
                   device=dev, dtype=torch_dtype)

    # ------------------------------------------------------------------ forward
    def _final_cls(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.vision is None:
            raise ModelLoadError(
                f"{self.name} was loaded without its vision tower (load_vision=False); it "
                "can only project CLS features computed elsewhere"
            )
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


def _preprocess_from(model_id: str, revision: str | None, config: Any) -> ClipPreprocess:
    image_size = int(config.vision_config.image_size)
    size, crop = image_size, image_size
    mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    try:
        from transformers.utils import cached_file  # type: ignore[attr-defined]

        path = cached_file(model_id, "preprocessor_config.json", revision=revision,
                           _raise_exceptions_for_missing_entries=False)
    except (OSError, ValueError):
        path = None
    if path:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
        s = cfg.get("size", size)
        size = int(s.get("shortest_edge", size) if isinstance(s, dict) else s)
        c = cfg.get("crop_size", crop)
        crop = int(c.get("height", crop) if isinstance(c, dict) else c)
        mean = tuple(cfg.get("image_mean", mean))  # type: ignore[assignment]
        std = tuple(cfg.get("image_std", std))  # type: ignore[assignment]
    return ClipPreprocess(size=size, crop=crop, mean=mean, std=std)


def _cache_key(model_id: str, revision: str | None, model: Any, dtype: torch.dtype) -> str:
    """Weights identity: the hub commit, or for a local directory its files' sizes and mtimes."""
    h = hashlib.sha256()
    path = Path(model_id)
    if path.is_dir():
        h.update(str(path.resolve()).encode())
        for f in sorted(path.iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        commit = getattr(model.config, "_commit_hash", None) or revision or "main"
        h.update(f"{model_id}@{commit}".encode())
    h.update(str(dtype).encode())
    return "hf:" + h.hexdigest()[:32]


def _load_help(model_id: str, exc: BaseException) -> str:
    path = Path(model_id)
    pathlike = path.is_absolute() or model_id.startswith(".") or path.exists() \
        or model_id.count("/") != 1
    if pathlike:
        looked = f"the local directory {path.resolve()} ({'exists' if path.is_dir() else 'not found'})"
    else:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in {"", "0"}
        looked = "the Hugging Face hub and its local cache" + (
            " (HF_HUB_OFFLINE is set, so nothing was downloaded)" if offline else "")
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if pathlike and not path.is_dir():
        return (
            f"could not load CLIP model {model_id!r}: the directory {path.resolve()} does not "
            "exist. Pass a directory holding a CLIPModel checkpoint (config.json, "
            "model.safetensors, tokenizer and preprocessor_config.json), a hub id such as "
            "'openai/clip-vit-large-patch14-336', or an alias such as 'llava-1.5'."
        )
    return (
        f"could not load CLIP model {model_id!r}: looked in {looked}: {reason} To fix: on a "
        f"machine with network access run `hf download {model_id} --local-dir DIR` (or "
        "`CLIPModel.from_pretrained(...).save_pretrained(DIR)`) and pass DIR as the model."
    )
