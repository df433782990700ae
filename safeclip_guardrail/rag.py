"""Deprecated path: the LangChain layer lives in :mod:`safeclip_guardrail.langchain`."""

from safeclip_guardrail._deprecated import moved

__getattr__ = moved(
    "safeclip_guardrail.rag",
    "safeclip_guardrail.langchain",
    ["SafeCLIPDocumentGuard", "DEFAULT_IMAGE_KEYS", "DEFAULT_PATH_KEYS", "DocumentAction", "DocumentImage"],
)
