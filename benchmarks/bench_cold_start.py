"""First vs second construction of a guard, with the descriptor-embedding cache; prints JSON.

    python benchmarks/bench_cold_start.py --model vit-b-32
    python benchmarks/bench_cold_start.py --model vit-l-14-336 --device cpu

Each construction runs in a fresh Python process (as a server start would), on one
cache directory that starts empty: the first computes the descriptor embeddings with the
text tower and writes them; the second must read them and run **no** text-tower pass.
Text-tower passes are counted by wrapping the encoder's ``encode_texts``; the time spent
hashing the text-side weights for the cache key (content, not file metadata) is reported
as ``cache_key_hash_s``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clip_fixtures import build_model, emit, machine


def construct_once(model_dir: str, device: str, dtype: str | None, cache_dir: str) -> dict[str, Any]:
    """One construction in this process: import time, construction time, text passes."""
    t0 = time.perf_counter()
    from safeclip_guardrail import SafeCLIPGuard
    from safeclip_guardrail.encoders.hf import TransformersCLIPEncoder
    from safeclip_guardrail.encoders.openclip import OpenClipEncoder

    imported = time.perf_counter() - t0
    calls = {"encode_texts": 0, "texts": 0}

    for cls in (TransformersCLIPEncoder, OpenClipEncoder):
        original = cls.encode_texts

        def counted(self: Any, texts: Any, _orig: Any = original) -> Any:
            calls["encode_texts"] += 1
            calls["texts"] += len(texts)
            return _orig(self, texts)

        cls.encode_texts = counted  # type: ignore[method-assign]
    # the descriptor cache is keyed on a hash of the text-side weights: time that hash
    import safeclip_guardrail.encoders.hf as hf_backend
    import safeclip_guardrail.encoders.openclip as oc_backend

    keyed = {"s": 0.0}
    for module in (hf_backend, oc_backend):
        fingerprint = module.tensors_fingerprint

        def timed(*a: Any, _f: Any = fingerprint, **k: Any) -> str:
            t = time.perf_counter()
            try:
                return str(_f(*a, **k))
            finally:
                keyed["s"] += time.perf_counter() - t

        module.tensors_fingerprint = timed  # type: ignore[assignment]
    t1 = time.perf_counter()
    guard = SafeCLIPGuard.from_pretrained(model_dir, device=device, dtype=dtype,
                                          cache_dir=cache_dir)
    built = time.perf_counter() - t1
    return {"import_s": round(imported, 3), "construct_s": round(built, 3),
            "cache_key_hash_s": round(keyed["s"], 3),
            "text_tower_passes": calls["encode_texts"], "texts_encoded": calls["texts"],
            "descriptors": len(guard.bank.descriptors),
            "text_embeddings_sum": float(guard.text_embeddings.sum())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="vit-b-32", help="vit-b-32 | vit-l-14-336 | tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "safeclip_bench")
    p.add_argument("--child", nargs=2, metavar=("MODEL_DIR", "CACHE_DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    dtype = None if args.dtype == "auto" else args.dtype
    if args.child:
        print(json.dumps(construct_once(args.child[0], args.device, dtype, args.child[1])))
        return {}
    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(args.model, args.workdir)
    cache_dir = tempfile.mkdtemp(prefix="safeclip_cold_start_cache_")
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, __file__, "--device", args.device, "--dtype", args.dtype,
             "--child", str(model_dir), cache_dir],
            check=True, capture_output=True, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = runs
    report = {
        "benchmark": "bench_cold_start", "model": args.model, "device": args.device,
        "dtype": args.dtype, "machine": machine(),
        "first": first, "second": second,
        "second_runs_no_text_tower_pass": second["text_tower_passes"] == 0,
        "same_text_embeddings": abs(first["text_embeddings_sum"]
                                    - second["text_embeddings_sum"]) < 1e-3,
        "construct_first_over_second": round(first["construct_s"] / second["construct_s"], 3),
        "cache_key_hash_share_of_warm_construct": round(
            second["cache_key_hash_s"] / second["construct_s"], 3),
        "cache_files": sorted(str(f.relative_to(cache_dir)) for f in Path(cache_dir).rglob("*.npy")),
    }
    emit(report)
    return report


if __name__ == "__main__":
    main()
