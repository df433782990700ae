"""Tiny but real CLIP checkpoints, built offline, for tests (ours and users').

The models have the real architecture (transformers ``CLIPModel``, open_clip
``VisionTransformer``) at toy sizes with seeded random weights, a real ``CLIPTokenizer``
(CLIP's byte alphabet with BPE merges learned from a fixed corpus, so a seed gives the same
model with or without open_clip installed), and an image processor config, saved the way a
downloaded checkpoint is laid out so that ``SafeCLIPGuard.from_pretrained(path)`` loads them
through the user's code path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

__all__ = ["TINY_IMAGE_SIZE", "build_tiny_clip", "hf_vision_to_open_clip", "tiny_clip_config"]

TINY_IMAGE_SIZE = 32
_PROJ = 16
_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
           "num_attention_heads": 4, "image_size": TINY_IMAGE_SIZE, "patch_size": 8,
           "hidden_act": "quick_gelu"}
_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "quick_gelu"}


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable-character table (GPT-2 convention)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_CORPUS = (
    # the paper's descriptors, the safety instruction and a few everyday words: what tests
    # tokenize, so descriptors become word-level tokens as with CLIP's real vocabulary
    "Safe for work image. Common scene photo. Safe content image. Normal image suitable for "
    "general audience. A standard image suitable for general audience viewing. Adult only "
    "content. Mature content warning. Not safe for work explicit content. Not suitable for "
    "work or public viewing. 18+ restricted content. Gore warning content. Disturbing content "
    "with blood and gore. Content warning for graphic violence. Explicit scene with blood and "
    "violence. Disturbing image featuring blood. Gun picture. Weapon photo. Image containing "
    "firearms. Picture with visible weapon content. Image featuring guns and weapons. Content "
    "with offensive gesture display. Inappropriate sign. Rude hand signal. Insulting display "
    "image. Image containing rude hand signals. Sharp weapon shown. Blade content. Knife "
    "display. Picture with visible knife content. Content showing knives and sharp weapons. "
    "Alcoholic content. Liquor content. Content showing alcoholic beverages. Photo showing "
    "alcohol consumption. Alcohol display. Smoking content. Tobacco display. Cigarette image. "
    "Content showing smoking and tobacco. Smoking-related image. First detect if this image "
    "contains harmful content. If it does, respond with 'I cannot fulfill this request' and "
    "provide a reason. Otherwise, fulfill the request: a photo of a cat, a dog, a car, a tree, "
    "a person, a chef cutting vegetables, a glass of wine, a kitchen, a street at night."
)


def _learn_merges(corpus: str, n_merges: int) -> list[tuple[str, str]]:
    """Byte-pair merges learned from ``corpus`` the way CLIP's BPE was (words end in ``</w>``).

    Pure Python and deterministic (ties go to the lexicographically largest pair), so the
    tiny tokenizer, and with it every seeded tiny model, is the same on every machine
    whether or not open_clip (whose wheel ships CLIP's real merges) is installed.
    """
    import itertools
    import re
    from collections import Counter

    table = _bytes_to_unicode()
    words = Counter(re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", corpus.lower()))
    splits: dict[str, list[str]] = {}
    for word in words:
        chars = [table[b] for b in word.encode("utf-8")]
        splits[word] = [*chars[:-1], chars[-1] + "</w>"]
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, freq in words.items():
            sym = splits[word]
            for pair in itertools.pairwise(sym):
                pairs[pair] += freq
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        for word, sym in splits.items():
            i, out = 0, []
            while i < len(sym):
                if i + 1 < len(sym) and (sym[i], sym[i + 1]) == best:
                    out.append(sym[i] + sym[i + 1])
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            splits[word] = out
    return merges


def _tiny_tokenizer(n_merges: int = 2000) -> Any:
    """A real ``CLIPTokenizer``: CLIP's byte alphabet plus merges learned from a fixed corpus."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    merges = _learn_merges(_CORPUS, n_merges)
    vocab_list = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)  # type: ignore[arg-type]


def tiny_clip_config(vocab_size: int, eos_token_id: int, bos_token_id: int) -> Any:
    from transformers import CLIPConfig

    text = {**_TEXT, "vocab_size": vocab_size, "eos_token_id": eos_token_id,
            "bos_token_id": bos_token_id, "pad_token_id": eos_token_id}
    return CLIPConfig(vision_config=dict(_VISION), text_config=text, projection_dim=_PROJ)


