"""Is this checkpoint a whole CLIP image-text model? Refuse it, or redirect, before a guard uses it.

A guard built on the wrong weights fails open: ``CLIPModel.from_pretrained(<a LLaVA dir>)``
succeeds with every weight missing and randomly initialised, prints a report nobody reads,
and the guard's verdicts are noise. So the checkpoint's kind is checked from its config
before loading, and transformers' load report (``output_loading_info=True``: missing,
mismatched keys) after; any weight left newly initialised is a
:class:`~safeclip_guardrail.errors.ModelLoadError` that names the missing parts.

LLaVA checkpoints get an error that says which CLIP to use instead (their tower *is* a CLIP
vision tower, but the guard also needs CLIP's text tower and projections, which LLaVA does
not ship), unless the config records the CLIP it was built from (``mm_vision_tower``, as the
original LLaVA configs do, or the vision config's ``_name_or_path``): then that CLIP is
loaded. ``ChatLlava(guard="auto")`` reads the same record (:func:`find_recorded_clip`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeclip_guardrail.errors import ModelLoadError

__all__ = ["LLAVA_CLIP_ALIAS", "RecordedClip", "check_load_report", "find_recorded_clip",
           "refuse_non_clip", "summarize_keys"]

LLAVA_CLIP_ALIAS = "llava-1.5"
"""The alias of LLaVA-1.5 / LLaVA-NeXT's tower, ``openai/clip-vit-large-patch14-336``."""

_RECORD_KEYS = ("mm_vision_tower", "vision_tower")


def _is_llava(model_type: str) -> bool:
    return model_type.startswith("llava") or model_type in {"vipllava", "bakllava"}


@dataclass(frozen=True)
class RecordedClip:
    """The CLIP a LLaVA checkpoint says its vision tower came from."""

    clip_id: str
    """Where to load it: a directory (a relative record is read beside the checkpoint), an
    alias resolved to its hub id, or the hub id / path as written."""
    value: str
    """The record as written in the config."""
    key: str
    """Where it was written (``mm_vision_tower``, ``vision_config._name_or_path``...)."""


def _records(config: Any) -> Iterable[tuple[str, Any]]:
    for key in _RECORD_KEYS:
        yield key, getattr(config, key, None)
    vision = getattr(config, "vision_config", None)
    for key in ("_name_or_path", "name_or_path"):  # set when the tower's config was loaded
        yield f"vision_config.{key}", getattr(vision, key, None)


def find_recorded_clip(model_id: str, config: Any) -> RecordedClip | None:
    """The CLIP that ``config`` (of the checkpoint ``model_id``) records, else None.

    A record naming the checkpoint itself is no record (a loader may stamp a sub-config
    with the directory it read).
    """
    from safeclip_guardrail.encoders._aliases import resolve_model_id

    for key, raw in _records(config):
        if not isinstance(raw, str) or not raw.strip():
            continue
        value = raw.strip()
        beside = Path(model_id) / value
        if not Path(value).is_absolute() and beside.is_dir():
            clip_id = str(beside)
        else:
            clip_id = resolve_model_id(value)
        if _same_place(clip_id, model_id):
            continue
        return RecordedClip(clip_id=clip_id, value=value, key=key)
    return None


