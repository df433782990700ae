"""Benign clients beside a hostile one, on a real server; prints JSON.

    python benchmarks/bench_serve_hostile.py                          # ViT-B/32, CPU
    python benchmarks/bench_serve_hostile.py --model tiny --seconds 8 --rounds 1   # smoke run

The server is ``create_app(guard)`` on a real uvicorn server (a thread of this process); the
clients are separate processes (their own interpreters):

- **benign**: ``--benign`` clients, each sending ``POST /v1/moderations`` with one distinct
  640x480 photo (a JPEG data URL), back to back, for ``--seconds``;
- **hostile**: ``--hostile`` connections cycling through three kinds of request, back to
  back: four progressive-JPEG *scan bombs* (2000x2000, last scan repeated ``--bomb-scans``
  times: seconds of decoding from a few KB), 32 large photos (1280x960 JPEG), and four
  big-but-legal PNGs (1600x1200 photos, the slowest legal decode per byte).

After a warm-up with both kinds of client (``--warmup`` seconds: first-use costs such as
new encoder batch shapes are not charged to the first round), each round runs the benign
clients alone, then again beside the hostile client, and the
report gives the benign p50/p95 latency of both runs, their errors (any status but 200,
and a 200 whose image failed closed as unreadable), and the ratio of the p95s (target:
<= 1.5 and no benign errors). ``--modes`` compares decoding in killable
processes (``process``, the default) with decoding in threads (``thread``: the overrunning
decodes cannot be stopped). ``decode_overhead`` times the decode alone: in this process
vs. a round trip through the decode pool, on the benign photos and on the big PNGs. The
verdict cache is off (``cache_size=0``): every image is decoded and encoded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
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

from _clip_fixtures import build_model, emit, machine, photo_jpegs


# ---------------------------------------------------------------------- client processes
async def _drive(url: str, bodies: list[bytes], concurrency: int, seconds: float,
                 route: str) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"authorization": "Bearer bench", "content-type": "application/json"}
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=120) as client:
        async def worker(k: int) -> None:
            i = k
            while time.monotonic() < end:
                body = bodies[i % len(bodies)]
                i += concurrency
                t0 = time.perf_counter()
                try:
                    r = await client.post(route, content=body)
                    code = str(r.status_code)
                    if r.status_code == 200 and any(  # a verdict that failed closed
                            res["categories"].get("safeclip/unreadable")
                            for res in r.json()["results"]):
                        code = "200 unreadable"
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                statuses[code] = statuses.get(code, 0) + 1

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return {"latencies_ms": [round(t * 1000, 2) for t in latencies], "statuses": statuses}


def client_main(args: argparse.Namespace) -> None:
    bodies = [Path(p).read_bytes() for p in args.bodies]
    print(json.dumps(asyncio.run(_drive(args.url, bodies, args.concurrency, args.seconds,
                                        args.route))))


def _spawn(url: str, bodies: list[Path], concurrency: int, seconds: float,
           ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--client", "--url", url, "--concurrency", str(concurrency),
         "--seconds", str(seconds), "--route", "/v1/moderations",
         "--bodies", *map(str, bodies)], stdout=subprocess.PIPE, text=True)


def _collect(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=900)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------- inputs
def scan_bomb(side: int, repeats: int) -> bytes:
    """A progressive JPEG whose last scan is repeated ``repeats`` times (libjpeg decodes each)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (120, 130, 140)).save(buf, "JPEG", progressive=True,
                                                           quality=75)
    data = buf.getvalue()
    last = data.rfind(b"\xff\xda")
    return data[:-2] + data[last:-2] * repeats + b"\xff\xd9"


def big_pngs(n: int, seed: int) -> list[bytes]:
    from PIL import Image

    out = []
    for jpeg in photo_jpegs(n, width=1600, height=1200, seed=seed):
        buf = io.BytesIO()
        Image.open(io.BytesIO(jpeg)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _body(images: list[bytes], mime: str) -> bytes:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "what is this?"}]
    parts += [{"type": "image_url", "image_url": {
        "url": f"data:{mime};base64," + base64.b64encode(i).decode()}} for i in images]
    return json.dumps({"model": "omni-moderation-latest", "input": parts}).encode()


