"""What every ``safeclip`` command shares: guard options, file discovery, error reporting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from safeclip_guardrail.errors import SafeCLIPError

__all__ = [
    "EXIT_ERROR",
    "EXIT_FLAGGED",
    "EXIT_OK",
    "IMAGE_EXTENSIONS",
    "CliError",
    "SafeclipArgumentParser",
    "add_guard_options",
    "config_from_args",
    "fail",
    "guard_from_args",
    "iter_image_files",
    "progress",
    "quiet_model_loading",
]

EXIT_OK, EXIT_FLAGGED, EXIT_ERROR = 0, 1, 2

IMAGE_EXTENSIONS = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".jfif",
})


class CliError(SafeCLIPError):
    """A usage or input problem reported as one line with exit code 2."""


class SafeclipArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (``safeclip: error: ...``)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def fail(exc: BaseException) -> int:
    """Print ``exc`` as one line and return exit code 2."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    kind = "" if isinstance(exc, SafeCLIPError) else f"{type(exc).__name__}: "
    print(f"safeclip: error: {kind}{text}", file=sys.stderr)
    return EXIT_ERROR


def add_guard_options(parser: argparse.ArgumentParser) -> None:
    """The guard options shared by ``scan``, ``eval`` and ``calibrate``."""
    g = parser.add_argument_group("guard options")
    g.add_argument("--config", metavar="FILE",
                   help="guard config (JSON/YAML, e.g. written by 'safeclip calibrate')")
    g.add_argument("--model", "-m", metavar="M",
                   help="alias (llava-1.5), hub id, local dir, or open_clip:<model>/<tag> "
                        "(default: llava-1.5, or the config's)")
    g.add_argument("--concepts", metavar="FILE", help="concept bank JSON/YAML")
    g.add_argument("--threshold", "-t", type=_probability, metavar="T",
                   help="class-mass threshold in (0, 1) (default 0.6)")
    g.add_argument("--cls-source", choices=["final", "penultimate"])
    g.add_argument("--decision", choices=["top", "any"])
    g.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: GPU when present)")
    g.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    g.add_argument("--batch-size", type=_positive_int, metavar="N")
    g.add_argument("--frames", type=_positive_int, metavar="N",
                   help="frames of animated images to check (default 1)")


def config_from_args(args: argparse.Namespace) -> Any:
    """A GuardConfig from ``--config`` overridden by the other guard flags."""
    from safeclip_guardrail.config import GuardConfig, build_config

    base = GuardConfig.from_file(args.config) if getattr(args, "config", None) else None
    images = None
    if getattr(args, "frames", None):
        current = base.images.model_dump() if base is not None else {}
        images = {**current, "frames": args.frames}
    return build_config(
        base, model=args.model, concepts=args.concepts, threshold=args.threshold,
        cls_source=args.cls_source, decision=args.decision, device=args.device,
        dtype=args.dtype, batch_size=args.batch_size, images=images,
    )


def guard_from_args(args: argparse.Namespace) -> Any:
    from safeclip_guardrail.guard import SafeCLIPGuard

    config = config_from_args(args)
    quiet_model_loading()
    return SafeCLIPGuard.from_config(config)


def quiet_model_loading() -> None:
    """transformers' own loading bars and info logs would interleave with our output."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a core dependency
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def iter_image_files(paths: Iterable[str]) -> Iterator[Path]:
    """Files named directly (any extension) and image files found recursively in folders."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*")
                           if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            yield from found
        elif p.is_file():
            yield p
        else:
            raise CliError(f"no such file or directory: {raw}")


def progress(items: Any, *, total: int, desc: str, enabled: bool = True) -> Any:
    """A tqdm bar on stderr for long runs (hidden when stderr is not a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc=desc, unit="img", file=sys.stderr,
                disable=None if enabled and total > 1 else True, leave=False)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
