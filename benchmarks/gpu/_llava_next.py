"""The fused LLaVA-NeXT guard: one tower pass over every view vs a separate judge pass.

LLaVA-NeXT encodes each picture as a whole-picture base view plus any-resolution tiles, all
in one pass of its CLIP tower; ``ChatLlava``'s fused guard reads the CLS of every row of that
pass, projects and scores it (the worst view decides). A separate judge
(``SafeCLIPGuardrail.wrap``, or the guard beside any server) decodes the bytes again, makes
its own views and runs its own CLIP pass. Measured on a LLaVA-NeXT of the real vision size
(ViT-L/14-336, the real grid pinpoints up to 672x672 and 1008x336) with a small random
language model (the LM's size changes the answer's cost, not the guard's), random weights,
bf16 on the GPU; the tower's weights are the CLIP's, as LLaVA's are OpenAI CLIP's.

Per picture shape (square, 16:9, 3:1) and all three in one prompt:

- ``views``: rows of LLaVA-NeXT's tower pass; ``guard_views``: the separate judge's views;
- ``processor_ms`` (CPU, paid with or without a guard), ``tower_pass_ms`` (paid anyway);
- ``fused_guard_ms``: CLS, projection and scores from that pass, and its share of the pass;
- ``separate_judge_ms``: ``guard.judge_batch`` of the JPEG bytes (decode, views, a second
  ViT-L pass, scores); ``second_tower_pass_ms``: the standalone CLIP over LLaVA-NeXT's own
  views (the pure GPU cost of not fusing); ``separate_over_fused``;
- ``fused_vs_standalone``: min cosine of the fused embeddings vs the standalone CLIP's on the
  same views, and the largest toxic-score difference.

``chat``: ``ChatLlava.invoke`` of the three-picture prompt (a fixed-length answer) without a
guard, fused, and wrapped by a separate ``SafeCLIPGuardrail``; a toy LM makes the answer
short, so the added percentages are upper bounds of a real model's.
"""

from __future__ import annotations

import base64
import io
from types import SimpleNamespace
from typing import Any

import numpy as np
from _clip_fixtures import photo_jpegs
from bench_views import SHAPES

from gpu._ctx import Ctx


def _shape(ctx: Ctx) -> Any:
    from bench_llava_overhead import Shape

    if ctx.smoke:
        return Shape(vision_hidden=32, vision_layers=3, vision_heads=4, vision_intermediate=64,
                     image_size=32, patch_size=8, text_hidden=64, text_layers=2, text_heads=4,
                     text_intermediate=128, clip_text_hidden=32, clip_text_layers=2,
                     clip_text_heads=4, projection_dim=16)
    return Shape(text_hidden=512, text_layers=2, text_heads=8, text_intermediate=1376)


def _build(shape: Any, device: str, dtype: Any) -> tuple[Any, Any]:
    import torch
    from bench_llava_overhead import _default_dtype
    from transformers import (
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
    )
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )

    from safeclip_guardrail.testing._llava import LLAVA_15_CHAT_TEMPLATE, _tiny_tokenizer

    tok = _tiny_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<pad>", "<image>")}
    s = shape.image_size
    grid = [[s, 2 * s], [2 * s, s], [2 * s, 2 * s], [3 * s, s], [s, 3 * s]]  # LLaVA-NeXT's
    vision = CLIPVisionConfig(hidden_size=shape.vision_hidden,
                              num_hidden_layers=shape.vision_layers,
                              num_attention_heads=shape.vision_heads,
                              intermediate_size=shape.vision_intermediate, image_size=s,
                              patch_size=shape.patch_size, hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=len(tok), hidden_size=shape.text_hidden,
                       num_hidden_layers=shape.text_layers, num_attention_heads=shape.text_heads,
                       num_key_value_heads=shape.text_heads,
                       intermediate_size=shape.text_intermediate, max_position_embeddings=16384,
                       bos_token_id=ids["<s>"], eos_token_id=ids["</s>"],
                       pad_token_id=ids["<pad>"])
    config = LlavaNextConfig(vision_config=vision, text_config=text, image_grid_pinpoints=grid,
                             image_token_id=ids["<image>"], vision_feature_layer=-2,
                             vision_feature_select_strategy="default",
                             projector_hidden_act="gelu")
    torch.manual_seed(0)
    with _default_dtype(dtype), torch.device(device):
        model = LlavaNextForConditionalGeneration(config).to(dtype).eval()
    model.generation_config = GenerationConfig(do_sample=False, bos_token_id=ids["<s>"],
                                               eos_token_id=ids["</s>"],
                                               pad_token_id=ids["<pad>"])
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(
            size={"shortest_edge": s}, crop_size={"height": s, "width": s},
            image_grid_pinpoints=grid),
        tokenizer=tok, patch_size=shape.patch_size, vision_feature_select_strategy="default",
        chat_template=LLAVA_15_CHAT_TEMPLATE, num_additional_image_tokens=1)
    return model, processor


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return round(float(np.min(np.sum(a * b, 1))), 6)


