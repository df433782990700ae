"""SafeCLIP toxic-image guard for LangChain agents and LangGraph graphs.

- :class:`SafeCLIPMiddleware`: ``create_agent(model, tools, middleware=[SafeCLIPMiddleware(guard)])``
  checks the conversation's images before every model call.
- :func:`safeclip_node` and :func:`safeclip_router`: a guard node and a conditional edge for
  hand-built LangGraph graphs.

Importing this package imports LangChain and LangGraph, never LlamaIndex or NeMo Guardrails.
"""

from safeclip_guardrail_langchain._actions import AgentAction
from safeclip_guardrail_langchain.graph import is_blocked, safeclip_node, safeclip_router
from safeclip_guardrail_langchain.middleware import SafeCLIPMiddleware

__version__ = "0.1.0"

__all__ = [
    "AgentAction",
    "SafeCLIPMiddleware",
    "__version__",
    "is_blocked",
    "safeclip_node",
    "safeclip_router",
]
