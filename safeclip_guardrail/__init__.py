"""safeclip-guardrail: a zero-shot guard against toxic images for vision-language models.

The engine (``SafeCLIPGuard``) imports no LangChain; ``SafeCLIPGuardrail`` (a LangChain
Runnable) and ``ChatLlava`` (a local LLaVA chat model) load lazily on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safeclip_guardrail.concepts import ConceptBank, ConceptClass
from safeclip_guardrail.config import (
    DEFAULT_REFUSAL,
    DEFAULT_SAFE_INSTRUCTION,
    DocumentOptions,
    GuardConfig,
    ImageOptions,
)
from safeclip_guardrail.errors import (
    ConfigurationError,
    EncoderOutputError,
    GuardrailViolation,
    GuardRuntimeError,
    ImageInputError,
    MissingDependencyError,
    ModelLoadError,
    SafeCLIPError,
    UsageError,
)
from safeclip_guardrail.guard import SafeCLIPGuard
from safeclip_guardrail.result import GuardResult, ImageVerdict

if TYPE_CHECKING:
    from safeclip_guardrail.langchain import ChatLlava, SafeCLIPDocumentGuard, SafeCLIPGuardrail

def _version() -> str:
    """The installed distribution's version: one source of truth, pyproject.toml."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("safeclip-guardrail")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


__version__ = _version()

_LAZY = {
    "SafeCLIPGuardrail": ("safeclip_guardrail.langchain", "langchain-core", "langchain"),
    "SafeCLIPDocumentGuard": ("safeclip_guardrail.langchain", "langchain-core", "langchain"),
    "ChatLlava": ("safeclip_guardrail.langchain", "langchain-core", "langchain"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, package, extra = _LAZY[name]
        from safeclip_guardrail.errors import require

        require("langchain_core", package=package, extra=extra, feature=name)
        import importlib

        return getattr(importlib.import_module(module), name)
    msg = f"module 'safeclip_guardrail' has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "DEFAULT_REFUSAL",
    "DEFAULT_SAFE_INSTRUCTION",
    "ChatLlava",
    "ConceptBank",
    "ConceptClass",
    "ConfigurationError",
    "DocumentOptions",
    "EncoderOutputError",
    "GuardConfig",
    "GuardResult",
    "GuardRuntimeError",
    "GuardrailViolation",
    "ImageInputError",
    "ImageOptions",
    "ImageVerdict",
    "MissingDependencyError",
    "ModelLoadError",
    "SafeCLIPDocumentGuard",
    "SafeCLIPError",
    "SafeCLIPGuard",
    "SafeCLIPGuardrail",
    "UsageError",
    "__version__",
]
