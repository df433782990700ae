"""The CLIP tower alone and the guard around it: ViT-L/14-336 (LLaVA-1.5 / NeXT's tower).

Random weights of the real architecture, saved once and loaded through
``SafeCLIPGuard.from_pretrained(dir)``, the user's path:

- ``build_model``: the checkpoint (seconds to build, reused from ``--workdir``);
- ``batch1_latency``: p50 / p95 ms of one image, eager vs CUDA graph, bf16 and fp16;
- ``throughput``: ``encode_pixels`` images/s at batch 32 / 64 / 128, bf16 and fp16;
- ``whole_path``: ``check_batch`` on 640x480 JPEG bytes vs the raw encoder at batch 1 and 32
  (and batch 1 with CUDA graphs), through ``bench_guard.run_batch``;
- ``equivalence``: fp16 / bf16 / CUDA-graph embeddings and verdicts vs fp32 on the device;
- ``compile``: ``torch.compile`` of the vision tower, batch 64 images/s and compile time.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from _clip_fixtures import build_model, photo_jpegs, summary
from bench_guard import run_batch

from gpu._ctx import Ctx

DTYPES = ("bfloat16", "float16")


def build(ctx: Ctx, out: dict[str, Any]) -> None:
    t0 = time.perf_counter()
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    reused = (ctx.workdir / ctx.model_name / "config.json").is_file()
    ctx.model_dir = build_model(ctx.model_name, ctx.workdir)
    out.update(model=ctx.model_name, weights="random (real architecture)", reused=reused,
               seconds=round(time.perf_counter() - t0, 1), path=str(ctx.model_dir))


def batch1_latency(ctx: Ctx, out: dict[str, Any]) -> None:
    iters = ctx.iters * 5
    for dtype in DTYPES:
        enc = ctx.guard(dtype, batch=1).encoder
        x = ctx.pixels(enc, 1)
        res: dict[str, Any] = {}
        out[dtype] = res
        try:
            for mode in ("eager", "cuda_graph"):
                if mode == "cuda_graph":
                    enc.enable_cuda_graphs(buckets=(1, 2, 4, 8))
                first = ctx.timed(lambda x=x, enc=enc: enc.encode_pixels(x))  # graphs: capture
                for _ in range(5):
                    enc.encode_pixels(x)
                times = [ctx.timed(lambda x=x, enc=enc: enc.encode_pixels(x))
                         for _ in range(iters)]
                res[mode] = {**summary(times, 1), "first_call_ms": round(first * 1000, 1)}
            res["captured_buckets"] = enc.cuda_graphs.captured
        finally:
            enc.disable_cuda_graphs()
        res["graph_speedup_p50"] = round(res["eager"]["p50_ms"] / res["cuda_graph"]["p50_ms"], 3)
    out["target_graph_p50_ms"] = 2.5


def throughput(ctx: Ctx, out: dict[str, Any]) -> None:
    batches = ctx.pick([32, 64, 128], [2, 4])
    for dtype in DTYPES:
        enc = ctx.guard(dtype).encoder
        rows: dict[str, Any] = {}
        out[dtype] = rows
        for b in batches:
            x = ctx.pixels(enc, b)
            for _ in range(2):
                enc.encode_pixels(x)
            times = [ctx.timed(lambda x=x, enc=enc: enc.encode_pixels(x))
                     for _ in range(ctx.iters)]
            rows[str(b)] = summary(times, b)
            del x
    best = max(r["images_per_s"] for r in out["bfloat16"].values())
    out["bfloat16_best_images_per_s"] = best
    out["target_images_per_s"] = 1500


def whole_path(ctx: Ctx, out: dict[str, Any]) -> None:
    """``bench_guard.run_batch``: raw encoder vs ``check_batch`` (draft and full decode) vs
    ``judge_batch(forward=True)``, each pair back to back, with the library's default dtype
    on the device (float16 on a GPU)."""
    iters = max(2, ctx.iters // 2)
    guard = ctx.guard(None)
    out["dtype"] = str(guard.encoder.dtype).removeprefix("torch.")
    out["images"] = "640x480 JPEG, quality 90, all distinct; verdict cache off"
    for b in ctx.pick((1, 32), (1, 4)):
        jpegs = photo_jpegs(b * (iters + 1), seed=b)
        out[str(b)] = run_batch(guard.with_options(batch_size=b), None, jpegs, b, iters, 0)
    if ctx.cuda:
        guard.encoder.enable_cuda_graphs()
        try:
            jpegs = photo_jpegs(iters + 1, seed=7)
            out["1_cuda_graph"] = run_batch(guard.with_options(batch_size=1), None, jpegs, 1,
                                            iters, 0)
        finally:
            guard.encoder.disable_cuda_graphs()
    out["target_whole_over_raw"] = 1.15


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return round(float(np.min(np.sum(a * b, 1))), 6)


def equivalence(ctx: Ctx, out: dict[str, Any]) -> None:
    jpegs = photo_jpegs(ctx.pick(16, 4), seed=3)
    ref = ctx.guard("float32")
    e_ref, v_ref = ref.embed_images_all(jpegs), ref.check_batch(jpegs)
    out["reference"] = "float32 on the same device, same images"
    ctx.drop_guard("float32")  # 1.7 GB the later sections do not use
    for dtype in DTYPES:
        g = ctx.guard(dtype)
        e, v = g.embed_images_all(jpegs), g.check_batch(jpegs)
        row: dict[str, Any] = {
            "min_cosine_final": _min_cos(e.final, e_ref.final),
            "min_cosine_penultimate": _min_cos(e.penultimate, e_ref.penultimate),
            "max_abs_score_diff": round(max(abs(a.scores[c] - b.scores[c])
                                            for a, b in zip(v, v_ref) for c in b.scores), 6),
            "verdicts_identical": all((a.flagged, a.top_category) == (b.flagged, b.top_category)
                                      for a, b in zip(v, v_ref)),
        }
        if ctx.cuda:
            g.encoder.enable_cuda_graphs(buckets=(1, 16))
            try:
                graphed = np.concatenate([g.embed_images([j]) for j in jpegs[:4]])
            finally:
                g.encoder.disable_cuda_graphs()
            row["min_cosine_cuda_graph_vs_fp32"] = _min_cos(graphed, e_ref.final[:4])
        out[dtype] = row


def compiled(ctx: Ctx, out: dict[str, Any]) -> None:
    import torch

    enc = ctx.guard("bfloat16").encoder
    batch = ctx.pick(64, 4)
    x = ctx.pixels(enc, batch)
    eager = [ctx.timed(lambda: enc.encode_pixels(x)) for _ in range(ctx.iters)]
    vision = enc.vision
    try:
        t0 = time.perf_counter()
        enc.vision = torch.compile(vision)
        enc.encode_pixels(x)
        ctx.sync()
        out.update(batch=batch, dtype="bfloat16", compile_s=round(time.perf_counter() - t0, 1))
        times = [ctx.timed(lambda: enc.encode_pixels(x)) for _ in range(ctx.iters)]
    finally:
        enc.vision = vision
    out.update(compiled=summary(times, batch), eager_same_run=summary(eager, batch))
    out["compiled_over_eager_speedup"] = round(sum(eager) / sum(times), 3)
