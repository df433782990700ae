"""The HTTP service under load vs the raw encoder at the same batch size; prints JSON.

    python benchmarks/bench_serve.py                       # ViT-B/32, CPU, 1/8/32 clients
    python benchmarks/bench_serve.py --model tiny --requests 40   # a smoke run

The server is ``create_app(guard)`` on a real uvicorn server (a thread of this process);
the load comes from a separate process (its own interpreter, so client work does not hold
this process's GIL), ``--concurrency`` clients each sending ``POST /v1/moderations`` with
``--images-per-request`` distinct 640x480 JPEGs as data URLs, back to back. The verdict
cache is off (``cache_size=0``): every image is decoded and encoded.

- ``levels[c]``: images/s, p50/p95 request latency (ms), encoder forwards per image and the
  mean micro-batch at ``c`` concurrent clients.
- ``saturation_rounds``: at the largest ``c``, ``--rounds`` alternating rounds of served
  load and of the raw encoder (``encoder.encode_pixels`` on pixels prepared beforehand: the
  vision forward alone) at the mean batch size the service formed in that round, over as
  many images. On a shared machine, load from other processes then hits both sides of
  each ratio alike.
- ``served_over_raw_encoder``: median over rounds of served images/s / raw encoder
  images/s. Everything the service adds (HTTP, JSON, base64, extraction, JPEG decode,
  preprocessing, scoring, batching waits) is in the numerator.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clip_fixtures import build_model, emit, machine, photo_jpegs, timed


# ---------------------------------------------------------------------- client process
async def _load(url: str, key: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    warm, timed_bodies = bodies[:concurrency], bodies[concurrency:]
    queue = list(reversed(timed_bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=600) as client:
        # warm-up: one request per client, not timed
        await asyncio.gather(*(client.post("/v1/moderations", content=b) for b in warm))
        errors = 0

        async def worker() -> None:
            nonlocal errors
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                r = await client.post("/v1/moderations", content=body)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"requests": len(latencies), "errors": errors, "wall_s": wall,
            "latencies_ms": [round(t * 1000, 3) for t in latencies]}


def client_main(args: argparse.Namespace) -> None:
    bodies = [line.encode() for line in Path(args.bodies).read_text().splitlines() if line]
    print(json.dumps(asyncio.run(_load(args.url, args.key, bodies, args.concurrency))))


# ---------------------------------------------------------------------- server process
def _bodies(jpegs: list[bytes], per_request: int) -> list[str]:
    out = []
    for i in range(0, len(jpegs) - per_request + 1, per_request):
        parts: list[dict[str, Any]] = [{"type": "text", "text": "describe this"}]
        parts += [{"type": "image_url", "image_url": {
            "url": "data:image/jpeg;base64," + base64.b64encode(j).decode()}}
            for j in jpegs[i:i + per_request]]
        out.append(json.dumps({"model": "safeclip", "input": parts}))
    return out


def _percentiles(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"p50_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], 2)}


_COUNTERS = ("safeclip_images_total", "safeclip_encoder_forwards_total",
             "safeclip_batch_size_sum", "safeclip_batch_size_count")


def _run_clients(srv: Any, app: Any, bodies: list[str], concurrency: int,
                 workdir: Path) -> dict[str, Any]:
    """One client process; returns its timings and the server's counter deltas."""
    path = workdir / f"bodies_{concurrency}.jsonl"
    path.write_text("\n".join(bodies))
    m = app.state.metrics
    before = {k: m.value(k) for k in _COUNTERS}
    out = subprocess.run(
        [sys.executable, __file__, "--client", "--url", srv.url, "--key", "bench",
         "--bodies", str(path), "--concurrency", str(concurrency)],
        check=True, capture_output=True, text=True)
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    res["delta"] = {k: m.value(k) - v for k, v in before.items()}  # includes the warm-up
    return res


def _level(runs: list[dict[str, Any]], concurrency: int, per_request: int) -> dict[str, Any]:
    images = sum(r["requests"] for r in runs) * per_request
    wall = sum(r["wall_s"] for r in runs)
    d = {k: sum(r["delta"][k] for r in runs) for k in _COUNTERS}
    return {
        "concurrency": concurrency, "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "images_per_s": round(images / wall, 3),
        **_percentiles([t for r in runs for t in r["latencies_ms"]]),
        "forwards_per_image": round(d["safeclip_encoder_forwards_total"]
                                    / max(d["safeclip_images_total"], 1), 4),
        "mean_batch": round(d["safeclip_batch_size_sum"]
                            / max(d["safeclip_batch_size_count"], 1), 2),
    }


