"""benchmarks/gpu_suite.py, the one prepared GPU run, checked on the CPU.

A lent GPU machine gives a session minutes, not a debugging loop: the script must run
through on the first try. Here it runs with ``--smoke --device cpu`` (tiny models, the same
code paths) and must report every section: the ones that need CUDA say so, every other one
succeeds and measures what the library really does (views per picture, rebuilt forwards,
the views LLaVA-NeXT's tower encodes). The runner's own promises (a failing or overrunning
section is recorded and the rest still runs; a hang still ends in one JSON document) are
checked on toy sections. Nothing here asserts a speed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
SECTIONS = ["environment", "build_model", "batch1_latency", "throughput", "equivalence",
            "whole_path", "views", "forwarding", "pdf_pages", "llava_next_fused", "cuda_tests",
            "llava15_overhead", "compile"]
NEEDS_CUDA = ["batch1_latency", "cuda_tests"]


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_suite_runner", BENCH / "gpu" / "_runner.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_smoke_run_on_cpu_reports_every_section(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("OUT", None)
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu_suite.py"), "--smoke", "--device", "cpu",
         "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout)  # stdout is one JSON document, nothing else
    assert json.loads((tmp_path / "out" / "gpu_suite.json").read_text()) == report
    assert report["complete"] is True and report["planned"] == SECTIONS
    status = report["section_status"]
    assert list(status) == SECTIONS and all(name in report for name in SECTIONS)
    for name in NEEDS_CUDA:
        assert report[name] == {"skipped": "no CUDA"} and status[name] == "skipped"
    assert report["compile"] == {"skipped": "not asked (--compile)"}
    errors = {n: report[n].get("error") for n in SECTIONS if status[n] != "skipped"}
    assert all(status[n] == "ok" for n in errors), errors
    for name in SECTIONS:  # progress on stderr, section by section
        assert f"] {name}: " in proc.stderr

    env_info = report["environment"]
    assert env_info["device"] == "cpu" and env_info["gpu"] is None and env_info["torch"]
    assert env_info["packages"]["transformers"]
    assert report["throughput"]["bfloat16"].keys() == {"2", "4"}
    assert report["equivalence"]["float16"]["verdicts_identical"] in (True, False)
    assert report["whole_path"]["1"]["whole_path_over_raw_encoder"] > 0

    # views: one for a square picture, the padded whole plus 2 / 3 tiles for 16:9 / 3:1
    shapes = report["views"]["shapes"]
    assert [shapes[s]["views_per_image"] for s in ("square", "16:9", "3:1")] == [1, 3, 4]
    assert all(row["views_over_centre_crop"] > 0 for row in shapes.values())
    # forwarding: every input forwarded, as rebuilt pixels of its own kind
    for kind, row in report["forwarding"]["inputs"].items():
        assert row["forwarded"] == row["images"] > 0
        assert row["forwarded_mime"] == ("image/png" if kind.startswith("png") else "image/jpeg")
    pdf = report["pdf_pages"]
    assert pdf["forwarded_mime"] == "application/pdf" and pdf["judgement_error"] is None
    assert pdf["views_checked"] >= pdf["pages"] == 2

    # the fused LLaVA-NeXT guard judged every view of the one tower pass: base + tiles
    nxt = report["llava_next_fused"]
    every = nxt["pictures"]["all_three_in_one_prompt"]
    assert every["views"] == [5, 5, 4] and every["guard_views"] == [1, 3, 4]
    assert nxt["same_projection"] is True
    assert every["fused_vs_standalone"]["min_cosine"] > 0.999
    assert nxt["chat"]["fused_views_checked"] == every["views"]
    assert set(report["llava15_overhead"]["ratios_vs_none"]) == {
        "none", "standalone", "fused", "vlm_judge"}
    assert report["headline"]["section_status"] == status
    assert report["headline"]["next_views_all_three"] == [5, 5, 4]


def test_the_full_run_without_a_gpu_says_so_in_its_json(tmp_path: Path) -> None:
    """What device_run.sh runs, on a machine whose GPU torch cannot see: no traceback, one
    JSON document naming the reason in every section, exit status 2."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("OUT", None)
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu_suite.py"), "--workdir", str(tmp_path / "work"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["complete"] is True and report["section_status"]["environment"] == "ok"
    assert report["environment"]["cuda_available"] is False
    for name in SECTIONS[1:]:
        assert report[name]["skipped"].startswith("no CUDA: torch sees no GPU")
    assert not (tmp_path / "work").exists()  # nothing was built


