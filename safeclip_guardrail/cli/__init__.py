"""The ``safeclip`` command line: ``scan``, ``bank``, ``eval``, ``calibrate``, ``serve``,
``scan-corpus``.

Exit codes: 0 nothing flagged, 1 something flagged, 2 usage or input error. Errors are one
line on stderr, never a traceback (set ``SAFECLIP_DEBUG=1`` to see one).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence

from safeclip_guardrail.cli._common import EXIT_ERROR, SafeclipArgumentParser, fail
from safeclip_guardrail.errors import CliError

__all__ = ["CliError", "main"]

# Each module defines ``register(subparsers)``; a command's module may ship in a later release.
_COMMAND_MODULES = ("scan", "bank", "evaluate", "calibrate", "serve", "scan_corpus")


def build_parser() -> SafeclipArgumentParser:
    from safeclip_guardrail import __version__

    parser = SafeclipArgumentParser(
        prog="safeclip",
        description="Zero-shot guard against toxic images (SafeCLIP).",
    )
    parser.add_argument("--version", action="version", version=f"safeclip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=SafeclipArgumentParser)
    for name in _COMMAND_MODULES:
        module_name = f"safeclip_guardrail.cli.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``safeclip`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_ERROR
        return int(args.func(args))
    except SystemExit as exc:  # argparse exits: --help (0) and usage errors (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_ERROR
    except BrokenPipeError:  # e.g. `safeclip scan ... | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("safeclip: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("SAFECLIP_DEBUG"):
            raise
        return fail(exc)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
