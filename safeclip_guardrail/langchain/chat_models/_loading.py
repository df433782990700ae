"""Load a LLaVA checkpoint (model + processor) once per process, with helpful errors.

LLaVA-1.5 (``model_type == "llava"``) and LLaVA-NeXT (``"llava_next"``) are supported; the
class is chosen from the checkpoint's config, not from its name. Loaded models are shared
between ``ChatLlava`` instances with the same (path, device, dtype), so binding options or
re-creating a chat model does not load the weights again. Loading prints nothing unless
transformers was asked for its output (see :mod:`safeclip_guardrail.encoders._quiet`).
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from safeclip_guardrail.encoders._quiet import quiet_transformers
from safeclip_guardrail.encoders._torch import resolve_device, resolve_dtype
from safeclip_guardrail.errors import ConfigurationError, ModelLoadError

__all__ = ["LoadedLlava", "load_llava", "register_loaded"]

_CLASSES = {
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
}


@dataclass(eq=False)
class LoadedLlava:
    """A loaded checkpoint: the model, its processor, and where it came from."""

    model: Any
    processor: Any
    model_id: str
    model_type: str
    device: torch.device
    dtype: torch.dtype
    lock: threading.Lock

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def vision_tower(self) -> Any:
        return self.model.model.vision_tower

    @property
    def language_model(self) -> Any:
        return self.model.model.language_model


_CACHE: weakref.WeakValueDictionary[tuple[str, str, str, str | None], LoadedLlava] = (
    weakref.WeakValueDictionary()
)
_CACHE_LOCK = threading.Lock()


def load_llava(model_id: str, *, device: str | None = None, dtype: str | None = None,
               revision: str | None = None) -> LoadedLlava:
    """Load (or reuse) ``model_id``: a hub id or a local ``save_pretrained`` directory."""
    if not model_id or not str(model_id).strip():
        msg = "model must be a hub id (llava-hf/llava-1.5-7b-hf) or a directory"
        raise ConfigurationError(msg)
    dev = resolve_device(device)
    if dtype is not None and dtype not in {"float32", "float16", "bfloat16", "fp32", "fp16",
                                           "bf16", "half"}:
        msg = f"dtype must be float32, float16 or bfloat16, got {dtype!r}"
        raise ConfigurationError(msg)
    aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
    torch_dtype = resolve_dtype(aliases.get(dtype, dtype) if dtype else None, dev)
    key = (str(model_id), str(dev), str(torch_dtype), revision)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        loaded = _load(str(model_id), dev, torch_dtype, revision)
        _CACHE[key] = loaded
        return loaded


def register_loaded(model: Any, processor: Any, *, name: str) -> LoadedLlava:
    """Make an already loaded model available under ``name`` (see ``ChatLlava.from_model``)."""
    model_type = str(getattr(model.config, "model_type", ""))
    if model_type not in _CLASSES:
        msg = f"from_model needs a LLaVA-1.5 or LLaVA-NeXT model, got model_type {model_type!r}"
        raise ConfigurationError(msg)
    param = next(model.parameters())
    loaded = LoadedLlava(model=model.eval(), processor=processor, model_id=name,
                         model_type=model_type, device=param.device, dtype=param.dtype,
                         lock=threading.Lock())
    with _CACHE_LOCK:
        _CACHE[(name, str(param.device), str(param.dtype), None)] = loaded
    return loaded


def _load(model_id: str, dev: torch.device, torch_dtype: torch.dtype,
          revision: str | None) -> LoadedLlava:
    import transformers
    from transformers import AutoConfig, AutoProcessor

    try:
        config = AutoConfig.from_pretrained(model_id, revision=revision)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_load_help(model_id, exc)) from None
    model_type = str(getattr(config, "model_type", ""))
    cls_name = _CLASSES.get(model_type)
    if cls_name is None:
        msg = (f"{model_id!r} is a {model_type or 'unknown'!r} checkpoint; ChatLlava runs LLaVA-1.5 "
               f"('llava') and LLaVA-NeXT ('llava_next') models, e.g. llava-hf/llava-1.5-7b-hf")
        raise ModelLoadError(msg)
    model_cls = getattr(transformers, cls_name)
    try:
        with quiet_transformers():  # no "Loading weights" bar or load report in the caller's output
            model, info = model_cls.from_pretrained(model_id, revision=revision, dtype=torch_dtype,
                                                    output_loading_info=True)
            processor = AutoProcessor.from_pretrained(model_id, revision=revision)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_load_help(model_id, exc)) from None
    _check_load_report(model_id, info)
    if getattr(processor, "chat_template", None) is None:
        msg = (f"the processor of {model_id!r} has no chat template; save one with "
               "processor.chat_template = ... ; processor.save_pretrained(DIR)")
        raise ModelLoadError(msg)
    model.to(dev).eval()
    return LoadedLlava(model=model, processor=processor, model_id=model_id,
                       model_type=model_type, device=dev, dtype=torch_dtype,
                       lock=threading.Lock())


def _check_load_report(model_id: str, info: dict[str, Any]) -> None:
    """The load report transformers would have printed, as an error: a LLaVA with weights
    missing would answer (and, fused, judge images) with random layers."""
    from safeclip_guardrail.encoders._checkpoint import summarize_keys

    missing = [str(k) for k in info.get("missing_keys") or ()]
    mismatched = [str(m[0]) if isinstance(m, (tuple, list)) else str(m)
                  for m in info.get("mismatched_keys") or ()]
    if not (missing or mismatched):
        return
    parts = ", ".join(
        f"{len(keys)} weights {what}: {summarize_keys(keys)}"
        for keys, what in ((missing, "are missing"), (mismatched, "have the wrong shape")) if keys)
    msg = (f"refusing LLaVA checkpoint {model_id!r}: {parts}; they would be randomly initialised. "
           "Re-download the checkpoint or save it again with save_pretrained")
    raise ModelLoadError(msg)


def _load_help(model_id: str, exc: BaseException) -> str:
    path = Path(model_id)
    looked = [f"a local directory {path.resolve()} ({'exists' if path.is_dir() else 'not found'})"]
    if not path.is_absolute() and not model_id.startswith("."):
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in {"", "0"}
        looked.append("the Hugging Face hub cache"
                      + (" (HF_HUB_OFFLINE is set, so nothing was downloaded)" if offline else ""))
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return (
        f"could not load LLaVA model {model_id!r}: looked in {' and '.join(looked)}: {first}. "
        f"To fix: on a machine with network access run `hf download {model_id} --local-dir DIR` "
        "and pass DIR (a directory with config.json, the weights, and the processor files)."
    )
