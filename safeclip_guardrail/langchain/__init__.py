"""The LangChain layer: every public name that needs ``langchain-core``, re-exported here once.

The engine above it (``SafeCLIPGuard``, the extraction layer, the policy) imports no
LangChain; this subpackage turns it into Runnables, a guarded chat model, a document guard
and a local chat model. Implementation modules are private (``_runnable``, ``_wrap``,
``_guarded_chat``, ``_metadata``, ``_compose``, ``_shape``, ``_intervention``, ``_messages``,
``_rag``, ``chat_models``); import from here::

    from safeclip_guardrail.langchain import SafeCLIPGuardrail, guard_messages, guardrail_gate

Needs ``langchain-core`` (``pip install "safeclip-guardrail[langchain]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safeclip_guardrail.errors import require

require("langchain_core", package="langchain-core", extra="langchain",
        feature="safeclip_guardrail.langchain")

from safeclip_guardrail.langchain._compose import (  # noqa: E402
    DECISIONS_KEY,
    CombinedOutcome,
    GuardrailDecision,
    combined_outcome,
    guardrail_gate,
    merge_guardrails,
    text_guardrail,
)
from safeclip_guardrail.langchain._guarded_chat import GuardedChatModel  # noqa: E402
from safeclip_guardrail.langchain._intervention import (  # noqa: E402
    GuardOutcome,
    aguard_messages,
    guard_messages,
)
from safeclip_guardrail.langchain._messages import (  # noqa: E402
    METADATA_KEY,
    guard_result_of,
    message_of_view,
    view_of_message,
)
from safeclip_guardrail.langchain._rag import (  # noqa: E402
    DEFAULT_IMAGE_KEYS,
    DEFAULT_PATH_KEYS,
    DocumentAction,
    DocumentImage,
    SafeCLIPDocumentGuard,
)
from safeclip_guardrail.langchain._runnable import VERDICT_EVENT, SafeCLIPGuardrail  # noqa: E402
from safeclip_guardrail.langchain._wrap import GuardedModel  # noqa: E402

if TYPE_CHECKING:
    from safeclip_guardrail.langchain.chat_models import ChatLlava


def __getattr__(name: str) -> Any:
    if name == "ChatLlava":  # loads transformers' LLaVA code: only on first use
        from safeclip_guardrail.langchain.chat_models import ChatLlava

        return ChatLlava
    msg = f"module 'safeclip_guardrail.langchain' has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "DECISIONS_KEY",
    "DEFAULT_IMAGE_KEYS",
    "DEFAULT_PATH_KEYS",
    "METADATA_KEY",
    "VERDICT_EVENT",
    "ChatLlava",
    "CombinedOutcome",
    "DocumentAction",
    "DocumentImage",
    "GuardOutcome",
    "GuardedChatModel",
    "GuardedModel",
    "GuardrailDecision",
    "SafeCLIPDocumentGuard",
    "SafeCLIPGuardrail",
    "aguard_messages",
    "combined_outcome",
    "guard_messages",
    "guard_result_of",
    "guardrail_gate",
    "merge_guardrails",
    "message_of_view",
    "text_guardrail",
    "view_of_message",
]
