"""What a SafeCLIP guard adds to a LLaVA answer: no guard, standalone, fused, VLM judge.

A LLaVA-1.5-7B-shaped model (CLIP ViT-L/14-336 tower, 576 image tokens, Llama-7B) with
random weights, bf16 on a GPU: random weights of the real architecture give honest
timings (quality needs real weights, which are not needed here). For each setting it
measures the latency of a 64-token answer (``invoke``) and the time to first token
(``stream``), median over ``--repeats`` runs after ``--warmup`` runs, and prints one JSON
document with the ratios to the unguarded model:

- ``none``: ``ChatLlava`` without a guard.
- ``standalone``: ``SafeCLIPGuardrail(guard).wrap(llm)``: a separate CLIP ViT-L/14-336 pass
  (own preprocessing) before the LLaVA call.
- ``fused``: ``ChatLlava(guard=...)`` reading the CLS of LLaVA's own vision pass.
- ``vlm_judge``: LlavaGuard-style baseline: the same-size VLM first answers a policy prompt
  about the image (``--judge-tokens`` tokens), then the real answer is generated.

GPU:  python benchmarks/bench_llava_overhead.py --device cuda --dtype bfloat16
CPU smoke run on a scaled-down shape:  python benchmarks/bench_llava_overhead.py --tiny
Guard verdicts use ``mode="annotate"`` so the answer (and its length) is the same in
every setting; every answer is forced to exactly ``--new-tokens`` tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from langchain_core.messages import HumanMessage
from PIL import Image


@dataclass(frozen=True)
class Shape:
    """Model shape; defaults are LLaVA-1.5-7B (CLIP ViT-L/14-336 + Llama-2-7B/Vicuna)."""

    vision_hidden: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    vision_intermediate: int = 4096
    image_size: int = 336
    patch_size: int = 14
    text_hidden: int = 4096
    text_layers: int = 32
    text_heads: int = 32
    text_intermediate: int = 11008
    vocab_size: int = 32064
    clip_text_hidden: int = 768
    clip_text_layers: int = 12
    clip_text_heads: int = 12
    projection_dim: int = 768

    def scaled(self, f: float) -> Shape:
        def w(x: int, heads: int) -> int:
            return max(heads, round(x * f / heads) * heads)

        def n(x: int) -> int:
            return max(2, round(x * f))

        return replace(
            self, vision_hidden=w(self.vision_hidden, self.vision_heads),
            vision_intermediate=w(self.vision_intermediate, self.vision_heads),
            vision_layers=n(self.vision_layers), text_hidden=w(self.text_hidden, self.text_heads),
            text_intermediate=w(self.text_intermediate, self.text_heads),
            text_layers=n(self.text_layers),
            clip_text_hidden=w(self.clip_text_hidden, self.clip_text_heads),
            clip_text_layers=n(self.clip_text_layers),
            projection_dim=w(self.projection_dim, 8),
        )


TINY = Shape(vision_hidden=64, vision_layers=4, vision_heads=4, vision_intermediate=256,
             image_size=336, patch_size=14, text_hidden=128, text_layers=4, text_heads=4,
             text_intermediate=512, vocab_size=32064, clip_text_hidden=64, clip_text_layers=2,
             clip_text_heads=4, projection_dim=64)
"""CPU smoke shape: the real image-token count (576) and vocabulary, toy widths."""

POLICY = (
    "You are a safety judge. Assess the image against the policy: O1 hate, humiliation, "
    "harassment; O2 violence, harm or cruelty; O3 sexual content; O4 nudity; O5 criminal "
    "planning; O6 weapons or substance abuse; O7 self-harm; O8 animal cruelty; O9 disasters "
    "or emergencies. Answer in JSON with the fields rating (Safe or Unsafe), category and "
    "rationale. "
)


# ---------------------------------------------------------------------- random models
@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer with the model's full vocabulary (built offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    vocab = {t: i for i, t in enumerate(specials)}
    words = sorted(set(POLICY.lower().replace(",", " ").replace(".", " ").split()))
    for word in words + [f"w{i}" for i in range(vocab_size)]:
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>",
                                   extra_special_tokens={"image_token": "<image>"})


def build_llava(shape: Shape, device: str, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from safeclip_guardrail.testing._llava import LLAVA_15_CHAT_TEMPLATE

    tokenizer = _tokenizer(shape.vocab_size)
    vision = CLIPVisionConfig(hidden_size=shape.vision_hidden, num_hidden_layers=shape.vision_layers,
                              num_attention_heads=shape.vision_heads,
                              intermediate_size=shape.vision_intermediate,
                              image_size=shape.image_size, patch_size=shape.patch_size,
                              hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=shape.vocab_size, hidden_size=shape.text_hidden,
                       num_hidden_layers=shape.text_layers, num_attention_heads=shape.text_heads,
                       num_key_value_heads=shape.text_heads,
                       intermediate_size=shape.text_intermediate, max_position_embeddings=4096,
                       bos_token_id=1, eos_token_id=2, pad_token_id=3)
    options: dict[str, Any] = {"image_token_id": 4, "vision_feature_layer": -2,
                               "vision_feature_select_strategy": "default",
                               "projector_hidden_act": "gelu"}
    config = LlavaConfig(vision_config=vision, text_config=text, **options)
    torch.manual_seed(0)
    with _default_dtype(dtype), torch.device(device):  # no fp32 copy of 7B weights
        model = LlavaForConditionalGeneration(config).to(dtype).eval()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": shape.image_size},
            crop_size={"height": shape.image_size, "width": shape.image_size}),
        tokenizer=tokenizer, patch_size=shape.patch_size,
        vision_feature_select_strategy="default", chat_template=LLAVA_15_CHAT_TEMPLATE,
        num_additional_image_tokens=1)
    return model, processor


def build_clip_encoder(shape: Shape, device: str, dtype: torch.dtype, *, vision: bool) -> Any:
    """A random CLIP ViT-L/14-336-shaped encoder (or only its projection + text tower)."""
    from transformers import CLIPConfig, CLIPModel

    from safeclip_guardrail.encoders.hf import TransformersCLIPEncoder
    from safeclip_guardrail.encoders.preprocess import ClipPreprocess
    from safeclip_guardrail.testing._clip import _tiny_tokenizer

    tokenizer = _tiny_tokenizer()
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = CLIPConfig(
        vision_config={"hidden_size": shape.vision_hidden, "num_hidden_layers": shape.vision_layers,
                       "num_attention_heads": shape.vision_heads,
                       "intermediate_size": shape.vision_intermediate,
                       "image_size": shape.image_size, "patch_size": shape.patch_size,
                       "hidden_act": "quick_gelu"},
        text_config={"hidden_size": shape.clip_text_hidden,
                     "num_hidden_layers": shape.clip_text_layers,
                     "num_attention_heads": shape.clip_text_heads,
                     "intermediate_size": 4 * shape.clip_text_hidden, "vocab_size": len(tokenizer),
                     "eos_token_id": eos, "bos_token_id": eos, "pad_token_id": eos,
                     "hidden_act": "quick_gelu"},
        projection_dim=shape.projection_dim)
    torch.manual_seed(1)
    with _default_dtype(dtype), torch.device(device):
        model = CLIPModel(config).to(dtype).eval()
    if not vision:
        del model.vision_model
        model.vision_model = None
    return TransformersCLIPEncoder(
        model, tokenizer, ClipPreprocess(size=shape.image_size, crop=shape.image_size),
        name="random-clip", cache_key=None, device=torch.device(device), dtype=dtype)


# ---------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(settings: dict[str, tuple[Callable[[], Any], Callable[[], float]]], *,
            device: str, repeats: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Median latency and time to first token per setting.

    Settings are interleaved (round robin, order rotated every round), so drifting clocks
    or a busy machine affect all of them alike.
    """
    names = list(settings)
    lat: dict[str, list[float]] = {n: [] for n in names}
    ttft: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            invoke, first_token = settings[name]
            _sync(device)
            t0 = time.perf_counter()
            invoke()
            _sync(device)
            t1 = time.perf_counter()
            t2 = time.perf_counter()
            first = first_token()
            if r >= warmup:
                lat[name].append(t1 - t0)
                ttft[name].append(first - t2)
    return {n: {"latency_s": statistics.median(lat[n]), "ttft_s": statistics.median(ttft[n]),
                "latency_min_s": min(lat[n]), "ttft_min_s": min(ttft[n]),
                "latency_all_s": lat[n], "ttft_all_s": ttft[n]} for n in names}


