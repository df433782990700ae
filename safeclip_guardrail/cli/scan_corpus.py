"""``safeclip scan-corpus SOURCE... --out DIR``: verdicts for a corpus, as Parquet.

SOURCE is a folder (images found by content), a Parquet file (binary or path column), a
WebDataset tar shard, or a CSV/JSONL manifest with a ``path`` column. ``--engine ray`` runs
an actor pool on a Ray cluster; ``--root DIR`` confines every file read to DIR. Exit 0 when
the scan ran (flagged and unreadable images, bad manifest records and paths outside the
root are rows of the output, counted in the closing summary line), 2 on usage or input
errors.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from safeclip_guardrail.cli._common import EXIT_OK, _positive_int, add_guard_options, config_from_args

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "scan-corpus", help="scan a corpus (folders, Parquet, WebDataset, manifests) into Parquet",
        description="Check every image of a corpus and write one row per image (id, sha256, "
                    "verdict, per-class scores, error, optionally embeddings) as Parquet files "
                    "into --out. Unreadable images are error rows, never a failed run. "
                    "--guard options as for 'safeclip scan'; --batch-size is also the batch "
                    "handed to each worker.",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="folder, .parquet, WebDataset .tar shard, or .csv/.jsonl manifest")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (Parquet)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process; ray: a Ray Data actor pool (default: local)")
    p.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to join (e.g. auto, ray://head:10001; default: "
                        "RAY_ADDRESS or a new local cluster)")
    p.add_argument("--actors", type=_positive_int, default=1, metavar="N",
                   help="scorer actors, each holding one guard (default 1)")
    p.add_argument("--num-gpus", type=_non_negative, default=0.0, metavar="G",
                   help="GPUs per actor, e.g. 1 or 0.5 (default 0)")
    p.add_argument("--cpus-per-actor", type=_non_negative, default=None, metavar="C",
                   help="CPUs (decode threads) per actor (default: cluster CPUs / actors)")
    p.add_argument("--embeddings", action="store_true",
                   help="also store both CLS-source embeddings (for eval/calibrate "
                        "--from-embeddings)")
    p.add_argument("--resume", action="store_true",
                   help="continue a scan in --out: skip the ids already written")
    p.add_argument("--image-column", metavar="COL",
                   help="Parquet column holding image bytes or paths (default: the first "
                        "binary column, else a path column)")
    p.add_argument("--path-column", metavar="COL",
                   help="column of image paths in a manifest or Parquet (default: path)")
    p.add_argument("--id-column", metavar="COL",
                   help="column of row ids (default: id/key when present, else path or "
                        "file#row)")
    p.add_argument("--root", metavar="DIR",
                   help="read only files inside DIR (symlinks resolved): paths from manifests "
                        "and Parquet path columns, and symlinks in folders, that lead "
                        "elsewhere are error rows (default: each folder source is its own "
                        "root; a manifest's or Parquet file's folder is theirs)")
    p.add_argument("--part-rows", type=_positive_int, default=8192, metavar="N",
                   help="local engine: write a Parquet part file every N rows (default 8192) ...")
    p.add_argument("--part-seconds", type=_positive_float, default=5.0, metavar="S",
                   help="... or every S seconds, whichever comes first (default 5): an "
                        "interruption loses at most that much work; --resume continues")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    add_guard_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from safeclip_guardrail.encoders._quiet import silence_transformers
    from safeclip_guardrail.scale import scan_corpus

    config = config_from_args(args)
    silence_transformers()
    if args.engine == "local" and (args.address or args.actors != 1 or args.num_gpus
                                   or args.cpus_per_actor is not None):
        msg = "--address, --actors, --num-gpus and --cpus-per-actor need --engine ray"
        raise _usage(msg)
    if args.engine == "ray" and (args.part_rows != 8192 or args.part_seconds != 5.0):
        msg = ("--part-rows and --part-seconds apply to the local engine (Ray writes "
               "one part file per block)")
        raise _usage(msg)
    summary = scan_corpus(
        args.sources, args.out, engine=args.engine, actors=args.actors, num_gpus=args.num_gpus,
        cpus_per_actor=args.cpus_per_actor, embeddings=args.embeddings, resume=args.resume,
        address=args.address, image_column=args.image_column, path_column=args.path_column,
        id_column=args.id_column, root=args.root, rows_per_file=args.part_rows,
        part_seconds=args.part_seconds, show_progress=not args.no_progress, config=config,
    )
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    print(summary.line())
    return EXIT_OK


def _usage(message: str) -> Exception:
    from safeclip_guardrail.errors import CliError

    return CliError(message)


def _positive_float(text: str) -> float:
    value = _non_negative(text)
    if not value > 0:
        msg = f"must be > 0, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"not a number: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not value >= 0:
        msg = f"must be >= 0, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value
