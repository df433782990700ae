"""``safeclip scan PATH...``: one verdict per image; exit 0 clean, 1 flagged, 2 input error."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from safeclip_guardrail.cli._common import (
    EXIT_ERROR,
    EXIT_FLAGGED,
    EXIT_OK,
    CliError,
    add_guard_options,
    guard_from_args,
    iter_image_files,
    progress,
)

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "scan", help="check images; exit 1 when any is flagged",
        description="Check images (files, or folders searched recursively; '-' reads one image "
                    "from stdin). Exit 0 when nothing is flagged, 1 when something is, 2 when "
                    "an input could not be read or the options are wrong.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="JSON lines, one verdict per image")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    add_guard_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    stdin = "-" in args.paths
    files: list[Path | str] = list(iter_image_files(p for p in args.paths if p != "-"))
    if stdin:
        files.insert(args.paths.index("-"), "-")
    if not files:
        raise CliError("no image files found in the given paths")
    guard = guard_from_args(args)
    batch = guard.config.batch_size
    flagged = errors = 0
    bar = progress(range(len(files)), total=len(files), desc="scanning",
                   enabled=not args.no_progress)
    out = sys.stdout
    for start in range(0, len(files), batch):
        chunk = files[start:start + batch]
        sources = [sys.stdin.buffer.read() if f == "-" else Path(f) for f in chunk]
        for name, verdict in zip(chunk, guard.check_batch(sources)):
            errors += verdict.error is not None
            flagged += verdict.flagged and verdict.error is None
            out.write(_format(str(name), verdict, as_json=args.json) + "\n")
        bar.update(len(chunk))
    bar.close()
    out.flush()
    if errors:
        print(f"safeclip: error: {errors} of {len(files)} image(s) could not be read",
              file=sys.stderr)
        return EXIT_ERROR
    return EXIT_FLAGGED if flagged else EXIT_OK


def _format(path: str, verdict: Any, *, as_json: bool) -> str:
    if as_json:
        data = verdict.model_dump(mode="json", exclude={"source"})
        return json.dumps({"path": path, **data}, ensure_ascii=False)
    if verdict.error is not None:
        return f"ERROR    {path}: {verdict.error}"
    cat = verdict.category if verdict.flagged else verdict.top_category
    mass = verdict.scores.get(cat or "", 0.0)
    status = "FLAGGED" if verdict.flagged else "ok"
    return f"{status:<8} {cat} {mass:.3f}  {path}"
