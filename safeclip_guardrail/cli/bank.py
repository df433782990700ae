"""``safeclip bank show|export``: inspect and write concept banks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from safeclip_guardrail.cli._common import EXIT_OK, printable, readable_text_file
from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.errors import CliError

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("bank", help="show or export a concept bank",
                       description="Show or export a concept bank (default: the paper's).")
    bank_sub = p.add_subparsers(dest="bank_command", metavar="ACTION", required=True,
                                parser_class=type(p))
    show = bank_sub.add_parser("show", help="print the classes and descriptors")
    show.add_argument("--concepts", metavar="FILE", help="bank to show (default: paper's)")
    show.add_argument("--json", action="store_true", help="print the bank as JSON")
    show.set_defaults(func=_show)
    export = bank_sub.add_parser("export", help="write the bank to a JSON or YAML file")
    export.add_argument("out", metavar="OUT", help="destination (.json, .yaml or .yml)")
    export.add_argument("--concepts", metavar="FILE", help="bank to export (default: paper's)")
    export.set_defaults(func=_export)


def _load(args: argparse.Namespace) -> ConceptBank:
    if args.concepts and Path(args.concepts).is_file():  # an image passed as a bank: one line
        readable_text_file(args.concepts, what="concept bank", option="--concepts")
    return ConceptBank.from_file(args.concepts) if args.concepts else ConceptBank.default()


def _show(args: argparse.Namespace) -> int:
    bank = _load(args)
    if args.json:
        print(json.dumps(bank.to_dict(), indent=2, ensure_ascii=False))
        return EXIT_OK
    out = sys.stdout
    out.write(f"{len(bank)} classes, {len(bank.descriptors)} descriptors "
              f"(fingerprint {bank.fingerprint[:12]})\n")
    for c in bank.classes:
        out.write(f"\n{c.name} [{c.kind}]\n")
        for d in c.descriptors:
            out.write(f"  - {d}\n")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    if Path(args.out).suffix.lower() not in {".json", ".yaml", ".yml"}:
        msg = f"OUT must end in .json, .yaml or .yml, got {printable(args.out)}"
        raise CliError(msg)
    path = _load(args).to_file(args.out)
    print(f"wrote {path}")
    return EXIT_OK
