"""Deprecated path: ChatLlava lives in :mod:`safeclip_guardrail.langchain` (and the top level)."""

from safeclip_guardrail._deprecated import moved

__getattr__ = moved("safeclip_guardrail.chat_models", "safeclip_guardrail.langchain", ["ChatLlava"])