def _measure(ctx: Ctx, parts: dict[str, Any], jpegs: list[bytes], repeats: int
             ) -> dict[str, Any]:
    import torch
    from PIL import Image

    from safeclip_guardrail.langchain.chat_models._fused import (
        encode_images,
        image_cls,
        score_fused,
    )

    loaded, processor = parts["loaded"], parts["processor"]
    fused, separate = parts["fused_guard"], parts["separate_guard"]
    pics = [Image.open(io.BytesIO(j)).convert("RGB") for j in jpegs]
    prompt = "USER: " + "<image>\n" * len(pics) + "Describe the pictures. ASSISTANT:"

    def process() -> dict[str, Any]:
        raw = processor(images=pics, text=prompt, return_tensors="pt")
        return {k: v.to(loaded.device) if isinstance(v, torch.Tensor) else v
                for k, v in dict(raw).items()}

    inputs = process()
    enc = encode_images(loaded, inputs)
    slots = [SimpleNamespace(decoded=SimpleNamespace(sha256="0" * 64), source=f"image {i}")
             for i in range(len(pics))]

    def fused_guard() -> Any:
        return score_fused(fused, image_cls(loaded, enc, inputs, n_images=len(pics),
                                            source="final"), slots)

    cls = image_cls(loaded, enc, inputs, n_images=len(pics), source="final")
    counts = [len(labels) for labels in cls.labels]
    pixel_views = torch.cat([pv[:n] for pv, n in zip(inputs["pixel_values"], counts)]).to(
        loaded.device, separate.encoder.dtype)
    judged = separate.judge_batch(jpegs)
    with torch.inference_mode():
        mine = fused.embed_cls(cls.cls)
    theirs = separate.encoder.encode_pixels(pixel_views).final
    row: dict[str, Any] = {
        "views": counts, "guard_views": [j.verdict.views_checked for j in judged],
        "processor_ms": ctx.median_ms(process, repeats),
        "tower_pass_ms": ctx.median_ms(lambda: encode_images(loaded, inputs), repeats),
        "fused_guard_ms": ctx.median_ms(fused_guard, repeats),
        "separate_judge_ms": ctx.median_ms(lambda: separate.judge_batch(jpegs), repeats),
        "second_tower_pass_ms": ctx.median_ms(
            lambda: separate.encoder.encode_pixels(pixel_views), repeats),
        "fused_vs_standalone": {
            "min_cosine": _min_cos(mine, theirs),
            "max_toxic_score_diff": round(max(
                abs(a.toxic_score - b.toxic_score) for a, b in zip(
                    fused.score_embeddings(mine), separate.score_embeddings(theirs))), 6)},
    }
    row["fused_added_pct_of_tower"] = round(100 * row["fused_guard_ms"] / row["tower_pass_ms"], 2)
    row["separate_over_fused"] = round(row["separate_judge_ms"] / row["fused_guard_ms"], 1)
    return row


