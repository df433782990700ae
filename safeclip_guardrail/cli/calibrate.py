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
    CliError,
    add_guard_options,
    config_from_args,
    quiet_model_loading,
)

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
        raise CliError(f"--out must end in .json, .yaml or .yml, got {out}")
    if not out.parent.is_dir():
        raise CliError(f"folder of --out does not exist: {out.parent}")
    config = config_from_args(args)
    bank = config.bank
    label = args.benign_class or bank.benign_classes[0]
    if label not in bank.benign_classes:
        raise CliError(f"--benign-class {label!r} is not a benign class of the concept bank "
                       f"({', '.join(bank.benign_classes)})")
    data = Path(args.data)
    dataset = ds.load_dataset(data, bank=bank, all_label=label if data.is_dir() else None)
    if args.from_embeddings:
        from safeclip_guardrail.eval.stored import check_scan

        check_scan(args.from_embeddings, config)  # before loading the model
    quiet_model_loading()
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
    if result.per_class:
        what = ", ".join(f"{k} {v:.4f}" for k, v in result.thresholds.items())
    else:
        what = f"threshold {result.threshold:.4f}"
    print(f"{what}: {result.false_positives} of {result.n_images} benign images flagged "
          f"(false-positive rate {100 * result.false_positive_rate:.2f}%, target "
          f"{100 * result.target_fpr:g}%); wrote {written}")
    for note in result.notes:
        print(f"note: {note}")
    if result.unreadable:
        print(f"safeclip: warning: {len(result.unreadable)} file(s) could not be read and were "
              "left out: " + ", ".join(u.path for u in result.unreadable[:5]), file=sys.stderr)
    return EXIT_OK


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value
