"""Peak memory of ``check_batch`` on large images, per batch length; prints JSON.

    python benchmarks/bench_memory.py                       # this checkout
    python benchmarks/bench_memory.py --before /path/to/older/checkout

Each measurement runs in a fresh process: the guard is built and the encoded images are
read first, then the peak RSS is reset (``/proc/self/clear_refs``, Linux) and one
``check_batch`` call runs; the figure is the peak above that baseline. Inputs are distinct
4000x3000 PNGs (12 Mpx, a phone photo's size; 36 MB each once decoded) of ~100 KB each, so
a request of 32 of them is 3 MB on the wire. The model is the tiny test CLIP: the encoder's
own memory is not what is measured. With ``--before`` the same runs use another checkout of
the library (e.g. the code before streaming) on the same machine, in the same run.

Target (docs/security.md): peak memory independent of the batch length beyond two chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clip_fixtures import build_model, emit, machine

_CHILD = r"""
import json, resource, sys
from pathlib import Path

def rss_mb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no " + field)

model, n, *paths = sys.argv[1:]
from safeclip_guardrail import SafeCLIPGuard
import safeclip_guardrail
guard = SafeCLIPGuard.from_pretrained(model, device="cpu", dtype="float32", cache_size=0)
data = [Path(p).read_bytes() for p in paths[: int(n)]]
guard.check_batch(data[:1])  # warm-up: lazy imports, first forward
base = rss_mb("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
verdicts = guard.check_batch(data)
peak = rss_mb("VmHWM")
print(json.dumps({"library": str(Path(safeclip_guardrail.__file__).parent.parent),
                  "images": len(data), "errors": sum(v.error is not None for v in verdicts),
                  "baseline_rss_mb": round(base, 1), "peak_rss_mb": round(peak, 1),
                  "peak_over_baseline_mb": round(peak - base, 1)}))
"""


def make_images(n: int, workdir: Path) -> list[Path]:
    import numpy as np
    from PIL import Image, ImageDraw

    out = []
    for k in range(n):
        p = workdir / f"large_{k:02d}.png"
        if not p.is_file():
            img = Image.new("RGB", (4000, 3000), tuple(int(c) for c in
                                                      np.random.default_rng(k).integers(0, 256, 3)))
            draw = ImageDraw.Draw(img)
            rng = np.random.default_rng(1000 + k)
            for _ in range(40):
                x0, y0, x1, y1 = (int(v) for v in rng.integers(0, 3000, 4))
                draw.line((x0, y0, x1, y1), fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
                          width=9)
            img.save(p, format="PNG")
        out.append(p)
    return out


def measure(library: Path, model: Path, n: int, images: list[Path]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(library), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", _CHILD, str(model), str(n), *map(str, images)],
                         env=env, capture_output=True, text=True, check=False,
                         cwd=tempfile.gettempdir())  # not this checkout: "" leads sys.path
    if res.returncode != 0:
        raise SystemExit(f"measurement failed for {library} (n={n}):\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--before", type=Path, default=None,
                   help="another checkout of the library to measure in the same run")
    p.add_argument("--workdir", type=Path,
                   default=Path(tempfile.gettempdir()) / "safeclip_bench")
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = build_model("tiny", args.workdir)
    images = make_images(max(args.batch), args.workdir)
    here = Path(__file__).resolve().parent.parent
    libraries = {"after": here} | ({"before": args.before.resolve()} if args.before else {})
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in libraries}
    for n in args.batch:
        for name, lib in libraries.items():
            runs[name].append(measure(lib, model, n, images))
    report: dict[str, Any] = {
        "benchmark": "bench_memory", "machine": machine(),
        "images": "distinct 4000x3000 PNG (12 Mpx), ~100 KB encoded each; tiny CLIP; cache off",
        "peak_over_baseline_mb": {name: {str(r["images"]): r["peak_over_baseline_mb"]
                                         for r in rs} for name, rs in runs.items()},
        "runs": runs,
    }
    emit(report)
    return report


if __name__ == "__main__":
    main()
