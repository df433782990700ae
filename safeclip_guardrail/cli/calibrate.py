"""``safeclip calibrate BENIGN --target-fpr 0.03 --out guard.json``: thresholds from benign images.

BENIGN is a folder of benign images (searched recursively, every image counts as benign)
or a CSV/JSONL manifest (its benign-labelled rows are used). The written file is a full
guard config (model, concept bank, thresholds...) that ``safeclip scan --config``,
``safeclip eval --config`` and ``SafeCLIPGuard.from_pretrained(config=...)`` load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from safeclip_guardrail.cli._common import (
    EXIT_OK,
    add_guard_options,
    config_from_args,
    printable,
)
from safeclip_guardrail.cli.evaluate import warn_skipped
from safeclip_guardrail.encoders._quiet import silence_transformers
from safeclip_guardrail.errors import CliError

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate", help="choose thresholds that meet a target false-positive rate",
        description="Find the lowest threshold (or per-class thresholds) whose false-positive "
                    "rate on a set of benign images is at most --target-fpr, and write a guard "
                    "config with it.",
    )
    p.add_argument("data", metavar="BENIGN",
                   help="folder of benign images (recursive) or a .csv/.jsonl manifest")
    p.add_argument("--target-fpr", type=_rate, required=True, metavar="R",
                   help="highest acceptable false-positive rate on these images, e.g. 0.03")
    p.add_argument("--out", "-o", required=True, metavar="FILE",
                   help="where to write the guard config (.json, .yaml or .yml)")
    p.add_argument("--per-class", action="store_true",
                   help="one threshold per toxic class (the false-positive budget is split "
                        "evenly over them)")
    p.add_argument("--margin", type=float, default=None, metavar="M",
                   help="distance above the highest benign score that must pass (default 1e-4)")
    p.add_argument("--min-threshold", type=float, default=None, metavar="T",
                   help="never go below this threshold (default: the lowest meaningful one)")
    p.add_argument("--benign-class", metavar="CLASS",
                   help="label for a plain folder (default: the bank's first benign class)")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.add_argument("--from-embeddings", metavar="SCAN",
                   help="read the images' embeddings from a 'safeclip scan-corpus --embeddings' "
                        "output instead of encoding them")
    add_guard_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from safeclip_guardrail.eval import datasets as ds
    from safeclip_guardrail.eval.calibrate import DEFAULT_MARGIN, calibrate
    from safeclip_guardrail.guard import SafeCLIPGuard

    out = Path(args.out)
    if out.suffix.lower() not in {".json", ".yaml", ".yml"}:
        msg = f"--out must end in .json, .yaml or .yml, got {out}"
        raise CliError(msg)
    if not out.parent.is_dir():
        msg = f"folder of --out does not exist: {out.parent}"
        raise CliError(msg)
    config = config_from_args(args)
    bank = config.bank
    label = args.benign_class or bank.benign_classes[0]
    if label not in bank.benign_classes:
        msg = (f"--benign-class {label!r} is not a benign class of the concept bank "
               f"({', '.join(bank.benign_classes)})")
        raise CliError(msg)
    data = Path(args.data)
    dataset = ds.load_dataset(data, bank=bank, all_label=label if data.is_dir() else None)
    if args.from_embeddings:
        from safeclip_guardrail.eval.stored import check_scan

        check_scan(args.from_embeddings, config)  # before loading the model
    silence_transformers()
    guard = SafeCLIPGuard.from_config(config)
    embedded = None
    if args.from_embeddings:
        from safeclip_guardrail.eval.stored import load_scan_embeddings

        embedded = load_scan_embeddings(args.from_embeddings, dataset, guard)
    result = calibrate(guard, dataset, target_fpr=args.target_fpr, per_class=args.per_class,
                       margin=DEFAULT_MARGIN if args.margin is None else args.margin,
                       min_threshold=args.min_threshold,
                       show_progress=not args.no_progress, embedded=embedded)
    written = result.apply(config).to_file(out)
    chosen = result.thresholds if result.per_class else {"": result.threshold}
    what = ", ".join(f"{k} {threshold_text(v)}".strip() for k, v in chosen.items())
    print(f"{'thresholds' if result.per_class else 'threshold'} {what}: "
          f"{result.false_positives} of {result.n_images} benign images flagged "
          f"(false-positive rate {100 * result.false_positive_rate:.2f}%, target "
          f"{100 * result.target_fpr:g}%); wrote {written}")
    for warning in [*result.notes, *_high_threshold_warnings(chosen)]:
        print(f"safeclip: warning: {warning}", file=sys.stderr)
    if result.unreadable:
        print(f"safeclip: warning: {len(result.unreadable)} file(s) could not be read and were "
              "left out: " + ", ".join(printable(u.path) for u in result.unreadable[:5]),
              file=sys.stderr)
    warn_skipped(dataset)
    return EXIT_OK


HIGH_THRESHOLD = 0.95
"""Above this, a toxic class must hold nearly all the probability mass to flag: the guard
then flags almost nothing, which calibration on benign images alone cannot reveal."""


def threshold_text(value: float) -> str:
    """Six significant digits, or every digit when rounding would say 1 (or 0) or move the
    value by more than 1e-6: a printed threshold must not read as "flags nothing"."""
    text = f"{value:.6g}"
    if float(text) in (0.0, 1.0) or abs(float(text) - value) > 1e-6:
        text = repr(float(value))
    return text


def _high_threshold_warnings(chosen: dict[str, float]) -> list[str]:
    high = {k: v for k, v in chosen.items() if v > HIGH_THRESHOLD}
    if not high:
        return []
    which = ", ".join(f"{k or 'the threshold'} {threshold_text(v)}" for k, v in high.items())
    return [f"{which} above {HIGH_THRESHOLD}: an image is flagged only when a toxic class holds "
            "almost all of its probability mass, so the guard will flag almost nothing. Some "
            "benign images look toxic to the model: add benign-context classes for them to the "
            "concept bank, accept a higher --target-fpr, and check detection with 'safeclip "
            "eval' on toxic images"]


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"not a number: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0.0 <= value < 1.0:
        msg = f"must be in [0, 1), got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value
