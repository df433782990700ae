"""What every ``safeclip`` command shares: guard options, file discovery, error reporting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from safeclip_guardrail.encoders._quiet import silence_transformers
from safeclip_guardrail.errors import CliError, SafeCLIPError
from safeclip_guardrail.images.discover import Discovery, discover_images

__all__ = [
    "EXIT_ERROR",
    "EXIT_FLAGGED",
    "EXIT_OK",
    "SafeclipArgumentParser",
    "add_guard_options",
    "check_model_and_device",
    "check_output_folder",
    "config_from_args",
    "describe_error",
    "discover",
    "emit",
    "fail",
    "guard_from_args",
    "iter_image_files",
    "printable",
    "progress",
    "readable_text_file",
]

EXIT_OK, EXIT_FLAGGED, EXIT_ERROR = 0, 1, 2


class SafeclipArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (``safeclip: error: ...``)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def fail(exc: BaseException) -> int:
    """Print ``exc`` as one line and return exit code 2."""
    print(f"safeclip: error: {printable(describe_error(exc))}", file=sys.stderr)
    return EXIT_ERROR


def describe_error(exc: BaseException) -> str:
    """One line for a person: what failed and on which file, never a bare class name."""
    text = " ".join(str(exc).split())
    if isinstance(exc, SafeCLIPError):
        return text or "failed"
    if isinstance(exc, OSError) and exc.filename is not None:
        what = exc.strerror or text or "cannot be read"
        return f"{exc.filename}: {what[0].lower()}{what[1:]}"
    if isinstance(exc, UnicodeDecodeError):
        return (f"a file that should be text is not UTF-8 (byte {exc.start}: {exc.reason}); "
                "is an image or a binary file passed where a JSON/YAML file is expected?")
    if isinstance(exc, MemoryError):
        return "out of memory; try a smaller --batch-size"
    detail = f": {text}" if text else ""
    return (f"unexpected failure{detail} ({type(exc).__name__}; set SAFECLIP_DEBUG=1 for "
            "a traceback)")


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\x1b``, ``\\u202e``,
    lone surrogates of undecodable file names), so a file name cannot forge an extra output
    line, move the cursor or reorder the text of a line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    cp = ord(ch)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch)
    if named:
        return named
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def readable_text_file(path: str, *, what: str, option: str) -> None:
    """Raise a one-line CliError unless ``path`` is a readable UTF-8 text file.

    The library's own check (the one ``ConceptBank.from_file`` and ``GuardConfig.from_file``
    apply), run before any model loads so a wrong file fails in a second."""
    from safeclip_guardrail._validation import read_text_file
    from safeclip_guardrail.errors import ConfigurationError

    try:
        read_text_file(path, what=what, hint="see --help")
    except ConfigurationError as exc:
        msg = f"{option}: {printable(str(exc))}"
        raise CliError(msg) from None


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

    if getattr(args, "config", None):
        readable_text_file(args.config, what="guard config", option="--config")
    if getattr(args, "concepts", None):
        readable_text_file(args.concepts, what="concept bank", option="--concepts")
    base = GuardConfig.from_file(args.config) if getattr(args, "config", None) else None
    images = None
    if getattr(args, "frames", None):
        current = base.images.model_dump() if base is not None else {}
        images = {**current, "frames": args.frames}
    config = build_config(
        base, model=args.model, concepts=args.concepts, threshold=args.threshold,
        cls_source=args.cls_source, decision=args.decision, device=args.device,
        dtype=args.dtype, batch_size=args.batch_size, images=images,
    )
    if _model_runs_here(args):
        check_model_and_device(config.model, config.device)
    return config


def check_model_and_device(model: str, device: str | None) -> None:
    """A model directory that does not exist, or a device this machine lacks, as one line
    before anything loads (a Ray scan would otherwise start a cluster and its actors first)."""
    from safeclip_guardrail.encoders._aliases import resolve_model_id
    from safeclip_guardrail.encoders._hub import is_hub_id
    from safeclip_guardrail.errors import ConfigurationError

    resolved = resolve_model_id(model)
    if not resolved.startswith("open_clip:") and not is_hub_id(resolved) \
            and not Path(resolved).is_dir():
        msg = (f"--model: no directory {printable(resolved)}; pass a directory holding "
               "a CLIP checkpoint, a hub id such as openai/clip-vit-large-patch14-336, "
               "or an alias such as llava-1.5")
        raise CliError(msg)
    if device is not None:
        import torch

        from safeclip_guardrail.encoders._torch import resolve_device

        try:
            torch.empty(0, device=resolve_device(device))  # an ordinal or a backend not here
        except ConfigurationError as exc:
            msg = f"--device: {exc}"
            raise CliError(msg) from None
        except RuntimeError:  # a device type this torch was built without (mps, xpu)
            msg = (f"--device: {device!r} is not available on this machine or in this "
                   "PyTorch build; use cpu, or cuda where a GPU is")
            raise CliError(msg) from None


def _model_runs_here(args: argparse.Namespace) -> bool:
    """False for a Ray engine on a cluster named by --address or RAY_ADDRESS: its workers,
    not this machine, hold the model files and the GPUs."""
    import os

    if getattr(args, "engine", None) != "ray":
        return True
    return not (getattr(args, "address", None) or os.environ.get("RAY_ADDRESS"))


def check_output_folder(path: str, *, option: str) -> None:
    """An output folder that cannot be one (an existing file) as one line, before any model
    loads. A folder that does not exist yet is created by the command."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        msg = (f"{option}: {printable(path)} is a file; pass a folder (it is created "
               "when missing)")
        raise CliError(msg)


def guard_from_args(args: argparse.Namespace) -> Any:
    from safeclip_guardrail.guard import SafeCLIPGuard

    config = config_from_args(args)
    silence_transformers()
    return SafeCLIPGuard.from_config(config)


def discover(paths: Iterable[str], *, named_files_are_images: bool = True) -> Discovery:
    """Files named directly and, in folders searched recursively, every file whose content
    is an image; the other files found are returned as skipped. A file named directly is an
    image whatever it holds (the guard then says it cannot be read), unless
    ``named_files_are_images`` is False: then it is sorted like a file in a folder."""
    checked = []
    for raw in paths:
        p = Path(raw)
        if not (p.is_dir() or p.is_file()):
            msg = f"no such file or directory: {printable(raw)}"
            raise CliError(msg)
        checked.append(p)
    return discover_images(checked, named_files_are_images=named_files_are_images)


def iter_image_files(paths: Iterable[str]) -> Iterator[Path]:
    """The images of :func:`discover` (files that are not images are left out)."""
    yield from discover(paths).images


def progress(items: Any, *, total: int, desc: str, enabled: bool = True) -> Any:
    """A tqdm bar on stderr for long runs (hidden when stderr is not a terminal).

    Write result lines with :func:`emit` while it runs, so the bar is cleared first and
    never glued to a line."""
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc=desc, unit="img", file=sys.stderr,
                disable=None if enabled and total > 1 else True, leave=False)


def emit(line: str, *, bar: Any = None) -> None:
    """Print ``line`` on stdout; with an active progress bar, clear it first and redraw it
    after, so the bar (on stderr, same terminal) never shares a line with a result."""
    if bar is None or getattr(bar, "disable", True):
        sys.stdout.write(line + "\n")
        return
    bar.clear()
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    bar.refresh()


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"not a number: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0.0 < value < 1.0:
        msg = f"must be between 0 and 1 (exclusive), got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"not an integer: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"must be >= 1, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value