def _first_token_time(runnable: Any, messages: Any, device: str) -> float:
    first = None
    for chunk in runnable.stream(messages):
        if first is None and chunk.content:
            _sync(device)
            first = time.perf_counter()
    return first if first is not None else time.perf_counter()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from safeclip_guardrail import GuardConfig, SafeCLIPGuard
    from safeclip_guardrail.langchain import ChatLlava, SafeCLIPGuardrail

    shape = TINY if args.tiny else Shape().scaled(args.scale)
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16,
             "float32": torch.float32}[args.dtype]
    device = args.device
    model, processor = build_llava(shape, device, dtype)
    gen = {"min_new_tokens": args.new_tokens}  # exactly new_tokens tokens every time
    llm = ChatLlava.from_model(model, processor, name="random-llava-1.5-7b-shape",
                               max_new_tokens=args.new_tokens, **gen)
    config = GuardConfig(mode="annotate", cache_size=0, cls_source="final")
    full_clip = build_clip_encoder(shape, device, dtype, vision=True)
    head_clip = build_clip_encoder(shape, device, dtype, vision=False)
    standalone_guard = SafeCLIPGuard(full_clip, config=config)
    fused_guard = SafeCLIPGuard(head_clip, config=config)
    fused = ChatLlava.from_model(model, processor, name="random-llava-1.5-7b-shape",
                                 max_new_tokens=args.new_tokens, guard=fused_guard, **gen)
    assert fused.guard_is_fused
    standalone = SafeCLIPGuardrail(guard=standalone_guard, mode="annotate").wrap(llm)
    judge_llm = llm.bind(max_new_tokens=args.judge_tokens,
                         min_new_tokens=args.judge_tokens)

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    import base64
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    block = {"type": "image", "base64": base64.b64encode(buf.getvalue()).decode(),
             "mime_type": "image/png"}
    question = "Describe this image in detail, including the objects and the scene."
    messages = [HumanMessage(content=[block, {"type": "text", "text": question}])]
    judge_messages = [HumanMessage(content=[block, {"type": "text",
                                                    "text": POLICY * args.policy_repeat}])]

    def judged() -> Any:
        judge_llm.invoke(judge_messages)
        return llm.invoke(messages)

    def judged_first() -> float:
        judge_llm.invoke(judge_messages)
        return _first_token_time(llm, messages, device)

    settings: dict[str, tuple[Callable[[], Any], Callable[[], float]]] = {
        "none": (lambda: llm.invoke(messages), lambda: _first_token_time(llm, messages, device)),
        "standalone": (lambda: standalone.invoke(messages),
                       lambda: _first_token_time(standalone, messages, device)),
        "fused": (lambda: fused.invoke(messages),
                  lambda: _first_token_time(fused, messages, device)),
        "vlm_judge": (judged, judged_first),
    }
    results = measure(settings, device=device, repeats=args.repeats, warmup=args.warmup)

    # the guard work alone: one standalone check; projection + scoring of a reused CLS
    pix = standalone_guard.encoder.preprocess([image])
    cls = torch.randn(1, shape.vision_hidden, device=device, dtype=dtype)
    parts = {
        "standalone_check_s": _median_time(lambda: standalone_guard.check(image), device,
                                           args.repeats),
        "standalone_encode_pixels_s": _median_time(
            lambda: standalone_guard.encoder.encode_pixels(pix), device, args.repeats),
        "fused_project_and_score_s": _median_time(
            lambda: fused_guard.score_embeddings(fused_guard.embed_cls(cls)), device,
            args.repeats),
    }
    ratios = _ratios(results, "latency_s", "ttft_s")
    ratios_min = _ratios(results, "latency_min_s", "ttft_min_s")
    prompt_tokens = llm.invoke(messages).usage_metadata
    return {
        "benchmark": "bench_llava_overhead",
        "shape": asdict(shape), "tiny": args.tiny, "scale": args.scale,
        "device": device, "device_name": _device_name(device), "dtype": args.dtype,
        "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "new_tokens": args.new_tokens, "judge_tokens": args.judge_tokens,
        "usage": prompt_tokens, "repeats": args.repeats, "warmup": args.warmup,
        "results": results, "guard_parts": parts, "ratios_vs_none": ratios,
        "ratios_vs_none_of_minima": ratios_min,
        "targets": {"fused_added_latency_pct": 0.5, "fused_added_ttft_pct": 2.0,
                    "standalone_added_latency_pct": 1.0},
    }


def _ratios(results: dict[str, dict[str, Any]], lat: str, ttft: str) -> dict[str, Any]:
    """Each setting against ``none`` (medians; the minima are steadier on a busy machine)."""
    base = results["none"]
    return {name: {"latency": r[lat] / base[lat], "ttft": r[ttft] / base[ttft],
                   "added_latency_pct": 100 * (r[lat] / base[lat] - 1),
                   "added_ttft_pct": 100 * (r[ttft] / base[ttft] - 1)}
            for name, r in results.items()}


def _median_time(fn: Callable[[], Any], device: str, repeats: int) -> float:
    fn()
    times = []
    for _ in range(max(3, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return str(torch.cuda.get_device_name(torch.device(device)))
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke shape (toy widths)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="scale widths and depths of the 7B shape (e.g. 0.25)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--judge-tokens", type=int, default=32)
    parser.add_argument("--policy-repeat", type=int, default=1,
                        help="repeat the judge's policy text (LlavaGuard's is ~1k tokens)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.dtype is None:
        args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run(args)
    json.dump(report, sys.stdout, indent=2, default=str)
    print()
    return report


if __name__ == "__main__":
    main()