def _write(bodies: list[bytes], workdir: Path, stem: str) -> list[Path]:
    paths = []
    for i, b in enumerate(bodies):
        p = workdir / f"{stem}_{i}.json"
        p.write_bytes(b)
        paths.append(p)
    return paths


# ---------------------------------------------------------------------- measurements
def _percentiles(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    if not ms:
        return {"p50_ms": float("nan"), "p95_ms": float("nan")}
    return {"p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], 1)}


def _phase(url: str, benign: list[Path], hostile: list[Path] | None, args: argparse.Namespace,
           pool: Any) -> dict[str, Any]:
    before = dict(vars(pool.stats))
    bad = None
    if hostile is not None:
        bad = _spawn(url, hostile, args.hostile, args.seconds + 5)
        time.sleep(2.0)  # the hostile load is running before the benign clients start
    good = _collect(_spawn(url, benign, args.benign, args.seconds))
    out: dict[str, Any] = {"benign": {"requests": len(good["latencies_ms"]),
                                      "errors": sum(v for k, v in good["statuses"].items()
                                                    if k != "200"),
                                      "statuses": good["statuses"],
                                      **_percentiles(good["latencies_ms"])}}
    if bad is not None:
        res = _collect(bad)
        out["hostile"] = {"requests": len(res["latencies_ms"]), "statuses": res["statuses"],
                          **_percentiles(res["latencies_ms"])}
    out["decode_pool"] = {k: v - before[k] for k, v in vars(pool.stats).items()}
    out["load_average_1m"] = round(os.getloadavg()[0], 2)
    return out


def decode_overhead(guard: Any, photos: list[bytes], pngs: list[bytes]) -> dict[str, Any]:
    """The same decode (``decode_job``) in this process and through the pool, one at a time."""
    from safeclip_guardrail.serve import DecodePool
    from safeclip_guardrail.serve._decode_worker import DecodeJob, decode_job

    def jobs(items: list[bytes]) -> list[DecodeJob]:
        draft = guard.draft_for(forward=True)  # what the service asks of its decode processes
        return [DecodeJob(d, "<bench>", None, guard.config.images, draft, None)
                for d in items]

    async def through_pool(items: list[DecodeJob]) -> float:
        pool = DecodePool(workers=1, slow_after_s=3600)  # the transport alone, no renicing
        await pool.start()
        try:
            await pool.decode(items[0], timeout=60)
            t0 = time.perf_counter()
            for job in items:
                await pool.decode(job, timeout=60)
            return time.perf_counter() - t0
        finally:
            await pool.stop()

    out: dict[str, Any] = {}
    for name, items in (("photo_640x480_jpeg", jobs(photos)), ("png_1600x1200", jobs(pngs))):
        decode_job(items[0])
        rounds = []
        for _ in range(3):  # alternate, so load from other processes hits both alike
            t0 = time.perf_counter()
            for job in items:
                decode_job(job)
            here = time.perf_counter() - t0
            pooled = asyncio.run(through_pool(items))
            rounds.append((here, pooled))
        here = statistics.median(r[0] for r in rounds) / len(items) * 1000
        pooled = statistics.median(r[1] for r in rounds) / len(items) * 1000
        out[name] = {"in_process_ms": round(here, 2), "decode_pool_ms": round(pooled, 2),
                     "ratio": round(pooled / here, 3)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="vit-b-32", help="vit-b-32 | vit-l-14-336 | tiny")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--benign", type=int, default=4, help="benign clients")
    p.add_argument("--hostile", type=int, default=1, help="hostile connections")
    p.add_argument("--seconds", type=float, default=20.0, help="benign load per phase")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=float, default=6.0,
                   help="seconds of benign and hostile load before the rounds")
    p.add_argument("--modes", nargs="+", default=["process", "thread"])
    p.add_argument("--bomb-scans", type=int, default=3000)
    p.add_argument("--decode-timeout", type=float, default=2.0)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "safeclip_bench")
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    p.add_argument("--route", help=argparse.SUPPRESS)
    p.add_argument("--bodies", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        client_main(args)
        return None

    import logging

    from safeclip_guardrail import SafeCLIPGuard
    from safeclip_guardrail.serve import BackgroundServer, DecodePool, create_app

    logging.getLogger("safeclip_guardrail.serve.access").setLevel(logging.WARNING)
    logging.getLogger("safeclip_guardrail.serve").setLevel(logging.CRITICAL)
    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(args.model, args.workdir)
    guard = SafeCLIPGuard.from_pretrained(
        str(model_dir), device="cpu", dtype=None if args.dtype == "auto" else args.dtype,
        batch_size=args.max_batch, cache_size=0,
        cache_dir=Path(tempfile.mkdtemp(prefix="safeclip_bench_cache_")))
    tmp = Path(tempfile.mkdtemp(prefix="safeclip_bench_hostile_"))
    photos = photo_jpegs(64, seed=11)
    pngs = big_pngs(8, seed=12)
    benign = _write([_body([j], "image/jpeg") for j in photos], tmp, "benign")
    bombs = [scan_bomb(2000, args.bomb_scans + k) for k in range(4)]
    large = photo_jpegs(64, width=1280, height=960, seed=13)
    hostile = _write([_body(bombs, "image/jpeg"), _body(large[:32], "image/jpeg"),
                      _body(pngs[:4], "image/png"), _body(large[32:], "image/jpeg"),
                      _body(pngs[4:], "image/png")], tmp, "hostile")
    overhead = decode_overhead(guard, photos[:32], pngs)
    modes: dict[str, Any] = {}
    for mode in args.modes:
        pool = DecodePool(workers=None if mode == "process" else 0)
        app = create_app(guard, api_keys=["bench"], decode_pool=pool, max_batch=args.max_batch,
                         decode_timeout_s=args.decode_timeout, request_timeout_s=30)
        rounds = []
        with BackgroundServer(app) as srv:
            # warm-up with every kind of request, so first-use costs (new batch shapes in
            # the encoder, the service's and the decoders' memory growing for big bodies)
            # are not charged to the first round
            warm = _spawn(srv.url, hostile, args.hostile, args.warmup)
            _collect(_spawn(srv.url, benign[:8], args.benign, args.warmup))
            _collect(warm)
            for _ in range(args.rounds):
                alone = _phase(srv.url, benign, None, args, pool)
                beside = _phase(srv.url, benign, hostile, args, pool)
                rounds.append({"alone": alone, "beside_hostile": beside,
                               "p95_ratio": round(beside["benign"]["p95_ms"]
                                                  / alone["benign"]["p95_ms"], 3)})
        modes[mode] = {
            "rounds": rounds,
            "p95_ratio_median": round(statistics.median(r["p95_ratio"] for r in rounds), 3),
            "benign_errors_beside_hostile": sum(r["beside_hostile"]["benign"]["errors"]
                                                for r in rounds),
        }
    result = {
        "benchmark": "bench_serve_hostile", "model": args.model,
        "dtype": str(getattr(guard.encoder, "dtype", "?")).removeprefix("torch."),
        "benign_clients": args.benign, "hostile_connections": args.hostile,
        "seconds_per_phase": args.seconds, "decode_timeout_s": args.decode_timeout,
        "bomb": {"side": 2000, "scans_repeated": args.bomb_scans, "bytes": len(bombs[0])},
        "machine": machine(), "uptime": _uptime(),
        "decode_overhead": overhead, "modes": modes,
    }
    emit(result)
    return result


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"load average {os.getloadavg()}"


if __name__ == "__main__":
    main()
