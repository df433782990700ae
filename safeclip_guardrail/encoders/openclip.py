"""open_clip backend: ``open_clip:<model>/<pretrained>`` or ``open_clip:local-dir:<dir>``.

``<pretrained>`` is an open_clip tag (``openai``, ``laion2b_s34b_b79k``) or a local weights
file. OpenAI weights need the QuickGELU variant of the architecture; asking for
``ViT-L-14-336/openai`` silently builds the wrong activation in open_clip, so we force
QuickGELU for the ``openai`` tag.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from safeclip_guardrail.encoders._checkpoint import summarize_keys
from safeclip_guardrail.encoders._fingerprint import tensors_fingerprint
from safeclip_guardrail.encoders._hub import probe_hub
from safeclip_guardrail.encoders._torch import TorchClipEncoder, resolve_device, resolve_dtype
from safeclip_guardrail.encoders.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ClipPreprocess
from safeclip_guardrail.errors import ConfigurationError, ModelLoadError, require

__all__ = ["OpenClipEncoder", "OpenClipSpec", "parse_open_clip_spec"]

PREFIX = "open_clip:"


@dataclass(frozen=True)
class OpenClipSpec:
    model_name: str
    pretrained: str | None


def parse_open_clip_spec(spec: str) -> OpenClipSpec:
    """``open_clip:ViT-B-32/openai`` -> (``ViT-B-32``, ``openai``); schemas kept whole."""
    body = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    if not body:
        msg = ("empty open_clip model spec; use 'open_clip:<model>/<pretrained>', e.g. "
               "'open_clip:ViT-L-14-336-quickgelu/openai' or 'open_clip:local-dir:/path'")
        raise ConfigurationError(msg)
    if body.startswith(("local-dir:", "hf-hub:")):
        return OpenClipSpec(model_name=body, pretrained=None)
    name, _, pretrained = body.partition("/")
    return OpenClipSpec(model_name=name, pretrained=pretrained or None)


class OpenClipEncoder(TorchClipEncoder):
    """CLIP through ``open_clip.create_model``."""

    def _attach(self) -> None:
        self.embed_dim = int(self.model.visual.output_dim)
        transformer = self.model.visual.transformer
        self._install_hook(transformer.resblocks[-2],
                           batch_first=bool(getattr(transformer, "batch_first", True)))

    @classmethod
    def from_spec(cls, spec: str, *, device: str | None = None,
                  dtype: str | None = None) -> OpenClipEncoder:
        open_clip = require("open_clip", package="open_clip_torch", extra="open-clip",
                            feature="The open_clip backend")
        parsed = parse_open_clip_spec(spec)
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        force_quick_gelu = parsed.pretrained == "openai"
        _fail_fast_offline(open_clip, spec, parsed)
        try:
            # require_pretrained: no weights file is an error, not a randomly initialised CLIP;
            # open_clip loads full checkpoints strictly, so a missing key raises as well.
            model = open_clip.create_model(
                parsed.model_name, pretrained=parsed.pretrained, device=dev,
                force_quick_gelu=force_quick_gelu, weights_only=True, require_pretrained=True,
            )
            tokenizer = open_clip.get_tokenizer(parsed.model_name)
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(_load_help(spec, exc)) from None
        model = model.to(dtype=torch_dtype).eval()
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = cfg.get("size", model.visual.image_size)
        size = int(size[0] if isinstance(size, (tuple, list)) else size)
        preprocess = ClipPreprocess(
            size=size, crop=size,
            mean=tuple(cfg.get("mean", OPENAI_CLIP_MEAN)),
            std=tuple(cfg.get("std", OPENAI_CLIP_STD)),
        )
        return cls(model, tokenizer, preprocess, name=spec,
                   cache_key=_cache_key(parsed, model, tokenizer, torch_dtype),
                   device=dev, dtype=torch_dtype)

    def _final_cls(self, pixels: torch.Tensor) -> torch.Tensor:
        visual = self.model.visual
        proj, visual.proj = visual.proj, None  # pooled, post-ln_post, before projection
        try:
            out = visual(pixels)
        finally:
            visual.proj = proj
        pooled: torch.Tensor = out[0] if isinstance(out, tuple) else out
        return pooled

    def _project(self, cls_features: torch.Tensor) -> np.ndarray:
        proj = self.model.visual.proj
        feats = cls_features @ proj if proj is not None else cls_features
        return self._normalized(feats)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        with self._lock:
            feats = self.model.encode_text(tokens)
        return self._normalized(feats)


def _fail_fast_offline(open_clip: Any, spec: str, parsed: OpenClipSpec) -> None:
    """A tag whose weights live on the hub, without network and not cached: fail now.

    open_clip downloads tags through ``hf_hub_download``, which retries for ~30 s per file
    without network; one probe (see :mod:`._hub`) and a look in the local cache decide first.
    """
    if not parsed.pretrained or parsed.model_name.startswith(("local-dir:", "hf-hub:")):
        return
    cfg = open_clip.get_pretrained_cfg(parsed.model_name, parsed.pretrained) or {}
    hub = str(cfg.get("hf_hub") or "")
    if not hub or "file" in cfg:
        return
    from huggingface_hub import try_to_load_from_cache

    repo, _, filename = hub.rpartition("/")  # "org/name/file.pt", or "org/name/": default file
    access = probe_hub(repo, filename=filename or "open_clip_config.json")
    if not access.local_files_only:
        return
    names = [filename] if filename else []
    names += ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if any(isinstance(try_to_load_from_cache(repo, n), str) for n in names):
        return
    msg = (f"could not load open_clip model {spec!r}: {access.reason}, and its weights ({repo} on "
           "the Hugging Face hub) are not in the local cache. To fix: on a machine with network "
           f"access run `hf download {repo} --local-dir DIR` and pass "
           f"'open_clip:{parsed.model_name}//DIR/<weights file>' (or 'open_clip:local-dir:DIR'); "
           "set HF_HUB_OFFLINE=1 to skip the network check")
    raise ModelLoadError(msg)


def _load_help(spec: str, exc: BaseException) -> str:
    """One line; a strict-load failure names the missing / mismatched parts of the model."""
    text = str(exc)
    missing = re.search(r"Missing key\(s\) in state_dict: (.*)", text)
    mismatched = re.findall(r"size mismatch for ([\w.]+):", text)
    if missing or mismatched:
        problems = []
        if missing:
            keys = re.findall(r'"([^"]+)"', missing.group(1))
            problems.append(f"{len(keys)} weights are missing from the checkpoint: "
                            f"{summarize_keys(keys)}")
        if mismatched:
            problems.append(f"{len(mismatched)} weights have the wrong shape: "
                            f"{summarize_keys(mismatched)}")
        return (f"refusing open_clip checkpoint {spec!r}: {'; '.join(problems)}. A guard on "
                "partly random weights gives meaningless verdicts; pass a complete checkpoint "
                "of this architecture")
    if "could not be loaded" in text and "Required pretrained weights" in text:
        return (f"could not load open_clip model {spec!r}: no weights were found for it (a "
                "random-weight CLIP is never used as a guard). Pass a tag "
                "('open_clip:ViT-B-32/openai'), a weights file "
                "('open_clip:ViT-B-32//path/w.safetensors') or a directory with "
                "open_clip_config.json and open_clip_model.safetensors")
    first = text.splitlines()[0] if text else type(exc).__name__
    return (
        f"could not load open_clip model {spec!r}: {first}. Known model names: "
        "open_clip.list_models(); tags: open_clip.list_pretrained(). Without network, pass a "
        "local weights file ('open_clip:ViT-B-32//path/w.pt') or a directory "
        "('open_clip:local-dir:/path' with open_clip_config.json)."
    )


def _cache_key(spec: OpenClipSpec, model: Any, tokenizer: Any, dtype: torch.dtype) -> str:
    """Content of the text side (every tensor outside ``visual.``, except the logit scale and
    bias, which do not change normalised text embeddings), the tokenizer's kind and context
    length, and open_clip's version (its tokenizers ship in the wheel). See
    :mod:`._fingerprint` for why the content and not the files' metadata."""
    import open_clip

    text_side = [(n, t) for n, t in model.state_dict().items()
                 if not n.startswith("visual.") and n not in {"logit_scale", "logit_bias"}]
    tok = f"{type(tokenizer).__name__}|{getattr(tokenizer, 'context_length', '')}"
    backend = getattr(getattr(tokenizer, "tokenizer", None), "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):  # an HF tokenizer inside
        tok += "|" + str(backend.to_str())
    name = "local-dir" if spec.model_name.startswith("local-dir:") else spec.model_name
    digest = tensors_fingerprint(text_side, f"dtype={dtype}", f"tokenizer={tok}",
                                 f"open_clip={getattr(open_clip, '__version__', '?')}",
                                 f"model={name}")
    return "open_clip:" + digest[:32]
