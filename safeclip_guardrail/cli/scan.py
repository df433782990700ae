"""``safeclip scan PATH...``: one verdict per image; exit 0 clean, 1 flagged, 2 not all checked.

Folders are walked by the package's one folder walk (:mod:`safeclip_guardrail.images.discover`,
the rules ``scan-corpus`` and ``eval`` follow too): files are sorted by their content (and
image names) into images, which are checked, and the rest, which is skipped and reported
with its reason (not an image, hidden, a symlinked folder, not a regular file): ``--json``
writes a record per skipped file, text mode a summary line. A symlink leading out of the
folder named, or a file that cannot be opened, is never read and gets an unreadable
verdict. Exit code 2 says that something was not checked (an unreadable image, or a skipped
file unless ``--allow-non-images``); it takes precedence over 1, so check stderr before
reading the verdicts.

Text output: aligned ``STATUS CATEGORY SCORE PATH`` columns, the path once (last, escaped:
a file name with a newline cannot forge a line), and a summary line. The progress bar (on
stderr, for long runs on a terminal) is cleared before each result line is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeclip_guardrail.cli._common import (
    EXIT_ERROR,
    EXIT_FLAGGED,
    EXIT_OK,
    add_guard_options,
    discover,
    emit,
    guard_from_args,
    printable,
    progress,
)
from safeclip_guardrail.errors import CliError

__all__ = ["ScanSummary", "register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "scan", help="check images; exit 1 when any is flagged",
        description="Check images (files, or folders searched recursively, where files are "
                    "recognised as images by their content; '-' reads one image from stdin). "
                    "Exit 0 when nothing is flagged, 1 when something is, 2 when something "
                    "could not be checked (an unreadable image, a file that is not an image) "
                    "or the options are wrong.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true",
                   help="JSON lines: one verdict per image, one record per skipped file")
    p.add_argument("--allow-non-images", action="store_true",
                   help="files that are not images (in folders, or named) are skipped and "
                        "reported, but do not make the exit code 2")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    add_guard_options(p)
    p.set_defaults(func=run)


@dataclass
class ScanSummary:
    """What one ``scan`` run saw; printed as its last line."""

    checked: int = 0
    flagged: Counter[str] = field(default_factory=Counter)
    unreadable: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        n_flagged = sum(self.flagged.values())
        per_class = ", ".join(f"{k} {v}" for k, v in sorted(self.flagged.items()))
        parts = [f"scanned {self.checked} image(s) in {self.seconds:.1f} s",
                 f"{n_flagged} flagged" + (f" ({per_class})" if per_class else ""),
                 f"{self.unreadable} unreadable",
                 f"{len(self.skipped)} skipped (not checked)"]
        if self.skipped:
            shown = ", ".join(self.skipped[:3])
            more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            parts[-1] += f": {shown}{more}"
        return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    # with --allow-non-images a named file that is not an image is skipped, as in a folder
    found = discover((p for p in args.paths if p != "-"),
                     named_files_are_images=not args.allow_non_images)
    files: list[Path | str] = [f.path for f in found.files]
    if "-" in args.paths:
        files.insert(min(args.paths.index("-"), len(files)), "-")
    if not files and not found.skipped:
        msg = "no files found in the given paths"
        raise CliError(msg)
    summary = ScanSummary(skipped=[printable(str(s.path)) for s in found.skipped])
    for skipped in found.skipped:
        if args.json:
            emit(json.dumps({"path": str(skipped.path), "skipped": True,
                             "reason": skipped.reason}, ensure_ascii=True))
    if files:
        _check(args, files, summary, not_read={f.path: f.error for f in found.unreadable})
    summary.seconds = time.perf_counter() - started
    print(summary.line(), file=sys.stderr if args.json else sys.stdout)
    sys.stdout.flush()
    problems = []
    if summary.unreadable:
        problems.append(f"{summary.unreadable} of {len(files)} image(s) could not be read")
    if found.skipped and not args.allow_non_images:
        problems.append(f"{len(found.skipped)} file(s) skipped, not checked (not images, "
                        "hidden, links to folders...; --allow-non-images to accept that)")
    if problems:
        print(f"safeclip: error: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_FLAGGED if summary.flagged else EXIT_OK


def _check(args: argparse.Namespace, files: list[Path | str], summary: ScanSummary, *,
           not_read: dict[Path, str]) -> None:
    """``not_read``: files the walk found but must not read (their verdict is ``on_error``'s)."""
    from safeclip_guardrail import policy
    from safeclip_guardrail.errors import ImageInputError

    guard = guard_from_args(args)
    width = max(len(c) for c in (*guard.bank.class_names, "unreadable"))
    batch = guard.config.batch_size
    bar = progress(range(len(files)), total=len(files), desc="scanning",
                   enabled=not args.no_progress)
    try:
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            sources = [sys.stdin.buffer.read() if f == "-" else Path(f)
                       for f in chunk if f not in not_read]
            read = iter(guard.check_batch(sources))
            for name in chunk:
                verdict = (policy.verdict_for(ImageInputError(not_read[name], source=str(name)),
                                              guard.config)
                           if name in not_read else next(read))
                summary.checked += 1
                if verdict.error is not None:
                    summary.unreadable += 1
                elif verdict.flagged:
                    summary.flagged[verdict.category or "?"] += 1
                emit(_format(str(name), verdict, as_json=args.json, width=width), bar=bar)
            bar.update(len(chunk))
    finally:
        bar.close()


def _format(path: str, verdict: Any, *, as_json: bool, width: int) -> str:
    if as_json:
        data = verdict.model_dump(mode="json", exclude={"source"})
        # ASCII-only JSON: a control character in a file name stays an escape, one record a line
        return json.dumps({"path": path, **data}, ensure_ascii=True)
    shown = printable(path)
    if verdict.error is not None:
        reason = printable(" ".join(str(verdict.error).replace(f" {path}", "").split()))
        return f"{'ERROR':<8} {'unreadable':<{width}} {'-':>5}  {shown}: {reason}"
    cat = verdict.category if verdict.flagged else verdict.top_category
    mass = verdict.scores.get(cat or "", 0.0)
    status = "FLAGGED" if verdict.flagged else "ok"
    return f"{status:<8} {cat or '-':<{width}} {mass:.3f}  {shown}"
