"""Exceptions raised by safeclip-guardrail, in a tree users can catch by kind.

One base class, so ``except SafeCLIPError`` catches everything the library raises on
purpose; under it three kinds, as pydantic-ai separates a developer's mistake from a
failed run::

    SafeCLIPError
    ├── UsageError                  fix your code: the call or the configuration is wrong
    │   ├── ConfigurationError      bad option, bad concept bank, bad config file, wrong argument type
    │   └── MissingDependencyError  an optional extra is not installed (names the pip command)
    ├── GuardRuntimeError           this request or this environment failed; the code is fine
    │   ├── ImageInputError         an image could not be read, or breaks a limit
    │   ├── EncoderOutputError      the encoder gave a non-finite embedding: no verdict is possible
    │   ├── ModelLoadError          a model could not be found or loaded (says where it looked)
    │   └── CalibrationError        (safeclip_guardrail.eval) a target rate cannot be met on this data
    └── GuardrailViolation          the policy outcome: the input was blocked (carries the result)

A toxic verdict is data (``ImageVerdict.flagged``), never an exception, unless the caller
asked for ``mode="raise"`` (or ``block`` in an unwrapped chain).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from safeclip_guardrail.result import GuardResult

__all__ = [
    "ConfigurationError",
    "EncoderOutputError",
    "GuardRuntimeError",
    "GuardrailViolation",
    "ImageInputError",
    "MissingDependencyError",
    "ModelLoadError",
    "SafeCLIPError",
    "UsageError",
]


class SafeCLIPError(Exception):
    """Base class of every error this library raises deliberately."""


class UsageError(SafeCLIPError):
    """A mistake in the calling code or configuration: the message says how to fix it."""


class GuardRuntimeError(SafeCLIPError):
    """An input or the environment failed at run time (unreadable image, model, encoder)."""


class ConfigurationError(UsageError, ValueError):
    """The caller asked for something invalid; the message says what and how to fix it."""


class ModelLoadError(GuardRuntimeError, OSError):
    """A model could not be loaded: the message names the model, where it looked, and how
    to get it (e.g. download it on a machine with network access and pass the directory)."""


class ImageInputError(GuardRuntimeError, ValueError):
    """An image could not be decoded or breaks a configured limit."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source
        """A short, safe description of the input (never the whole base64 payload)."""


class EncoderOutputError(GuardRuntimeError, ArithmeticError):
    """The encoder returned a non-finite embedding (NaN/inf) for an image.

    Never a verdict: the image is handled like an unreadable one (``on_error``), because
    ``argmax`` over NaN scores would silently pick the first class and pass the image."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class MissingDependencyError(UsageError, ImportError):
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
