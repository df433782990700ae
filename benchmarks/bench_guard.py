"""Whole guard path vs the raw encoder forward, on CPU or GPU; prints JSON.

    python benchmarks/bench_guard.py --device cpu --model vit-b-32 --batch 16
    python benchmarks/bench_guard.py --device cpu --model vit-l-14-336 --batch 16 --iters 2
    python benchmarks/bench_guard.py --device cuda --model vit-l-14-336 --batch 1 8 32 128

The model is the real architecture with random weights, built offline once into
``--workdir`` and loaded with ``SafeCLIPGuard.from_pretrained(dir)``. Inputs are real
640x480 JPEG bytes, all distinct; the verdict cache is off (``cache_size=0``).

- ``raw_encoder``: ``encoder.encode_pixels(pixels)`` on pixels prepared beforehand: the
  vision forward, the projection and normalisation, nothing else.
- ``whole_path``: ``guard.check_batch(jpeg_bytes)``: hash, decode (large JPEGs in draft
  mode, the default ``ImageOptions.jpeg_draft``), preprocess, encode, score, verdicts, i.e.
  what a user calls.
- ``whole_path_over_raw_encoder``: median over iterations of whole-path time / raw time,
  each pair timed back to back in one run (robust to a noisy machine; absolute times are
  not). ``..._totals`` is total / total.
- ``whole_path_streamed``: one ``check_batch`` request of all timed chunks together
  (``iterations x batch`` images, streamed chunk by chunk) over the raw forwards of the same
  chunks.
- ``whole_path_full_decode``: the same path with ``ImageOptions(jpeg_draft=False)``: every
  JPEG pixel decoded, then resized (see docs/performance.md).
- ``whole_path_forward``: ``guard.judge_batch(jpeg_bytes, forward=True)``, what guardrails
  call: the same, with every pixel decoded (a picture to forward is judged at full size)
  and the judged pixels rebuilt as the JPEG to forward; ``forwarded_size_ratio`` is the
  median of forwarded bytes / input bytes.
- ``fp32_reference``: a float32 guard on the same device and images: its raw encoder speed
  (so bf16/fp16 is compared with fp32 in the same run), the cosine between the two
  embeddings of every image and whether the verdicts agree.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clip_fixtures import build_model, emit, machine, photo_jpegs, summary, timed


def _guard(model_dir: Path, *, device: str, dtype: str | None, batch: int, cache_dir: Path,
           cuda_graphs: bool) -> Any:
    from safeclip_guardrail import SafeCLIPGuard

    guard = SafeCLIPGuard.from_pretrained(str(model_dir), device=device, dtype=dtype,
                                          batch_size=batch, cache_size=0, cache_dir=cache_dir)
    if cuda_graphs:
        guard.encoder.enable_cuda_graphs()
    return guard


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _equivalence(fast: Any, ref: Any, jpegs: list[bytes]) -> dict[str, Any]:
    """Embeddings and verdicts of the fast guard vs the fp32 reference on the same images."""
    ea, eb = fast.embed_images_all(jpegs), ref.embed_images_all(jpegs)
    va, vb = fast.score_embeddings(ea.final), ref.score_embeddings(eb.final)
    far = [v for v in zip(va, vb)
           if abs(v[1].scores[v[1].top_category] - v[1].threshold) > 0.01]
    return {
        "compared_images": len(jpegs),
        "min_cosine_final": round(float(_cosines(ea.final, eb.final).min()), 6),
        "min_cosine_penultimate": round(float(_cosines(ea.penultimate, eb.penultimate).min()), 6),
        "verdicts_compared": len(far),
        "verdicts_identical": all(a.flagged == b.flagged and a.category == b.category
                                  and a.top_category == b.top_category for a, b in far),
        "max_abs_score_diff": round(max(
            abs(a.scores[c] - b.scores[c]) for a, b in zip(va, vb) for c in b.scores), 6),
    }


def _paired_ratio(num: list[float], den: list[float]) -> float:
    """Median of per-iteration ratios: each pair was timed back to back, so a burst of load
    from another process skews one pair, not the result."""
    return round(float(np.median([a / b for a, b in zip(num, den)])), 4)


def run_batch(guard: Any, ref: Any | None, jpegs: list[bytes], batch: int, iters: int,
              ref_iters: int) -> dict[str, Any]:
    from safeclip_guardrail import ImageOptions
    from safeclip_guardrail.images.decode import decode_image

    enc = guard.encoder
    chunks = [jpegs[i * batch:(i + 1) * batch] for i in range(iters + 1)]
    pixels = [enc.prepare([decode_image(j).image for j in c]) for c in chunks]
    size = enc.preprocess.size
    full_guard = guard.with_options(
        images=ImageOptions(**{**guard.config.images.model_dump(), "jpeg_draft": False}))

    # warm-up (first calls allocate, pick kernels, capture graphs)
    enc.encode_pixels(pixels[0])
    guard.check_batch(chunks[0])
    full_guard.check_batch(chunks[0])
    forwarded = guard.judge_batch(chunks[0], forward=True)
    raw, whole, full_decode, forward = [], [], [], []
    for k in range(1, iters + 1):
        order = [("raw", lambda k=k: enc.encode_pixels(pixels[k])),
                 ("whole", lambda k=k: guard.check_batch(chunks[k])),
                 ("full", lambda k=k: full_guard.check_batch(chunks[k])),
                 ("forward", lambda k=k: guard.judge_batch(chunks[k], forward=True))]
        if k % 2 == 0:
            order.reverse()
        for name, fn in order:
            {"raw": raw, "whole": whole, "full": full_decode, "forward": forward}[name].append(
                timed(fn))
    # one request of every timed chunk: check_batch streams it (decode, encode, let go per
    # chunk of batch_size); compared with the raw forwards of the same chunks, back to back
    streamed, streamed_raw = [], []
    request = [j for c in chunks[1:] for j in c]
    for _ in range(2):
        streamed_raw.append(sum(timed(lambda k=k: enc.encode_pixels(pixels[k]))
                                for k in range(1, iters + 1)))
        streamed.append(timed(lambda: guard.check_batch(request)))
    out: dict[str, Any] = {
        "batch": batch, "iterations": iters,
        "whole_path_streamed": {"images": len(request), "chunks": iters,
                                "over_raw_encoder": _paired_ratio(streamed, streamed_raw)},
        "raw_encoder": summary(raw, batch),
        "whole_path": summary(whole, batch),
        "whole_path_over_raw_encoder": _paired_ratio(whole, raw),
        "whole_path_over_raw_encoder_totals": round(sum(whole) / sum(raw), 4),
        "whole_path_full_decode": summary(full_decode, batch),
        "whole_path_full_decode_over_raw_encoder": _paired_ratio(full_decode, raw),
        "whole_path_forward": summary(forward, batch),
        "whole_path_forward_over_raw_encoder": _paired_ratio(forward, raw),
        "forwarded_size_ratio": round(float(np.median(
            [len(j.forward.data) / len(src) for j, src in zip(forwarded, chunks[0])
             if j.forward is not None])), 4),
    }
    full = enc.encode_pixels(pixels[0]).final
    drafted = enc.encode_images([decode_image(j, draft_size=size).image for j in chunks[0]]).final
    vf, vd = guard.score_embeddings(full), guard.score_embeddings(drafted)
    out["draft_decode_equivalence"] = {
        "min_cosine_vs_full_decode": round(float(_cosines(full, drafted).min()), 6),
        "max_abs_score_diff": round(max(abs(a.scores[c] - b.scores[c])
                                        for a, b in zip(vd, vf) for c in b.scores), 6),
        "verdicts_identical": all((a.flagged, a.top_category) == (b.flagged, b.top_category)
                                  for a, b in zip(vd, vf)),
    }
    if ref is not None:
        ref.encoder.encode_pixels(pixels[0][:1])
        ref_raw, fast_raw = [], []
        for k in range(1, ref_iters + 1):
            ref_raw.append(timed(lambda k=k: ref.encoder.encode_pixels(pixels[k])))
            fast_raw.append(timed(lambda k=k: enc.encode_pixels(pixels[k])))
        out["fp32_reference"] = {
            "raw_encoder": summary(ref_raw, batch),
            "fast_over_fp32_speedup": round(sum(ref_raw) / sum(fast_raw), 3),
            **_equivalence(guard, ref, chunks[0]),
        }
    return out


def decode_costs(jpegs: list[bytes], size: int) -> dict[str, float]:
    """Milliseconds per image to decode the JPEGs fully and in draft mode."""
    from safeclip_guardrail.images.decode import decode_image

    sample = jpegs[: min(len(jpegs), 32)]
    full = timed(lambda: [decode_image(j) for j in sample]) / len(sample)
    drafted = timed(lambda: [decode_image(j, draft_size=size) for j in sample]) / len(sample)
    return {"full_ms": round(full * 1000, 3), "draft_ms": round(drafted * 1000, 3),
            "draft_decoded_size": list(decode_image(sample[0], draft_size=size).image.size)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default="vit-b-32", help="vit-b-32 | vit-l-14-336 | tiny")
    p.add_argument("--batch", type=int, nargs="+", default=[16])
    p.add_argument("--dtype", default="auto",
                   help="auto (the library default for the device) | float32 | float16 | bfloat16")
    p.add_argument("--iters", type=int, default=None, help="timed batches per batch size")
    p.add_argument("--ref-iters", type=int, default=None,
                   help="timed fp32 reference batches (0: skip the reference)")
    p.add_argument("--cuda-graphs", action="store_true", help="GPU: replay small batches")
    p.add_argument("--workdir", type=Path,
                   default=Path(tempfile.gettempdir()) / "safeclip_bench")
    args = p.parse_args(argv)

    heavy = args.model == "vit-l-14-336" and args.device == "cpu"
    iters = args.iters or (2 if heavy else 4)
    ref_iters = args.ref_iters if args.ref_iters is not None else (1 if heavy else 2)
    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(args.model, args.workdir)
    dtype = None if args.dtype == "auto" else args.dtype
    cache_dir = Path(tempfile.mkdtemp(prefix="safeclip_bench_cache_"))
    guard = _guard(model_dir, device=args.device, dtype=dtype, batch=max(args.batch),
                   cache_dir=cache_dir, cuda_graphs=args.cuda_graphs)
    effective = str(guard.encoder.dtype).removeprefix("torch.")
    ref = None
    if effective != "float32" and ref_iters > 0:
        ref = _guard(model_dir, device=args.device, dtype="float32", batch=max(args.batch),
                     cache_dir=cache_dir, cuda_graphs=False)
    results = []
    for batch in args.batch:
        g = guard.with_options(batch_size=batch)
        r = ref.with_options(batch_size=batch) if ref is not None else None
        jpegs = photo_jpegs(batch * (iters + 1), seed=batch)
        results.append(run_batch(g, r, jpegs, batch, iters, ref_iters))
    ratios = {str(r["batch"]): r["whole_path_over_raw_encoder"] for r in results}
    forward = {str(r["batch"]): r["whole_path_forward_over_raw_encoder"] for r in results}
    report: dict[str, Any] = {
        "benchmark": "bench_guard", "model": args.model, "weights": "random (real architecture)",
        "device": args.device, "dtype": effective, "machine": machine(),
        "images": "640x480 JPEG, quality 90, all distinct; verdict cache off",
        "whole_path_over_raw_encoder": ratios[str(args.batch[0])] if len(ratios) == 1 else ratios,
        "whole_path_forward_over_raw_encoder":
            forward[str(args.batch[0])] if len(forward) == 1 else forward,
        "decode": decode_costs(photo_jpegs(8, seed=99), guard.encoder.preprocess.size),
        "results": results,
    }
    emit(report)
    return report


if __name__ == "__main__":
    main()
