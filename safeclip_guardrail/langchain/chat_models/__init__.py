"""Local chat models for LangChain: :class:`ChatLlava` (LLaVA through transformers).

Needs ``langchain-core`` (``pip install "safeclip-guardrail[langchain]"``).
"""

from safeclip_guardrail.errors import require

require("langchain_core", package="langchain-core", extra="langchain", feature="ChatLlava")

from safeclip_guardrail.langchain.chat_models.llava import ChatLlava  # noqa: E402

__all__ = ["ChatLlava"]