def _section(runner: ModuleType, name: str, fn: Any, limit: float = 30.0,
             **kw: Any) -> Any:
    return runner.Section(name, fn, limit, **kw)


def test_failing_and_overrunning_sections_are_recorded_and_the_rest_runs(tmp_path: Path
                                                                         ) -> None:
    runner = _runner()

    def ok(out: dict[str, Any]) -> None:
        out["x"] = 1

    def boom(out: dict[str, Any]) -> None:
        out["before"] = 1
        raise ValueError("bad input")

    def slow(out: dict[str, Any]) -> None:
        out["first"] = 1
        time.sleep(30)

    def swallowing(out: dict[str, Any]) -> None:  # library code that catches Exception
        try:
            time.sleep(30)
        except Exception:
            out["swallowed"] = True

    plan = [_section(runner, "ok", ok), _section(runner, "boom", boom),
            _section(runner, "after_boom", ok, needs=("boom",)),
            _section(runner, "gpu", ok, needs_cuda=True),
            _section(runner, "asked_not", ok, skip="not asked (--compile)"),
            _section(runner, "slow", slow, 0.5), _section(runner, "swallowing", swallowing, 0.5),
            _section(runner, "after", ok)]
    report = runner.Report({"benchmark": "toy"}, tmp_path)
    runner.run_sections(plan, report, cuda=False, budget_s=600)
    data = report.data
    assert data["section_status"] == {
        "ok": "ok", "boom": "error", "after_boom": "skipped", "gpu": "skipped",
        "asked_not": "skipped", "slow": "timeout", "swallowing": "timeout", "after": "ok"}
    assert data["ok"] == {"x": 1}
    assert data["boom"]["before"] == 1 and data["boom"]["error"] == "ValueError: bad input"
    assert data["after_boom"] == {"skipped": "needs boom, which did not succeed"}
    assert data["gpu"] == {"skipped": "no CUDA"}
    assert data["slow"]["first"] == 1 and data["slow"]["error"].startswith("timeout")
    assert "swallowed" not in data["swallowing"]
    assert data["complete"] is True
    assert json.loads((tmp_path / "gpu_suite.json").read_text()) == data


def test_sections_past_the_budget_are_skipped_not_started() -> None:
    runner = _runner()
    started: list[str] = []
    report = runner.Report({"benchmark": "toy"}, None)
    runner.run_sections([_section(runner, "a", lambda out: started.append("a"))], report,
                        cuda=False, budget_s=5, min_left_s=10)
    assert started == [] and report.data["section_status"] == {"a": "skipped"}
    assert report.data["a"]["skipped"].startswith("the suite's budget was spent")


HANG = """
import signal, sys, time
sys.path.insert(0, {bench!r})
from gpu._runner import Report, Section, run_sections

def hang(out):
    out["started"] = True
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])  # as a C call that never returns
    time.sleep(60)

report = Report({{"benchmark": "toy"}}, None)
run_sections([Section("hang", hang, 0.5), Section("next", lambda out: None, 5)], report,
             cuda=False, budget_s=30, grace_s=1)
"""


def test_a_hung_section_still_ends_in_one_json_document() -> None:
    proc = subprocess.run([sys.executable, "-c", HANG.format(bench=str(BENCH))],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 3, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["hang"]["started"] is True and data["hang"]["error"].startswith("hung")
    assert data["section_status"] == {"hang": "error", "next": "skipped"}
    assert data["next"]["skipped"] == "not run: the suite stopped after hang hung"
