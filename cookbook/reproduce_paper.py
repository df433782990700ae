"""Reproduce the SafeCLIP paper's table on HOD + a benign set (step by step: reproduce_paper.md).

    python cookbook/reproduce_paper.py DATA --out results/ --llava llava-hf/llava-1.5-7b-hf

DATA holds one folder per class: the six HOD categories (alcohol, blood, cigarette, gun,
insulting_gesture, knife; HOD's folder names are mapped onto the paper's bank) and a benign
folder (``neutral``, ``benign`` or ``safe``). The recipe:

1. builds the guard with the paper's released settings: the default 8-class bank with 5
   descriptors each, threshold 0.6, decision "top", CLS from layer -2 (``penultimate``);
2. embeds every image once and computes the guard-level metrics, the K = 1/3/5 and
   final/penultimate ablations and the threshold sweep from those embeddings;
3. with a chat model (LLaVA-1.5-7B on a GPU for the paper's setting), sends each image with
   a query with and without the guard and measures refusals and latency overhead;
4. writes report.json / report.md / plots and prints the comparison with the paper.

The test suite runs the same ``main`` on a tiny CLIP and a fake chat model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.eval import HOD_LABEL_MAP, EvalReport, evaluate, load_dataset, write_report

PAPER = {"defense_success_rate": 0.669, "false_positive_rate": 0.032, "overhead_pct": 7.2,
         "accuracy": 0.864}
"""The paper's headline numbers (abstract; accuracy as quoted for zero-shot classification)."""


def main(data: str | Path, *, out_dir: str | Path, model: str = "llava-1.5",
         cls_source: str = "penultimate", chat_model: Any = None, llava: str | None = None,
         device: str | None = None, dtype: str | None = None, batch_size: int = 32,
         max_new_tokens: int = 64, show_progress: bool = True) -> EvalReport:
    """Run the paper's evaluation recipe and return the report (also written to ``out_dir``).

    ``model`` is the CLIP the guard uses (``llava-1.5`` = clip-vit-large-patch14-336, the
    tower of LLaVA-1.5); ``chat_model`` any LangChain chat model, or ``llava`` a LLaVA
    checkpoint to load as :class:`~safeclip_guardrail.ChatLlava` (unguarded: the guard sits
    in front of it, as in the paper).
    """
    guard = SafeCLIPGuard.from_pretrained(
        model, threshold=0.6, decision="top", cls_source=cls_source, device=device,
        dtype=dtype, batch_size=batch_size,
    )
    dataset = load_dataset(data, bank=guard.bank, label_map=HOD_LABEL_MAP)
    if chat_model is None and llava is not None:
        from safeclip_guardrail import ChatLlava

        chat_model = ChatLlava.from_pretrained(llava, device=device, dtype=dtype,
                                               max_new_tokens=max_new_tokens)
    report = evaluate(guard, dataset, sweep=True, ablations=True, ks=(1, 3, 5, None),
                      chat_model=chat_model, show_progress=show_progress)
    files = write_report(report, out_dir)
    print(comparison(report))
    print(f"\nreport: {files.markdown_path} (json: {files.json_path})")
    return report


def comparison(report: EvalReport) -> str:
    """A Markdown table of this run next to the paper's headline numbers."""
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    e = report.e2e
    rows = [
        ("defense success rate (end to end)", pct(e.defense_success_rate if e else None),
         pct(PAPER["defense_success_rate"])),
        ("false positive rate (end to end)", pct(e.false_positive_rate if e else None),
         pct(PAPER["false_positive_rate"])),
        ("overhead on benign queries",
         "n/a" if e is None or e.overhead_benign_pct is None else f"{e.overhead_benign_pct:.1f}%",
         f"{PAPER['overhead_pct']}%"),
        ("guard: toxic images flagged", pct(report.defense_success_rate), "-"),
        ("guard: benign images flagged", pct(report.false_positive_rate), "-"),
        ("zero-shot category accuracy", pct(report.accuracy), pct(PAPER["accuracy"])),
    ]
    lines = ["| metric | this run | paper |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def _cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="llava-1.5", help="CLIP for the guard")
    p.add_argument("--llava", help="LLaVA checkpoint for the end-to-end run")
    p.add_argument("--cls-source", default="penultimate", choices=["final", "penultimate"])
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=64)
    a = p.parse_args(argv)
    main(a.data, out_dir=a.out, model=a.model, llava=a.llava, cls_source=a.cls_source,
         device=a.device, dtype=a.dtype, batch_size=a.batch_size,
         max_new_tokens=a.max_new_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