def _raw(enc: Any, jpegs: list[bytes], batch: int, images: int) -> float:
    """Raw encoder images/s at ``batch`` over about ``images`` images (pixels prepared first)."""
    from safeclip_guardrail.images.decode import decode_image

    n = max(1, round(images / batch))
    chunks = [[jpegs[(k * batch + i) % len(jpegs)] for i in range(batch)] for k in range(n)]
    pixels = [enc.prepare([decode_image(j).image for j in c]) for c in chunks]
    enc.encode_pixels(pixels[0][:1])
    return n * batch / sum(timed(lambda px=px: enc.encode_pixels(px)) for px in pixels)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="vit-b-32", help="vit-b-32 | vit-l-14-336 | tiny")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=None,
                   help="timed requests per level (default: 24, and 6 x clients above 4)")
    p.add_argument("--images-per-request", type=int, default=1)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating served/raw rounds at saturation (median ratio reported)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "safeclip_bench")
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--key", help=argparse.SUPPRESS)
    p.add_argument("--bodies", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        args.concurrency = args.concurrency[0]
        client_main(args)
        return None

    import logging

    from safeclip_guardrail import SafeCLIPGuard
    from safeclip_guardrail.serve import BackgroundServer, create_app

    logging.getLogger("safeclip_guardrail.serve.access").setLevel(logging.WARNING)
    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(args.model, args.workdir)
    guard = SafeCLIPGuard.from_pretrained(
        str(model_dir), device=args.device, dtype=None if args.dtype == "auto" else args.dtype,
        batch_size=args.max_batch, cache_size=0,
        cache_dir=Path(tempfile.mkdtemp(prefix="safeclip_bench_cache_")))
    per = args.images_per_request
    counts = {c: args.requests or (24 if c <= 4 else 6 * c) for c in args.concurrency}
    total_images = sum((counts[c] + c * args.rounds) * per for c in args.concurrency)
    jpegs = photo_jpegs(min(total_images, 256), seed=1)  # the cache is off: reuse is fair
    app = create_app(guard, api_keys=["bench"], max_batch=args.max_batch,
                     max_wait_ms=args.max_wait_ms, max_images=max(per, 32),
                     request_timeout_s=600)
    tmp = Path(tempfile.mkdtemp(prefix="safeclip_bench_serve_"))
    saturation = max(args.concurrency)
    levels: dict[str, Any] = {}
    rounds: list[dict[str, Any]] = []
    offset = 0

    def bodies_for(c: int, n: int) -> list[str]:
        nonlocal offset
        take = (n + c) * per  # the first c requests warm up
        chunk = [jpegs[(offset + i) % len(jpegs)] for i in range(take)]
        offset += take
        return _bodies(chunk, per)

    with BackgroundServer(app) as srv:
        for c in args.concurrency:
            if c != saturation:
                levels[str(c)] = _level([_run_clients(srv, app, bodies_for(c, counts[c]), c, tmp)],
                                        c, per)
                continue
            # saturation: served and raw timed in alternating rounds, so load from other
            # processes on a shared machine hits both sides of each ratio alike
            runs = []
            for _ in range(args.rounds):
                run = _run_clients(srv, app, bodies_for(c, counts[c] // args.rounds), c, tmp)
                runs.append(run)
                served = run["requests"] * per / run["wall_s"]
                d = run["delta"]
                batch = max(1, round(d["safeclip_batch_size_sum"]
                                     / max(d["safeclip_batch_size_count"], 1)))
                raw = _raw(guard.encoder, jpegs, batch, run["requests"] * per)
                rounds.append({"served_images_per_s": round(served, 3), "batch": batch,
                               "raw_images_per_s": round(raw, 3),
                               "ratio": round(served / raw, 4)})
            levels[str(c)] = _level(runs, c, per)
    enc = guard.encoder
    result = {
        "benchmark": "bench_serve", "model": args.model,
        "dtype": str(getattr(enc, "dtype", "?")).removeprefix("torch."),
        "device": args.device, "images_per_request": per, "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms, "machine": machine(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "levels": levels,
        "saturation_rounds": rounds,
        "served_over_raw_encoder": round(statistics.median(r["ratio"] for r in rounds), 4),
    }
    emit(result)
    return result


if __name__ == "__main__":
    main()