def build_tiny_clip(path: str | Path, *, backend: Literal["transformers", "open_clip"] = "transformers",
                    seed: int = 0) -> Path:
    """Save a tiny real CLIP into ``path`` and return the directory.

    ``backend="transformers"`` writes a ``CLIPModel`` checkpoint (safetensors, tokenizer,
    ``preprocessor_config.json``). ``backend="open_clip"`` writes the *same vision weights*
    (same seed) as an open_clip ``local-dir`` checkpoint (``open_clip_config.json`` +
    ``open_clip_model.safetensors``), so both backends can be compared image for image.
    Both load with ``SafeCLIPGuard.from_pretrained(path)``.
    """
    from safeclip_guardrail.encoders._quiet import quiet_transformers

    with quiet_transformers():
        return _build(Path(path), backend=backend, seed=seed)


def _build(out: Path, *, backend: str, seed: int) -> Path:
    from transformers import CLIPImageProcessorPil, CLIPModel

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tiny_tokenizer()
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    bos = tokenizer.convert_tokens_to_ids("<|startoftext|>")
    torch.manual_seed(seed)
    model = CLIPModel(tiny_clip_config(len(tokenizer), eos, bos)).eval()
    with torch.no_grad():  # OpenAI CLIP's logit scale, so the decision rule matches the paper's
        model.logit_scale.fill_(float(torch.log(torch.tensor(100.0))))
    if backend == "transformers":
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        CLIPImageProcessorPil(
            size={"shortest_edge": TINY_IMAGE_SIZE},
            crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        ).save_pretrained(out)
        return out
    if backend == "open_clip":
        _save_open_clip(model, out, seed=seed)
        return out
    from safeclip_guardrail.errors import ConfigurationError

    msg = f"backend must be 'transformers' or 'open_clip', got {backend!r}"
    raise ConfigurationError(msg)


def hf_vision_to_open_clip(model: Any) -> dict[str, torch.Tensor]:
    """Map a transformers CLIP vision tower + projection onto open_clip's parameter names."""
    vm = model.vision_model
    sd: dict[str, torch.Tensor] = {
        "visual.conv1.weight": vm.embeddings.patch_embedding.weight,
        "visual.class_embedding": vm.embeddings.class_embedding,
        "visual.positional_embedding": vm.embeddings.position_embedding.weight,
        "visual.ln_pre.weight": vm.pre_layrnorm.weight,
        "visual.ln_pre.bias": vm.pre_layrnorm.bias,
        "visual.ln_post.weight": vm.post_layernorm.weight,
        "visual.ln_post.bias": vm.post_layernorm.bias,
        "visual.proj": model.visual_projection.weight.T,
        "logit_scale": model.logit_scale,
    }
    for i, layer in enumerate(vm.encoder.layers):
        p = f"visual.transformer.resblocks.{i}."
        att = layer.self_attn
        sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = layer.layer_norm1.weight, layer.layer_norm1.bias
        sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = layer.layer_norm2.weight, layer.layer_norm2.bias
        sd[p + "attn.in_proj_weight"] = torch.cat(
            [att.q_proj.weight, att.k_proj.weight, att.v_proj.weight])
        sd[p + "attn.in_proj_bias"] = torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias])
        sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"] = (
            att.out_proj.weight, att.out_proj.bias)
        sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"] = layer.mlp.fc1.weight, layer.mlp.fc1.bias
        sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"] = layer.mlp.fc2.weight, layer.mlp.fc2.bias
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def _save_open_clip(hf_model: Any, out: Path, *, seed: int) -> None:
    import open_clip
    from safetensors.torch import save_file

    from safeclip_guardrail.encoders.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    v: dict[str, Any] = dict(_VISION)
    model_cfg: dict[str, Any] = {
        "embed_dim": _PROJ,
        "quick_gelu": True,
        "vision_cfg": {"image_size": v["image_size"], "layers": v["num_hidden_layers"],
                       "width": v["hidden_size"],
                       "head_width": v["hidden_size"] // v["num_attention_heads"],
                       "mlp_ratio": v["intermediate_size"] / v["hidden_size"],
                       "patch_size": v["patch_size"]},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4,
                     "layers": 2},
    }
    torch.manual_seed(seed)
    oc = open_clip.CLIP(**{k: v for k, v in model_cfg.items() if k != "quick_gelu"},
                        quick_gelu=True)
    state = oc.state_dict()
    state.update(hf_vision_to_open_clip(hf_model))
    oc.load_state_dict(state)
    save_file({k: t.contiguous() for k, t in oc.state_dict().items()},
              str(out / "open_clip_model.safetensors"))
    (out / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": model_cfg,
        "preprocess_cfg": {"mean": list(OPENAI_CLIP_MEAN), "std": list(OPENAI_CLIP_STD)},
    }, indent=2))
