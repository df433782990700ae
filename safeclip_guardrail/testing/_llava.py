"""A tiny but real LLaVA checkpoint, built offline, that ``ChatLlava.from_pretrained`` loads.

The model is transformers' ``LlavaForConditionalGeneration`` at toy size (CLIP vision tower,
Llama language model, the real multimodal projector), with a byte-level BPE tokenizer
trained offline on a few sentences, a ``LlavaProcessor`` and llava-hf's LLaVA-1.5 chat
template. Its vision tower is a tiny CLIP's vision tower, weight for weight, as LLaVA-1.5's
tower is OpenAI CLIP's, and its config records that CLIP (``mm_vision_tower``, the key the
original LLaVA checkpoints use), so ``ChatLlava.from_pretrained(dir, guard="auto")`` and
``SafeCLIPGuard.from_pretrained(dir)`` find the CLIP the way they do for a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

__all__ = ["LLAVA_15_CHAT_TEMPLATE", "build_tiny_llava"]

LLAVA_15_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
"""llava-hf's LLaVA-1.5 template: per message the images first, then the texts."""

_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
_CORPUS = [
    "USER: What is in this image? ASSISTANT: The image shows a cat sitting on a mat.",
    "USER: Describe the picture. ASSISTANT: A dog runs in the park under a blue sky.",
    "First detect if this image contains harmful content. If it does, respond with "
    "'I cannot fulfill this request' and provide a reason. Otherwise, fulfill the request:",
    "I cannot fulfill this request: the image was flagged as unsafe.",
    "Hello! How are you today? I am fine, thank you. 0123456789 (yes) [no] {maybe}",
]
_VISION: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
           "num_attention_heads": 4, "image_size": 32, "patch_size": 8,
           "hidden_act": "quick_gelu"}
_TEXT: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024}


def _tiny_tokenizer() -> Any:
    """A byte-level BPE on printable ASCII only, so every generated token decodes to text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from safeclip_guardrail.testing._clip import _bytes_to_unicode

    table = _bytes_to_unicode()
    alphabet = [table[b] for b in [*range(32, 127), 10]]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=_SPECIALS,
                                  initial_alphabet=alphabet, limit_alphabet=len(alphabet),
                                  show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", extra_special_tokens={"image_token": "<image>"},
    )


def _copy_clip_tower(model: Any, clip_dir: Path) -> None:
    """Load the tiny CLIP's vision weights into LLaVA's tower (LLaVA-1.5 froze CLIP's tower)."""
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(str(clip_dir))
    source = clip.vision_model.state_dict()
    tower = model.model.vision_tower
    missing, unexpected = tower.load_state_dict(source, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        from safeclip_guardrail.errors import ConfigurationError

        msg = (f"the CLIP in {clip_dir} does not fit the tiny LLaVA tower "
               f"(missing {missing[:3]}, unexpected {unexpected[:3]}); build it with build_tiny_clip")
        raise ConfigurationError(msg)


def build_tiny_llava(path: str | Path, *, clip_dir: str | Path | None = None,
                     seed: int = 0, kind: Literal["llava", "llava_next"] = "llava",
                     record_clip: bool = True) -> Path:
    """Save a tiny real LLaVA-1.5-style checkpoint into ``path`` and return the directory.

    Seeded, so the same arguments give the same weights. Generation defaults are greedy.
    The vision tower is a tiny CLIP's (:func:`build_tiny_clip`, transformers backend):
    ``clip_dir`` when given (recorded as its absolute path), else one built with the same
    seed into ``path/"clip"`` (recorded as ``"clip"``, relative to the LLaVA directory, so
    the directory can be moved). ``record_clip=False`` records nothing and, without
    ``clip_dir``, keeps LLaVA's own random tower: the shape of a checkpoint whose CLIP
    cannot be found. ``kind="llava_next"`` builds a LLaVA-NeXT (any-resolution tiles: a
    whole-image base tile plus up to 2x2 tiles of 32 px). Prints nothing.
    """
    from safeclip_guardrail.encoders._quiet import quiet_transformers

    with quiet_transformers():
        return _build(Path(path), clip_dir=None if clip_dir is None else Path(clip_dir),
                      seed=seed, kind=kind, record_clip=record_clip)


def _build(out: Path, *, clip_dir: Path | None, seed: int, kind: str,
           record_clip: bool) -> Path:
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
        LlavaProcessor,
    )

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tiny_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIALS}
    text = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=ids["<s>"],
                       eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"], **_TEXT)
    options: dict[str, Any] = {"image_token_id": ids["<image>"], "vision_feature_layer": -2,
                               "vision_feature_select_strategy": "default",
                               "projector_hidden_act": "gelu"}
    size = int(_VISION["image_size"])
    grid = [[size, 2 * size], [2 * size, size], [2 * size, 2 * size]]
    vision = CLIPVisionConfig(**_VISION)
    torch.manual_seed(seed)
    model: Any
    if kind == "llava_next":
        model = LlavaNextForConditionalGeneration(LlavaNextConfig(
            vision_config=vision, text_config=text, image_grid_pinpoints=grid, **options))
    else:
        model = LlavaForConditionalGeneration(
            LlavaConfig(vision_config=vision, text_config=text, **options))
    model.eval()
    recorded: str | None = None
    if clip_dir is None and record_clip:
        from safeclip_guardrail.testing._clip import build_tiny_clip

        clip_dir, recorded = build_tiny_clip(out / "clip", seed=seed), "clip"
    elif clip_dir is not None:
        recorded = str(clip_dir.resolve())
    if clip_dir is not None:
        _copy_clip_tower(model, clip_dir)
    if record_clip and recorded is not None:
        model.config.mm_vision_tower = recorded  # what guard="auto" reads
    model.generation_config = GenerationConfig(
        do_sample=False, bos_token_id=ids["<s>"], eos_token_id=ids["</s>"],
        pad_token_id=ids["<pad>"], max_new_tokens=32,
    )
    model.save_pretrained(out, safe_serialization=True)
    square = {"height": size, "width": size}
    image_processor: Any
    processor_cls: Any
    if kind == "llava_next":
        from transformers.models.llava_next.image_processing_pil_llava_next import (
            LlavaNextImageProcessorPil,
        )

        image_processor = LlavaNextImageProcessorPil(
            size={"shortest_edge": size}, crop_size=square, image_grid_pinpoints=grid)
        processor_cls = LlavaNextProcessor
    else:
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size=square)
        processor_cls = LlavaProcessor
    processor = processor_cls(
        image_processor=image_processor, tokenizer=tokenizer,
        patch_size=int(_VISION["patch_size"]),
        vision_feature_select_strategy="default", chat_template=LLAVA_15_CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(out)
    return out