def _chat(ctx: Ctx, parts: dict[str, Any], jpegs: list[bytes], repeats: int) -> dict[str, Any]:
    from langchain_core.messages import HumanMessage

    from safeclip_guardrail.langchain import ChatLlava, SafeCLIPGuardrail

    model, processor, tokens = parts["model"], parts["processor"], ctx.pick(8, 2)
    gen = {"max_new_tokens": tokens, "min_new_tokens": tokens}
    name = "random-llava-next-vit-l-336"
    none = ChatLlava.from_model(model, processor, name=name, **gen)
    fused = ChatLlava.from_model(model, processor, name=name, guard=parts["fused_guard"], **gen)
    if not fused.guard_is_fused:
        raise RuntimeError("ChatLlava did not fuse the guard into LLaVA-NeXT's tower pass")
    separate = SafeCLIPGuardrail(guard=parts["separate_guard"], mode="annotate").wrap(none)
    blocks: list[Any] = [{"type": "image", "base64": base64.b64encode(j).decode(),
                          "mime_type": "image/jpeg"} for j in jpegs]
    msgs = [HumanMessage(content=[*blocks, {"type": "text", "text": "Describe the pictures."}])]
    out: dict[str, Any] = {"new_tokens": tokens, "pictures": len(jpegs)}
    for key, llm in (("none_ms", none), ("fused_ms", fused), ("separate_ms", separate)):
        out[key] = ctx.median_ms(lambda llm=llm: llm.invoke(msgs), repeats)
    views = fused.invoke(msgs).response_metadata["safeclip"].verdicts
    out["fused_views_checked"] = [v.views_checked for v in views]
    for key in ("fused", "separate"):
        out[f"{key}_added_pct"] = round(100 * (out[f"{key}_ms"] / out["none_ms"] - 1), 2)
    return out


def llava_next_fused(ctx: Ctx, out: dict[str, Any]) -> None:
    import torch
    from bench_llava_overhead import build_clip_encoder

    from safeclip_guardrail import GuardConfig, SafeCLIPGuard
    from safeclip_guardrail.langchain.chat_models._loading import register_loaded

    dtype_name = "bfloat16" if ctx.cuda else "float32"
    dtype = getattr(torch, dtype_name)
    shape = _shape(ctx)
    model, processor = _build(shape, ctx.device, dtype)
    full = build_clip_encoder(shape, ctx.device, dtype, vision=True)
    head = build_clip_encoder(shape, ctx.device, dtype, vision=False)  # same seed: same CLIP
    missing, unexpected = model.model.vision_tower.load_state_dict(
        full.model.vision_model.state_dict(), strict=False)
    if [k for k in missing if "position_ids" not in k] or unexpected:
        raise RuntimeError(f"tower and CLIP differ: {missing[:3]} {unexpected[:3]}")
    config = GuardConfig(mode="annotate", cache_size=0, cls_source="final")
    parts = {"model": model, "processor": processor,
             "loaded": register_loaded(model, processor, name="random-llava-next-vit-l-336"),
             "fused_guard": SafeCLIPGuard(head, config=config),
             "separate_guard": SafeCLIPGuard(full, config=config)}
    out.update(dtype=dtype_name, vision=f"{shape.vision_layers} layers x {shape.vision_hidden} "
               f"at {shape.image_size} px (patch {shape.patch_size})",
               grid_pinpoints=model.config.image_grid_pinpoints,
               language_model=f"{shape.text_layers} layers x {shape.text_hidden} (random, toy)",
               same_projection=bool(torch.equal(full.model.visual_projection.weight,
                                                head.model.visual_projection.weight)),
               pictures={})
    repeats = ctx.pick(10, 1)
    every = []
    for s, (name, size) in enumerate(SHAPES.items()):
        w, h = ctx.size(*size)
        jpeg = photo_jpegs(1, width=w, height=h, seed=200 + s)
        every += jpeg
        out["pictures"][name] = {"size": [w, h], **_measure(ctx, parts, jpeg, repeats)}
    out["pictures"]["all_three_in_one_prompt"] = _measure(ctx, parts, every, repeats)
    out["chat"] = _chat(ctx, parts, every, ctx.pick(5, 1))