def _same_place(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    return pa.is_dir() and pb.is_dir() and pa.resolve() == pb.resolve()


def _is_vit_l14_336(vision_config: Any) -> bool:
    return (getattr(vision_config, "hidden_size", None) == 1024
            and getattr(vision_config, "patch_size", None) == 14
            and getattr(vision_config, "image_size", None) == 336)


def refuse_non_clip(model_id: str, config: Any) -> None:
    """Raise ModelLoadError unless ``config`` is a CLIP image-text model (``model_type`` clip)."""
    model_type = str(getattr(config, "model_type", "") or "unknown")
    if model_type == "clip":
        return
    archs = ", ".join(getattr(config, "architectures", None) or []) or "no architectures listed"
    if _is_llava(model_type):
        vision = getattr(config, "vision_config", None)
        if vision is None or _is_vit_l14_336(vision):
            which = (f"for LLaVA-1.5 / NeXT pass model={LLAVA_CLIP_ALIAS!r} "
                     "(= openai/clip-vit-large-patch14-336) or that CLIP's local directory")
        else:
            shape = (f"hidden {getattr(vision, 'hidden_size', '?')}, patch "
                     f"{getattr(vision, 'patch_size', '?')}, {getattr(vision, 'image_size', '?')} px")
            which = (f"its tower ({shape}) is not LLaVA-1.5's ViT-L/14-336, so pass the local "
                     "directory of the CLIP it was built from (for LLaVA-1.5 / NeXT that is "
                     f"{LLAVA_CLIP_ALIAS!r} = openai/clip-vit-large-patch14-336)")
        msg = (f"{model_id!r} is a LLaVA checkpoint (model_type {model_type!r}), not a CLIP "
               "image-text model: the guard needs the CLIP its vision tower came from, with CLIP's "
               f"text tower and projections, which LLaVA does not contain; {which}. With ChatLlava "
               "use guard='auto' (add guard_model=<CLIP dir> when offline) to reuse LLaVA's own "
               "vision pass.")
        raise ModelLoadError(msg)
    if model_type == "clip_vision_model":
        msg = (f"{model_id!r} is a CLIP vision tower only (model_type 'clip_vision_model'), but the "
               "guard also needs CLIP's text tower and projections; pass the full CLIPModel "
               "checkpoint it came from (e.g. 'openai/clip-vit-large-patch14-336') or its directory")
        raise ModelLoadError(msg)
    msg = (f"{model_id!r} is not a CLIP image-text model: its config says model_type "
           f"{model_type!r} ({archs}), the transformers backend needs model_type 'clip' "
           "(a CLIPModel checkpoint such as 'openai/clip-vit-large-patch14-336'); for other "
           "CLIP-style models use 'open_clip:<model>/<pretrained>'")
    raise ModelLoadError(msg)


def summarize_keys(keys: Iterable[str], *, limit: int = 8) -> str:
    """``text_model.encoder (24), visual_projection, ...``: parts of the model, not 400 keys."""
    groups: Counter[str] = Counter()
    for key in keys:
        parts = key.split(".")
        groups[".".join(parts[:2]) if len(parts) > 2 else key] += 1
    shown = [f"{g} ({n})" if n > 1 else g for g, n in sorted(groups.items())[:limit]]
    more = len(groups) - limit
    return ", ".join(shown) + (f", and {more} more parts" if more > 0 else "")


def check_load_report(model_id: str, info: Mapping[str, Any], *, load_vision: bool) -> None:
    """Raise ModelLoadError when the load report shows weights missing or re-initialised.

    ``info`` is what ``from_pretrained(..., output_loading_info=True)`` returns: sets
    ``missing_keys``, ``unexpected_keys``, ``mismatched_keys`` (name, checkpoint shape,
    model shape) and a list ``error_msgs``. Unexpected keys are ignored: they are checkpoint
    tensors the model does not use, and leave no weight undefined. Without the vision tower
    (``load_vision=False``) its keys do not matter.
    """
    missing = {str(k) for k in info.get("missing_keys") or ()}
    mismatched = {str(m[0]) if isinstance(m, (tuple, list)) else str(m)
                  for m in info.get("mismatched_keys") or ()}
    if not load_vision:
        missing = {k for k in missing if not k.startswith("vision_model.")}
        mismatched = {k for k in mismatched if not k.startswith("vision_model.")}
    errors = [str(e) for e in info.get("error_msgs") or ()]
    if not (missing or mismatched or errors):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} weights are missing from the checkpoint and would be "
                        f"randomly initialised: {summarize_keys(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} weights have the wrong shape: "
                        f"{summarize_keys(mismatched)}")
    if errors:
        problems.append(errors[0].splitlines()[0])
    msg = (f"refusing CLIP checkpoint {model_id!r}: {'; '.join(problems)}. A guard on partly "
           "random weights gives meaningless verdicts; pass a complete CLIPModel checkpoint "
           "(re-download it, or save it with CLIPModel.save_pretrained)")
    raise ModelLoadError(msg)
