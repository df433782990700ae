"""Exceptions raised by safeclip-guardrail.

One base class, so ``except SafeCLIPError`` catches everything the library raises on purpose::

    SafeCLIPError
    ├── ConfigurationError      a usage mistake: bad option, bad concept bank, bad config file
    ├── ModelLoadError          a model could not be found or loaded (says where it looked)
    ├── ImageInputError         an image could not be read, or breaks a limit
    ├── EncoderOutputError      the encoder gave a non-finite embedding: no verdict is possible
    ├── MissingDependencyError  an optional extra is not installed (names the pip command)
    └── GuardrailViolation      mode="raise" and an image was flagged (carries the result)

A toxic verdict is data (``ImageVerdict.flagged``), never an exception, unless the caller
asked for ``mode="raise"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from safeclip_guardrail.result import GuardResult

__all__ = [
    "ConfigurationError",
    "EncoderOutputError",
    "GuardrailViolation",
    "ImageInputError",
    "MissingDependencyError",
    "ModelLoadError",
    "SafeCLIPError",
]


class SafeCLIPError(Exception):
    """Base class of every error this library raises deliberately."""


class ConfigurationError(SafeCLIPError, ValueError):
    """The caller asked for something invalid; the message says what and how to fix it."""


class ModelLoadError(SafeCLIPError, OSError):
    """A model could not be loaded: the message names the model, where it looked, and how
    to get it (e.g. download it on a machine with network access and pass the directory)."""


class ImageInputError(SafeCLIPError, ValueError):
    """An image could not be decoded or breaks a configured limit."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source
        """A short, safe description of the input (never the whole base64 payload)."""


class EncoderOutputError(SafeCLIPError, ArithmeticError):
    """The encoder returned a non-finite embedding (NaN/inf) for an image.

    Never a verdict: the image is handled like an unreadable one (``on_error``), because
    ``argmax`` over NaN scores would silently pick the first class and pass the image."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class MissingDependencyError(SafeCLIPError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, *, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the package {package!r}, which is not installed. "
            f'Install it with: pip install "safeclip-guardrail[{extra}]"'
        )
        self.package = package
        self.extra = extra


class GuardrailViolation(SafeCLIPError):
    """Raised in ``mode="raise"`` when an image is flagged; ``.result`` holds the verdicts."""

    def __init__(self, result: GuardResult, message: str | None = None, *,
                 refusal: str | None = None) -> None:
        cats = ", ".join(sorted(result.categories)) or "unknown"
        super().__init__(message or f"SafeCLIP guardrail blocked the input: flagged as {cats}")
        self.result = result
        self.refusal = refusal
        """The refusal text a ``wrap``-ped model would have answered with (on ``block``)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_violation, (self.result, str(self), self.refusal))


def _rebuild_violation(result: GuardResult, message: str, refusal: str | None) -> GuardrailViolation:
    return GuardrailViolation(result, message, refusal=refusal)


def require(module: str, *, package: str, extra: str, feature: str) -> Any:
    """Import an optional dependency or raise :class:`MissingDependencyError`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package, extra=extra, feature=feature) from exc
