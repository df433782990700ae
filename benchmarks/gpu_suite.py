"""Every GPU figure of docs/performance.md from one run; prints one JSON object.

    python benchmarks/gpu_suite.py                 # ~3-5 min on one H100/H200
    python benchmarks/gpu_suite.py --quick         # smaller counts, for a smoke run
    python benchmarks/gpu_suite.py --compile       # also torch.compile (adds ~30 s)

What it measures, all on ViT-L/14-336 (LLaVA-1.5's tower) with random weights, real
architecture, loaded through ``SafeCLIPGuard.from_pretrained(dir)``:

- ``throughput``: raw encoder images/s (``encode_pixels``: vision forward + projection) at
  batch 32 / 64 / 128, in bf16 and fp16, SDPA attention (eager kernels);
- ``batch1_latency``: p50 / p95 ms of one image, eager vs CUDA graph, bf16 and fp16;
- ``whole_path``: ``check_batch`` on 640x480 JPEG bytes (decode + on-GPU preprocessing +
  encode + score) vs the raw encoder, batch 1 and 32 (``whole_path_over_raw_encoder``);
- ``equivalence``: cosine of fp16 / bf16 / CUDA-graph embeddings vs the fp32 GPU reference;
- ``compile`` (with ``--compile``): ``torch.compile`` of the vision tower, batch 64 img/s.

The JSON is printed at the end and also written to ``$OUT/gpu_suite.json`` when ``$OUT``
is set. Partial results are printed to stderr as each section finishes, so a run cut off
by a time limit still shows what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clip_fixtures import build_model, machine, photo_jpegs, summary
from bench_guard import run_batch

DEVICE = "cuda"
"""``--smoke-cpu`` sets "cpu": the whole script runs on the tiny model to check its code."""


def _sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _sync_timed(fn: Callable[[], Any]) -> float:
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def _guard(model_dir: Path, dtype: str, batch: int = 32) -> Any:
    from safeclip_guardrail import SafeCLIPGuard

    return SafeCLIPGuard.from_pretrained(str(model_dir), device=DEVICE, dtype=dtype,
                                         batch_size=batch, cache_size=0,
                                         cache_dir=tempfile.mkdtemp(prefix="safeclip_gpu_"))


def _pixels(enc: Any, n: int) -> Any:
    import torch

    size = enc.preprocess.crop
    g = torch.Generator(device=DEVICE).manual_seed(0)
    return torch.randn((n, 3, size, size), generator=g, device=DEVICE).to(enc.dtype)


def _throughput_one(model_dir: Path, dtype: str, batches: list[int],
                    iters: int) -> dict[str, Any]:
    enc = _guard(model_dir, dtype).encoder
    rows = {}
    for b in batches:
        x = _pixels(enc, b)
        for _ in range(2):
            enc.encode_pixels(x)
        times = [_sync_timed(lambda x=x: enc.encode_pixels(x)) for _ in range(iters)]
        rows[str(b)] = summary(times, b)
    return rows


def throughput(model_dir: Path, batches: list[int], iters: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dtype in ("bfloat16", "float16"):
        out[dtype] = _throughput_one(model_dir, dtype, batches, iters)
        _free()
    return out


def _latency_one(model_dir: Path, dtype: str, iters: int) -> dict[str, Any]:
    enc = _guard(model_dir, dtype, batch=1).encoder
    x = _pixels(enc, 1)
    res: dict[str, Any] = {}
    for mode in ("eager", "cuda_graph"):
        if mode == "cuda_graph":
            enc.enable_cuda_graphs(buckets=(1, 2, 4, 8))
        t0 = time.perf_counter()
        enc.encode_pixels(x)  # with graphs on, the first call captures
        first = time.perf_counter() - t0
        for _ in range(5):
            enc.encode_pixels(x)
        times = [_sync_timed(lambda: enc.encode_pixels(x)) for _ in range(iters)]
        res[mode] = {**summary(times, 1), "first_call_ms": round(first * 1000, 1)}
    res["captured_buckets"] = enc.cuda_graphs.captured
    res["graph_speedup_p50"] = round(res["eager"]["p50_ms"] / res["cuda_graph"]["p50_ms"], 3)
    return res


def batch1_latency(model_dir: Path, iters: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dtype in ("bfloat16", "float16"):
        out[dtype] = _latency_one(model_dir, dtype, iters)
        _free()
    return out


def whole_path(model_dir: Path, iters: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    guard = _guard(model_dir, "float16")
    for b in (1, 32):
        jpegs = photo_jpegs(b * (iters + 1), seed=b)
        out[str(b)] = run_batch(guard.with_options(batch_size=b), None, jpegs, b, iters, 0)
    guard.encoder.enable_cuda_graphs()
    jpegs = photo_jpegs(iters + 1, seed=7)
    out["1_cuda_graph"] = run_batch(guard.with_options(batch_size=1), None, jpegs, 1, iters, 0)
    del guard
    _free()
    return out


def equivalence(model_dir: Path) -> dict[str, Any]:
    jpegs = photo_jpegs(16, seed=3)
    ref = _guard(model_dir, "float32")
    e_ref = ref.embed_images_all(jpegs)
    v_ref = ref.check_batch(jpegs)
    del ref
    _free()
    out: dict[str, Any] = {}
    for dtype in ("float16", "bfloat16"):
        g = _guard(model_dir, dtype)
        e = g.embed_images_all(jpegs)
        v = g.check_batch(jpegs)
        g.encoder.enable_cuda_graphs(buckets=(1, 16))
        graphed = np.concatenate([g.embed_images([j]) for j in jpegs[:4]])
        cos = lambda a, b: float(np.min(np.sum(a * b, 1)))  # noqa: E731 - normalised inputs
        out[dtype] = {
            "min_cosine_final": round(cos(e.final, e_ref.final), 6),
            "min_cosine_penultimate": round(cos(e.penultimate, e_ref.penultimate), 6),
            "min_cosine_cuda_graph_vs_fp32": round(cos(graphed, e_ref.final[:4]), 6),
            "max_abs_score_diff": round(max(abs(a.scores[c] - b.scores[c])
                                            for a, b in zip(v, v_ref) for c in b.scores), 6),
            "verdicts_identical": all((a.flagged, a.top_category) == (b.flagged, b.top_category)
                                      for a, b in zip(v, v_ref)),
        }
        del g
        _free()
    return out


def compiled(model_dir: Path, iters: int) -> dict[str, Any]:
    import torch

    guard = _guard(model_dir, "bfloat16")
    enc = guard.encoder
    vision = enc.vision
    t0 = time.perf_counter()
    enc.vision = torch.compile(vision)
    x = _pixels(enc, 64)
    enc.encode_pixels(x)
    compile_s = time.perf_counter() - t0
    times = [_sync_timed(lambda: enc.encode_pixels(x)) for _ in range(iters)]
    return {"batch": 64, "dtype": "bfloat16", "compile_s": round(compile_s, 1),
            **summary(times, 64)}


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "safeclip_bench")
    p.add_argument("--smoke-cpu", action="store_true",
                   help="run every section on the tiny model on the CPU (checks the script)")
    args = p.parse_args(argv)
    global DEVICE
    model_name = "vit-l-14-336"
    if args.smoke_cpu:
        DEVICE, model_name, args.quick = "cpu", "tiny", True
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_suite.py needs a CUDA GPU; on CPU run benchmarks/bench_guard.py")
    torch.backends.cuda.matmul.allow_tf32 = True
    iters = 5 if args.quick else 20
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model_dir = build_model(model_name, args.workdir)
    report: dict[str, Any] = {
        "benchmark": "gpu_suite", "model": model_name, "device": DEVICE,
        "weights": "random (real architecture)",
        "machine": machine(), "build_model_s": round(time.perf_counter() - t0, 1),
    }
    sections: list[tuple[str, Callable[[], Any]]] = [
        ("batch1_latency", lambda: batch1_latency(model_dir, iters * 5)),
        ("throughput", lambda: throughput(model_dir, [32, 64, 128], iters)),
        ("whole_path", lambda: whole_path(model_dir, max(3, iters // 2))),
        ("equivalence", lambda: equivalence(model_dir)),
    ]
    if args.compile:
        sections.append(("compile", lambda: compiled(model_dir, iters)))
    for name, fn in sections:
        t1 = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as exc:  # report the failure, keep the other figures
            report[name] = {"error": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc(limit=5)}
        report.setdefault("section_s", {})[name] = round(time.perf_counter() - t1, 1)
        print(json.dumps({name: report[name]}), file=sys.stderr, flush=True)
    text = json.dumps(report, indent=2)
    print(text, flush=True)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_suite.json").write_text(text)
    return report


if __name__ == "__main__":
    main()
