"""Recipe: edit the categories as text, add a benign context class, set per-class thresholds.

Run on a real model:      python cookbook/custom_concepts.py --model llava-1.5 photo1.jpg ...
The test suite runs ``main`` on a planted encoder and on a tiny CLIP.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safeclip_guardrail import ConceptBank, GuardConfig, ImageVerdict, SafeCLIPGuard
from safeclip_guardrail.encoders import ImageTextEncoder


def kitchen_bank() -> ConceptBank:
    """The paper's bank, plus a benign context class that keeps cooking photos away from 'knife'."""
    return ConceptBank.default().with_class(
        "kitchen",
        ["a chef slicing vegetables", "a kitchen knife on a cutting board",
         "cooking food in a kitchen"],
        kind="benign",
    )


def main(images: Sequence[Any], *, model: str | None = None,
         encoder: ImageTextEncoder | None = None, out_dir: Path | None = None) -> list[ImageVerdict]:
    bank = kitchen_bank()
    if out_dir is not None:  # share the bank with colleagues / the CLI (--concepts bank.yaml)
        bank.to_file(Path(out_dir) / "bank.yaml")
    options = {"concepts": bank, "thresholds": {"alcohol": 0.8}}
    if encoder is not None:
        guard = SafeCLIPGuard(encoder, config=GuardConfig(**options))
    else:
        guard = SafeCLIPGuard.from_pretrained(model or "llava-1.5", **options)  # type: ignore[arg-type]
    verdicts = guard.check_batch(images)
    for v in verdicts:
        state = f"FLAGGED {v.category}" if v.flagged else f"ok ({v.top_category})"
        print(f"{state:<20} toxic score {v.toxic_score:.3f}  {v.source}")
    return verdicts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--model", default="llava-1.5")
    ns = parser.parse_args()
    main(ns.images, model=ns.model)
