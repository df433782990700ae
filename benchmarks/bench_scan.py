"""Corpus scan throughput: the local engine vs Ray Data with 1 and 2 actors; prints JSON.

    python benchmarks/bench_scan.py                       # 2,000 images, ViT-B/32, CPU
    python benchmarks/bench_scan.py --n 300 --actors 1    # a quicker run

The model is ViT-B/32 with random weights (real architecture, built offline once into
``--workdir``); the corpus is ``--n`` distinct 640x480 photo-like JPEGs in one Parquet file
(binary column, row groups of 256), the same file for every engine. Every run scans it into
a fresh output folder (the Ray cluster is started once before the runs, as a user's
cluster would be), each in a fresh ``safeclip scan-corpus`` process (interpreter, imports,
model load and, on Ray, the actors' start-up inside the wall time for every engine alike),
and its images/s is ``n / wall time``. ``load_avg_before`` records how busy the machine was.

- ``local``: ``--engine local``, one process, torch on every core.
- ``ray_1_actor``: one actor holding every CPU of the local cluster (``cpus_per_actor`` =
  cores). ``ray_over_local`` = its images/s / local images/s (target >= 0.8 on 2 cores).
- ``ray_2_actors``: two actors, one CPU each (on 2 cores: the same compute, split).
- ``per_image_overhead_ms``: (1/ray_1 - 1/local) * 1000, Ray's cost per image.
- ``decode_ms_per_image``: one core decoding the corpus as the guard does (JPEG draft mode),
  what sizes the decode CPUs a GPU actor needs (see docs/scale.md).
- ``tables_identical``: the local and Ray tables have the same rows, verdicts and scores
  (to 1e-5).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clip_fixtures import build_model, emit, machine, photo_jpegs

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _corpus(path: Path, n: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.is_file() and pq.ParquetFile(path).metadata.num_rows == n:
        return path
    jpegs = photo_jpegs(n)
    table = pa.table({"id": [f"img-{i:06d}" for i in range(n)],
                      "image": pa.array(jpegs, pa.binary())})
    pq.write_table(table, path, row_group_size=256)
    return path


def _run(corpus: Path, out: Path, options: list[str], engine: list[str]) -> dict[str, Any]:
    """One ``safeclip scan-corpus`` in a fresh process: interpreter, imports, model load and
    (Ray) actor start-up are all inside the wall time, for every engine alike."""
    cmd = [sys.executable, "-m", "safeclip_guardrail.cli", "scan-corpus", str(corpus),
           "--out", str(out), "--no-progress", *options, *engine]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    line = done.stdout.strip().splitlines()[-1]
    rows = int(line.split(" images in ", 1)[0])
    return {"images_per_s": round(rows / wall, 2), "wall_s": round(wall, 2), "rows": rows,
            "summary": line, "load_avg_before": round(load, 2)}


def _decode_ms(model_dir: Path, corpus: Path, limit: int = 200) -> float:
    import pyarrow.parquet as pq

    from safeclip_guardrail import SafeCLIPGuard

    guard = SafeCLIPGuard.from_pretrained(str(model_dir), device="cpu")
    images = pq.read_table(corpus, columns=["image"]).column("image").to_pylist()[:limit]
    t0 = time.perf_counter()
    for data in images:
        guard.decode(data)
    return round((time.perf_counter() - t0) * 1000 / len(images), 2)


def _identical(a: Path, b: Path) -> bool:
    import pyarrow.parquet as pq

    ta = pq.read_table(sorted(a.glob("*.parquet"))).sort_by("id")
    tb = pq.read_table(sorted(b.glob("*.parquet"))).sort_by("id")
    if ta.num_rows != tb.num_rows or ta.schema != tb.schema:
        return False
    for name in ta.column_names:
        x, y = ta.column(name).to_pylist(), tb.column(name).to_pylist()
        if name.startswith(("score_", "toxic")):
            if any(abs(p - q) > 1e-5 for p, q in zip(x, y) if p is not None and q is not None):
                return False
        elif x != y:
            return False
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000, help="images in the corpus (default 2000)")
    p.add_argument("--model", default="vit-b-32", help="vit-b-32 | vit-l-14-336 | tiny")
    p.add_argument("--batch", type=int, default=32, help="rows per batch (default 32)")
    p.add_argument("--dtype", default=None, help="float32 (CPU default) | bfloat16")
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    p.add_argument("--workdir", type=Path,
                   default=Path(tempfile.gettempdir()) / "safeclip_bench")
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(args.model, args.workdir)
    corpus = _corpus(args.workdir / f"scan_corpus_{args.n}.parquet", args.n)
    options = ["--model", str(model_dir), "--device", "cpu", "--batch-size", str(args.batch)]
    if args.dtype:
        options += ["--dtype", args.dtype]
    runs = Path(tempfile.mkdtemp(prefix="bench_scan_", dir=args.workdir))
    result: dict[str, Any] = {"machine": machine(), "model": args.model, "n": args.n,
                              "batch": args.batch, "dtype": args.dtype or "auto"}
    result["decode_ms_per_image"] = _decode_ms(model_dir, corpus)
    result["local"] = _run(corpus, runs / "local", options, [])

    import ray

    ray.init(include_dashboard=False, log_to_driver=False)
    cores = int(ray.cluster_resources().get("CPU", 1))
    address = ray.get_runtime_context().gcs_address
    try:
        for k in args.actors:
            name = f"ray_{k}_actor" + ("s" if k > 1 else "")
            cpus = max(1, cores // k)
            result[name] = _run(corpus, runs / name, options,
                                ["--engine", "ray", "--address", address, "--actors", str(k),
                                 "--cpus-per-actor", str(cpus)])
            result[name]["cpus_per_actor"] = cpus
    finally:
        ray.shutdown()
    local = result["local"]["images_per_s"]
    if "ray_1_actor" in result:
        ray1 = result["ray_1_actor"]["images_per_s"]
        result["ray_over_local"] = round(ray1 / local, 3)
        result["per_image_overhead_ms"] = round(1000 * (1 / ray1 - 1 / local), 2)
        result["tables_identical"] = _identical(runs / "local", runs / "ray_1_actor")
    if "ray_2_actors" in result:
        result["ray_2_over_local"] = round(result["ray_2_actors"]["images_per_s"] / local, 3)
    emit(result)


if __name__ == "__main__":
    main()
