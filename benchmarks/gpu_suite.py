"""Every GPU figure of docs/performance.md from one run; prints one JSON document.

    bash benchmarks/device_run.sh                  # on a lent GPU machine (sets up, runs this)
    python benchmarks/gpu_suite.py                 # ~5 min on one H100 (--budget-s 330)
    python benchmarks/gpu_suite.py --quick         # fewer repetitions
    python benchmarks/gpu_suite.py --compile --budget-s 420   # also torch.compile (~1 min)
    python benchmarks/gpu_suite.py --smoke --device cpu   # tiny sizes on the CPU, seconds:
                                                          # checks the script, not the speed

Sections, in order (each under its own time limit and the suite's ``--budget-s``; one that
fails or overruns records its ``error`` and keeps what it measured, and the rest still run):

``environment`` (card, driver, CUDA, torch, transformers), ``build_model`` (ViT-L/14-336,
random weights, real architecture), ``batch1_latency`` (eager vs CUDA graph),
``throughput`` (bf16 / fp16 at batch 32 / 64 / 128), ``equivalence`` (vs fp32),
``whole_path`` (``check_batch`` on JPEG bytes vs the raw encoder), ``views`` (square / 16:9 /
3:1 vs the old centre crop), ``forwarding`` (rebuilt forwards on vs off), ``pdf_pages``,
``llava_next_fused`` (one tower pass over every view vs a separate judge),
``cuda_tests``, ``llava15_overhead`` (LLaVA-1.5-7B shape, 64-token answers), ``compile``.

Progress goes to stderr; the JSON goes to stdout at the end and to ``<out>/gpu_suite.json``
(``--out``, default ``$OUT``) after every section, so a run cut short still leaves what it
measured. ``section_status`` says per section ``ok`` / ``skipped`` / ``error`` / ``timeout``;
on a CPU the sections that need CUDA say ``{"skipped": "no CUDA"}``. ``headline`` holds the
figures docs/performance.md quotes; it is also printed last, to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu import _clip, _external, _llava_next, _pictures
from gpu._ctx import Ctx
from gpu._env import environment
from gpu._headline import headline
from gpu._runner import Report, Section, log, run_sections


def sections(ctx: Ctx, *, compile_: bool) -> list[Section]:
    """The plan; limits are seconds on one H100 with room to spare (typical use in brackets)."""
    def sec(name: str, fn: Any, limit: float, **kw: Any) -> Section:
        return Section(name, partial(fn, ctx), limit, **kw)

    model = ("build_model",)
    cuda_tests_limit = 150.0
    return [
        Section("environment", partial(environment, device=ctx.device), 30),  # [2 s]
        sec("build_model", _clip.build, 150),  # [15-30 s]
        sec("batch1_latency", _clip.batch1_latency, 60, needs_cuda=True, needs=model),  # [10 s]
        sec("throughput", _clip.throughput, 90, needs=model),  # [15 s]
        sec("equivalence", _clip.equivalence, 60, needs=model),  # [10 s]
        sec("whole_path", _clip.whole_path, 150, needs=model),  # [40 s]
        sec("views", _pictures.views, 120, needs=model),  # [40 s]
        sec("forwarding", _pictures.forwarding, 90, needs=model),  # [30 s]
        sec("pdf_pages", _pictures.pdf_pages, 45, needs=model),  # [5 s]
        sec("llava_next_fused", _llava_next.llava_next_fused, 120, min_s=45),  # [30 s]
        Section("cuda_tests", partial(_external.cuda_tests, ctx,
                                      timeout_s=cuda_tests_limit - 10),
                cuda_tests_limit, needs_cuda=True),  # [30 s]
        sec("llava15_overhead", _external.llava15_overhead, 180, min_s=120),  # [90 s]
        sec("compile", _clip.compiled, 180, needs_cuda=True, needs=model, min_s=90,
            skip=None if compile_ else "not asked (--compile)"),  # [60 s]
    ]


def _only(plan: list[Section], wanted: set[str], p: argparse.ArgumentParser) -> list[Section]:
    names = {s.name for s in plan}
    if wanted - names:
        p.error(f"unknown section(s) {sorted(wanted - names)}; choose from {sorted(names)}")
    for s in plan:
        if s.name in wanted:
            wanted |= set(s.needs)
    wanted.add("environment")
    return [s if s.name in wanted else replace(s, skip="not asked (--only)") for s in plan]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default=None,
                   help="default: cuda when there is one")
    p.add_argument("--smoke", action="store_true",
                   help="tiny models and counts (seconds on a CPU): checks the script itself")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--compile", action="store_true", help="also torch.compile the tower")
    p.add_argument("--only", nargs="+", default=None, metavar="SECTION",
                   help="run these sections (and what they need); the others say skipped")
    p.add_argument("--budget-s", type=float, default=330.0,
                   help="seconds for all sections; what would start later is skipped")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "safeclip_bench")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for gpu_suite.json (default: $OUT when set)")
    args = p.parse_args(argv)
    import torch

    has_cuda = torch.cuda.is_available()
    no_gpu = None
    if args.smoke:
        device = args.device or ("cuda" if has_cuda else "cpu")
        if device == "cuda" and not has_cuda:
            p.error("--device cuda: torch sees no CUDA GPU here")
    elif args.device == "cpu":
        p.error("the full suite needs a GPU; on a CPU run it with --smoke (checks the script) "
                "or use benchmarks/bench_guard.py / bench_views.py")
    else:  # the GPU machine's run: a missing GPU is a finding, reported in the JSON
        device = "cuda"
        if not has_cuda:
            no_gpu = "no CUDA: torch sees no GPU here (see environment.cuda_error)"
    # TF32 stays off (torch's default): the float32 reference of `equivalence` is float32
    out_dir = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    ctx = Ctx(device=device, smoke=args.smoke, quick=args.quick, workdir=args.workdir,
              model_name="tiny" if args.smoke else "vit-l-14-336")
    report = Report({"benchmark": "gpu_suite", "device": device, "smoke": args.smoke,
                     "quick": args.quick, "model": ctx.model_name,
                     "weights": "random (real architecture)", "headline": None}, out_dir)
    log(f"device {device}, model {ctx.model_name}, budget {args.budget_s:.0f} s, "
        f"JSON to {out_dir or 'stdout only'}")
    plan = sections(ctx, compile_=args.compile)
    if no_gpu is not None:
        plan = [s if s.name == "environment" else replace(s, skip=no_gpu) for s in plan]
    if args.only:
        plan = _only(plan, set(args.only), p)
    run_sections(plan, report, cuda=device == "cuda" and has_cuda, budget_s=args.budget_s)
    report.data["headline"] = headline(report.data)
    report.write()
    print(report.text(), flush=True)
    log("headline " + json.dumps(report.data["headline"], default=str))
    if no_gpu is not None:
        raise SystemExit(2)
    return report.data


if __name__ == "__main__":
    main()
