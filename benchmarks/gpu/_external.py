"""Checks that have their own entry points, folded into the suite's one JSON document.

- ``llava15_overhead``: ``bench_llava_overhead.run`` in this process (LLaVA-1.5-7B shape,
  random weights, bf16): a 64-token answer and the time to first token with no guard, a
  standalone guard, the fused guard and a VLM judge; ``--smoke`` uses its ``--tiny`` shape;
- ``cuda_tests``: the CUDA-only tests (``tests/unit/encoders/test_fast_paths.py -k "gpu or cuda"``: fp16 vs
  fp32 on the GPU, CUDA graphs vs eager) in a pytest subprocess with its own time limit.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from gpu._ctx import Ctx

ROOT = Path(__file__).resolve().parents[2]


def llava15_overhead(ctx: Ctx, out: dict[str, Any]) -> None:
    import bench_llava_overhead

    args = argparse.Namespace(
        device=ctx.device, dtype="bfloat16" if ctx.cuda else "float32", tiny=ctx.smoke,
        scale=1.0, new_tokens=ctx.pick(64, 4), judge_tokens=ctx.pick(32, 2), policy_repeat=1,
        repeats=ctx.pick(2 if ctx.quick else 3, 1), warmup=ctx.pick(1, 0), threads=None)
    report = bench_llava_overhead.run(args)
    for r in report["results"].values():  # the medians and minima say it; keep the JSON short
        r.pop("latency_all_s", None)
        r.pop("ttft_all_s", None)
    out.update(report)


def cuda_tests(ctx: Ctx, out: dict[str, Any], *, timeout_s: float) -> None:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "tests/unit/encoders/test_fast_paths.py", "-k", "gpu or cuda"]
    out["command"] = " ".join(cmd[1:])
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                          check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    out["returncode"] = done.returncode
    out["summary"] = lines[-1] if lines else ""
    for word in ("passed", "failed", "skipped", "error", "deselected"):
        m = re.search(rf"(\d+) {word}", out["summary"])
        out[word] = int(m.group(1)) if m else 0
    if done.returncode != 0:
        out["tail"] = lines[-40:]
        raise RuntimeError(f"pytest exited {done.returncode}: {out['summary']}")
