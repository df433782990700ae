"""Exceptions raised by safeclip-guardrail, in a tree users can catch by kind.

One base class, so ``except SafeCLIPError`` catches everything the library raises on
purpose; under it three kinds, as pydantic-ai separates a developer's mistake from a
failed run::

    SafeCLIPError
    ├── UsageError                  fix your code: the call or the configuration is wrong
    │   ├── ConfigurationError      bad option, bad concept bank, bad config file, wrong argument type
    │   ├── MissingDependencyError  an optional extra is not installed (names the pip command)
    │   └── CliError                (safeclip CLI) a bad command line: one line on stderr, exit code 2
    ├── GuardRuntimeError           this request or this environment failed; the code is fine
    │   ├── ImageInputError         an image could not be read, or breaks a limit
    │   ├── EncoderOutputError      the encoder gave a non-finite embedding: no verdict is possible
    │   ├── ModelLoadError          a model could not be found or loaded (says where it looked)
    │   ├── CalibrationError        (eval) a target rate cannot be met on this data
    │   ├── ServiceError            (serve) a request the service answers with an error status
    │   ├── BatcherOverloaded       (serve) the queue of images for the encoder is full: retry (503)
    │   ├── BatcherStopped          (serve) the micro-batcher is not running (starting or stopping)
    │   ├── GuardServiceError       (LiteLLM RemoteGuard) the guard service is unreachable or failed
    │   ├── RayScanError            (scale, Ray Data) a worker failed for a reason other than an image
    │   └── ServeDeployError        (scale, Ray Serve) the deployment did not come up
    └── GuardrailViolation          the policy outcome: the input was blocked (carries the result)

Every exception the package raises is defined here, once, and drawn above under its kind
(``tests/unit/foundations/test_errors.py`` checks both); the layers re-export theirs where users import them
(``safeclip_guardrail.eval.CalibrationError``, ``safeclip_guardrail.serve.BatcherOverloaded``,
``safeclip_guardrail_litellm.GuardServiceError``, ...). The builtin bases some classes keep
(``ValueError``, ``OSError``, ...) let older ``except ValueError`` code go on working.

A toxic verdict is data (``ImageVerdict.flagged``), never an exception, unless the caller
asked for ``mode="raise"`` (or ``block`` in an unwrapped chain).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from safeclip_guardrail.result import GuardResult

__all__ = [
    "BatcherOverloaded",
    "BatcherStopped",
    "CalibrationError",
    "CliError",
    "ConfigurationError",
    "EncoderOutputError",
    "GuardRuntimeError",
    "GuardServiceError",
    "GuardrailViolation",
    "ImageInputError",
    "MissingDependencyError",
    "ModelLoadError",
    "RayScanError",
    "SafeCLIPError",
    "ServeDeployError",
    "ServiceError",
    "UsageError",
    "extra_requirements",
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
    """An optional dependency is missing; the message names a pip command that installs it.

    The command lists the packages of the extra themselves (``pip install
    "matplotlib>=3.8"``), read from the installed distribution's metadata: it works however
    safeclip-guardrail was installed (from a checkout, from wheels, or not at all, on a path),
    where ``pip install "safeclip-guardrail[eval]"`` needs an index that has the package.
    """

    def __init__(self, package: str, *, extra: str, feature: str) -> None:
        requirements = extra_requirements(extra) or [package]
        command = "pip install " + " ".join(f'"{r}"' for r in requirements)
        super().__init__(
            f"{feature} needs the package {package!r}, which is not installed. "
            f"Install it with: {command} (the '{extra}' extra of safeclip-guardrail)"
        )
        self.package = package
        self.extra = extra
        self.command = command
        """The pip command that installs what is missing."""


class CliError(UsageError):
    """A bad ``safeclip`` command line (an option, a path, a port): the CLI prints it as one
    line and exits with code 2."""


class CalibrationError(GuardRuntimeError, ValueError):
    """The target false-positive rate cannot be met on this benign set (a run-time outcome
    of the data, not a usage mistake)."""


class ServiceError(GuardRuntimeError):
    """A request the service answers with an error status (400, 401, 408, 413, 415, 503, 504),
    in OpenAI's error shape: ``type``, ``code`` and ``param`` go into the JSON body."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param


class BatcherOverloaded(GuardRuntimeError):
    """The queue of images waiting for the encoder is full; retry later (HTTP 503)."""


class BatcherStopped(GuardRuntimeError):
    """The batcher is not running (the app is starting or shutting down)."""


class GuardServiceError(GuardRuntimeError):
    """The guard service could not be reached or answered an error; nothing passes."""


class RayScanError(GuardRuntimeError, RuntimeError):
    """A Ray worker failed for a reason other than an unreadable image (those are rows)."""


class ServeDeployError(GuardRuntimeError, RuntimeError):
    """The Ray Serve deployment did not come up (e.g. a replica could not load the model)."""


def extra_requirements(extra: str) -> list[str]:
    """The requirements of an extra of the installed safeclip-guardrail (empty if unknown)."""
    import importlib.metadata
    import re

    try:
        declared = importlib.metadata.requires("safeclip-guardrail") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    return [r.split(";", 1)[0].strip() for r in declared if marker.search(r)]


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
